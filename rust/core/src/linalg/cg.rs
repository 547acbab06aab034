//! Conjugate gradients, plain and preconditioned, stopping only on a confirmed true residual.
//!
//! The recursive residual drifts from b - A x in floating point, so (1) every `recompute_every`
//! iterations it is replaced by the true residual, and (2) when the recursive residual says "converged",
//! the true residual is computed and must confirm it; if it does not, the iteration restarts from the
//! true residual. `SolveInfo::converged` therefore always means ||b - A x|| / ||b|| <= tol.

use std::time::Instant;

use super::precond::Preconditioner;
use super::vecops::{cg_update, dot, norm2, residual_in_place, xpby};
use super::LinOp;
use crate::error::{invalid_err, shape_err, Error, Result};

#[derive(Clone, Debug)]
pub struct SolveSettings {
    /// Relative tolerance on the true residual ||b - A x|| / ||b||.
    pub tol: f64,
    pub maxiter: usize,
    /// Replace the recursive residual by b - A x every this many iterations (0: never, except at the end).
    pub recompute_every: usize,
    pub time_limit_s: Option<f64>,
    /// Call the progress callback every this many iterations.
    pub progress_every: usize,
}

impl Default for SolveSettings {
    fn default() -> Self {
        Self { tol: 1e-6, maxiter: 10_000, recompute_every: 50, time_limit_s: None, progress_every: 25 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Converged,
    MaxIter,
    TimeLimit,
    /// The caller's progress callback asked to stop.
    Interrupted,
}

impl StopReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::Converged => "converged",
            StopReason::MaxIter => "maxiter",
            StopReason::TimeLimit => "time_limit",
            StopReason::Interrupted => "interrupted",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SolveInfo {
    pub iterations: usize,
    /// Relative residual after each iteration (index 0: the initial one). Recursive residuals, except
    /// at replacement points, where the true residual is recorded.
    pub residuals: Vec<f64>,
    /// The final TRUE relative residual ||b - A x|| / ||b||.
    pub true_residual: f64,
    pub converged: bool,
    pub reason: StopReason,
    pub seconds: f64,
    pub matvecs: usize,
    /// How many times the recursive residual claimed convergence that the true residual refuted.
    pub false_convergences: usize,
    /// Iterations at which the direction fell back to the residual (DCDM only).
    pub fallbacks: usize,
}

/// Progress callback: (iteration, relative residual) -> keep going?
pub type Progress<'a> = &'a (dyn Fn(usize, f64) -> bool + Sync);

pub(crate) struct Common<'a> {
    pub a: &'a dyn LinOp,
    pub b: &'a [f64],
    pub bnorm: f64,
    pub start: Instant,
}

/// A started iteration: the problem, the first iterate and its residual.
pub(crate) struct Begun<'a> {
    pub c: Common<'a>,
    pub info: SolveInfo,
    pub x: Vec<f64>,
    pub r: Vec<f64>,
    pub rnorm: f64,
}

/// b = 0 is solved exactly by x = 0.
pub(crate) fn zero_rhs_solution(n: usize) -> (Vec<f64>, SolveInfo) {
    let info = SolveInfo {
        residuals: vec![0.0],
        converged: true,
        reason: StopReason::Converged,
        ..SolveInfo::new()
    };
    (vec![0.0; n], info)
}

impl SolveInfo {
    fn new() -> Self {
        SolveInfo {
            iterations: 0,
            residuals: vec![],
            true_residual: 0.0,
            converged: false,
            reason: StopReason::MaxIter,
            seconds: 0.0,
            matvecs: 0,
            false_convergences: 0,
            fallbacks: 0,
        }
    }
}

impl<'a> Common<'a> {
    /// Checks the problem and sets up x0 and its residual; `None` when b = 0.
    pub fn begin(a: &'a dyn LinOp, b: &'a [f64], x0: Option<&[f64]>) -> Result<Option<Begun<'a>>> {
        Self::check(a, b, x0)?;
        let c = Common { a, b, bnorm: norm2(b), start: Instant::now() };
        if c.bnorm == 0.0 {
            return Ok(None);
        }
        let mut info = SolveInfo::new();
        let n = a.dim();
        let x = x0.map(|v| v.to_vec()).unwrap_or_else(|| vec![0.0; n]);
        let mut r = vec![0.0; n];
        let rnorm = if x0.is_some() {
            info.matvecs += 1;
            c.true_residual(&x, &mut r)
        } else {
            r.copy_from_slice(b);
            c.bnorm
        };
        Ok(Some(Begun { c, info, x, r, rnorm }))
    }

    /// The stops every iteration checks after its convergence test: the iteration budget, the time
    /// limit, and the caller's progress callback (which may ask to stop).
    pub fn stop_reason(&self, iterations: usize, s: &SolveSettings, progress: Option<Progress<'_>>, rnorm: f64) -> Option<StopReason> {
        if iterations >= s.maxiter {
            return Some(StopReason::MaxIter);
        }
        if self.out_of_time(s) {
            return Some(StopReason::TimeLimit);
        }
        match progress {
            Some(cb) if s.progress_every > 0 && iterations % s.progress_every == 0 && !cb(iterations, rnorm / self.bnorm) => {
                Some(StopReason::Interrupted)
            }
            _ => None,
        }
    }

    /// One step x += alpha p, r -= alpha A p, with the true residual replacing the recursive one every
    /// `recompute_every` iterations. Returns the new residual norm and whether r is the true residual.
    #[allow(clippy::too_many_arguments)]
    pub fn step(&self, alpha: f64, p: &[f64], ap: &[f64], x: &mut [f64], r: &mut [f64], info: &mut SolveInfo,
                s: &SolveSettings, method: &str) -> Result<(f64, bool)> {
        let mut rnorm = cg_update(alpha, p, ap, x, r).sqrt();
        info.iterations += 1;
        let mut is_true = false;
        if s.recompute_every > 0 && info.iterations % s.recompute_every == 0 {
            info.matvecs += 1;
            rnorm = self.true_residual(x, r);
            is_true = true;
        }
        if !rnorm.is_finite() {
            return Err(Error::Solver(format!("{method} residual became non-finite at iteration {}", info.iterations)));
        }
        Ok((rnorm, is_true))
    }

    pub fn check(a: &dyn LinOp, b: &[f64], x0: Option<&[f64]>) -> Result<()> {
        let n = a.dim();
        if b.len() != n {
            return Err(shape_err!("b has length {} but the matrix is {n}x{n}", b.len()));
        }
        if let Some(i) = b.iter().position(|v| !v.is_finite()) {
            return Err(invalid_err!("b[{i}] is {} (b must be finite)", b[i]));
        }
        if let Some(x0) = x0 {
            if x0.len() != n {
                return Err(shape_err!("x0 has length {} but the matrix is {n}x{n}", x0.len()));
            }
            if let Some(i) = x0.iter().position(|v| !v.is_finite()) {
                return Err(invalid_err!("x0[{i}] is {} (x0 must be finite)", x0[i]));
            }
        }
        Ok(())
    }

    /// r = b - A x; returns ||r||.
    pub fn true_residual(&self, x: &[f64], r: &mut [f64]) -> f64 {
        self.a.apply(x, r);
        residual_in_place(self.b, r);
        norm2(r)
    }

    pub fn out_of_time(&self, s: &SolveSettings) -> bool {
        s.time_limit_s.is_some_and(|t| self.start.elapsed().as_secs_f64() > t)
    }
}

/// Solves A x = b by (preconditioned) CG. `precond = None` is plain CG.
pub fn pcg(
    a: &dyn LinOp,
    b: &[f64],
    x0: Option<&[f64]>,
    precond: Option<&dyn Preconditioner>,
    s: &SolveSettings,
    progress: Option<Progress<'_>>,
) -> Result<(Vec<f64>, SolveInfo)> {
    let n = a.dim();
    let Some(Begun { c, mut info, mut x, mut r, mut rnorm }) = Common::begin(a, b, x0)? else {
        return Ok(zero_rhs_solution(n));
    };
    let mut r_is_true = true;
    let mut z = if precond.is_some() { vec![0.0; n] } else { Vec::new() };
    let mut q = vec![0.0; n];
    let mut p;
    let mut rz;
    macro_rules! restart_direction {
        () => {{
            match precond {
                Some(m) => {
                    m.apply(&r, &mut z);
                    rz = dot(&r, &z);
                    p = z.clone();
                }
                None => {
                    rz = rnorm * rnorm;
                    p = r.clone();
                }
            }
        }};
    }
    restart_direction!();
    info.residuals.push(rnorm / c.bnorm);
    loop {
        if rnorm / c.bnorm <= s.tol {
            if !r_is_true {
                info.matvecs += 1;
                rnorm = c.true_residual(&x, &mut r);
                r_is_true = true;
                if rnorm / c.bnorm > s.tol {
                    info.false_convergences += 1;
                    restart_direction!();
                    continue;
                }
            }
            info.reason = StopReason::Converged;
            break;
        }
        if let Some(reason) = c.stop_reason(info.iterations, s, progress, rnorm) {
            info.reason = reason;
            break;
        }
        a.apply(&p, &mut q);
        info.matvecs += 1;
        let pq = dot(&p, &q);
        if !(pq > 0.0) {
            return Err(if pq.is_finite() {
                invalid_err!(
                    "the matrix is not positive definite: p^T A p = {pq:.3e} at CG iteration {} (CG needs an SPD matrix)",
                    info.iterations
                )
            } else {
                Error::Solver(format!("CG produced a non-finite value (p^T A p = {pq}) at iteration {}", info.iterations))
            });
        }
        (rnorm, r_is_true) = c.step(rz / pq, &p, &q, &mut x, &mut r, &mut info, s, "CG")?;
        let rz_new = match precond {
            Some(m) => {
                m.apply(&r, &mut z);
                dot(&r, &z)
            }
            None => rnorm * rnorm,
        };
        let beta = rz_new / rz;
        rz = rz_new;
        xpby(if precond.is_some() { &z } else { &r }, beta, &mut p);
        info.residuals.push(rnorm / c.bnorm);
    }
    if !r_is_true {
        info.matvecs += 1;
        rnorm = c.true_residual(&x, &mut r);
    }
    info.true_residual = rnorm / c.bnorm;
    info.converged = info.true_residual <= s.tol;
    info.seconds = c.start.elapsed().as_secs_f64();
    Ok((x, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{CsrRef, Ic0, Jacobi, LinOp, Stencil7};

    fn laplace1d(n: usize) -> (Vec<i64>, Vec<i64>, Vec<f64>) {
        let (mut p, mut ix, mut d) = (vec![0i64], vec![], vec![]);
        for i in 0..n {
            if i > 0 {
                ix.push(i as i64 - 1);
                d.push(-1.0);
            }
            ix.push(i as i64);
            d.push(2.0 + 0.01 * i as f64);
            if i + 1 < n {
                ix.push(i as i64 + 1);
                d.push(-1.0);
            }
            p.push(ix.len() as i64);
        }
        (p, ix, d)
    }

    fn check_true_residual(a: &dyn LinOp, b: &[f64], x: &[f64], tol: f64) {
        let mut ax = vec![0.0; b.len()];
        a.apply(x, &mut ax);
        let r: f64 = ax.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum::<f64>().sqrt();
        assert!(r / norm2(b) <= tol, "true residual {} > {tol}", r / norm2(b));
    }

    #[test]
    fn cg_and_pcg_converge_on_true_residual() {
        let (p, ix, d) = laplace1d(300);
        let a = CsrRef::new(300, &p, &ix, &d).unwrap();
        let b: Vec<f64> = (0..300).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
        let s = SolveSettings { tol: 1e-10, maxiter: 5000, ..Default::default() };
        let (x, info) = pcg(&a, &b, None, None, &s, None).unwrap();
        assert!(info.converged);
        check_true_residual(&a, &b, &x, 1e-10);
        let jac = Jacobi::new(&a.diagonal().unwrap()).unwrap();
        let (x, info_j) = pcg(&a, &b, None, Some(&jac), &s, None).unwrap();
        assert!(info_j.converged);
        check_true_residual(&a, &b, &x, 1e-10);
        // IC(0) is exact on a tridiagonal matrix: one iteration
        let ic = Ic0::new(&a).unwrap();
        let (x, info_ic) = pcg(&a, &b, None, Some(&ic), &s, None).unwrap();
        assert!(info_ic.converged);
        assert!(info_ic.iterations <= 2, "IC(0) took {}", info_ic.iterations);
        check_true_residual(&a, &b, &x, 1e-10);
    }

    #[test]
    fn maxiter_is_not_convergence() {
        let st = Stencil7::new(8, 8, 8, None).unwrap();
        let b = vec![1.0; 512];
        let s = SolveSettings { tol: 1e-12, maxiter: 3, ..Default::default() };
        let (_, info) = pcg(&st, &b, None, None, &s, None).unwrap();
        assert!(!info.converged);
        assert_eq!(info.reason, StopReason::MaxIter);
        assert!(info.true_residual > 1e-12);
    }

    #[test]
    fn indefinite_matrix_is_an_error() {
        let p = [0i64, 1, 2];
        let ix = [0i64, 1];
        let d = [1.0, -1.0];
        let a = CsrRef::new(2, &p, &ix, &d).unwrap();
        assert!(matches!(pcg(&a, &[0.0, 1.0], None, None, &SolveSettings::default(), None), Err(Error::InvalidInput(_))));
    }
}
