//! The deep conjugate-direction method (Kaneda et al., ICML 2023): directions come from an oracle
//! (a trained network) applied to the normalised residual, are A-orthogonalised against the last k
//! directions, and are followed with an exact line search. One operator application per iteration:
//! A q is formed from A q_raw and the stored A p_j, never recomputed after orthogonalisation.

use std::collections::VecDeque;

use super::cg::{zero_rhs_solution, Begun, Common, Progress, SolveInfo, SolveSettings, StopReason};
use super::vecops::{axpy, dot, norm2};
use super::LinOp;
use crate::error::{Error, Result};

/// q = f(r / ||r||). `r` and `q` have the operator's dimension.
pub trait DirectionOracle: Send {
    fn direction(&mut self, r: &[f64], q: &mut [f64]) -> Result<()>;
}

/// Stagnation guard: if the residual fell by less than STALL_FACTOR over the last STALL_WINDOW iterations,
/// the next STALL_WINDOW directions are residuals (CG-like steps) before the oracle is tried again. A
/// poorly trained oracle then costs speed, never convergence.
pub const STALL_WINDOW: usize = 10;
pub const STALL_FACTOR: f64 = 0.9;

struct Dir {
    p: Vec<f64>,
    ap: Vec<f64>,
    pap: f64,
}

pub fn dcdm(
    a: &dyn LinOp,
    b: &[f64],
    x0: Option<&[f64]>,
    oracle: &mut dyn DirectionOracle,
    k: usize,
    s: &SolveSettings,
    progress: Option<Progress<'_>>,
) -> Result<(Vec<f64>, SolveInfo)> {
    let n = a.dim();
    let Some(Begun { c, mut info, mut x, mut r, mut rnorm }) = Common::begin(a, b, x0)? else {
        return Ok(zero_rhs_solution(n));
    };
    let mut r_is_true = true;
    let mut rhat = vec![0.0; n];
    let mut history: VecDeque<Dir> = VecDeque::with_capacity(k + 1);
    info.residuals.push(rnorm / c.bnorm);
    let mut residual_steps_until = 0usize;
    loop {
        if rnorm / c.bnorm <= s.tol {
            if !r_is_true {
                info.matvecs += 1;
                rnorm = c.true_residual(&x, &mut r);
                r_is_true = true;
                if rnorm / c.bnorm > s.tol {
                    info.false_convergences += 1;
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
        let inv = 1.0 / rnorm;
        rhat.iter_mut().zip(&r).for_each(|(h, v)| *h = v * inv);
        let it = info.iterations;
        if it >= STALL_WINDOW
            && it >= residual_steps_until + STALL_WINDOW
            && info.residuals[it] > STALL_FACTOR * info.residuals[it - STALL_WINDOW]
        {
            residual_steps_until = it + STALL_WINDOW;
        }
        let use_oracle = it >= residual_steps_until;
        let mut learned = None;
        if use_oracle {
            let mut q = vec![0.0; n];
            oracle.direction(&rhat, &mut q)?;
            if let Some(i) = q.iter().position(|v| !v.is_finite()) {
                return Err(Error::Solver(format!(
                    "the direction oracle returned a non-finite value ({}) at entry {i}, iteration {}",
                    q[i], info.iterations
                )));
            }
            let dir = conjugate(a, q, &history, &mut info);
            let qr = dot(&dir.p, &r);
            if dir.pap > 0.0 && qr.abs() > 1e-12 * norm2(&dir.p) * rnorm {
                learned = Some((dir, qr));
            }
        }
        let (dir, qr) = match learned {
            Some(d) => d,
            None => {
                // The learned direction is useless here (zero, in the span of the kept directions,
                // orthogonal to r) or the iteration stalled: take the residual, which always makes
                // progress for SPD A.
                info.fallbacks += 1;
                let dir = conjugate(a, rhat.clone(), &history, &mut info);
                if !(dir.pap > 0.0) {
                    return Err(crate::error::invalid_err!(
                        "the matrix is not positive definite: r^T A r = {:.3e} at DCDM iteration {}",
                        dir.pap,
                        info.iterations
                    ));
                }
                let qr = dot(&dir.p, &r);
                (dir, qr)
            }
        };
        (rnorm, r_is_true) = c.step(qr / dir.pap, &dir.p, &dir.ap, &mut x, &mut r, &mut info, s, "DCDM")?;
        if k > 0 {
            if history.len() == k {
                history.pop_front();
            }
            history.push_back(dir);
        }
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

/// A-orthogonalises q against the kept directions (modified Gram-Schmidt in the A inner product),
/// carrying A q along with one operator application.
fn conjugate(a: &dyn LinOp, mut q: Vec<f64>, history: &VecDeque<Dir>, info: &mut SolveInfo) -> Dir {
    let mut aq = vec![0.0; q.len()];
    a.apply(&q, &mut aq);
    info.matvecs += 1;
    for d in history {
        let coef = dot(&aq, &d.p) / d.pap;
        axpy(-coef, &d.p, &mut q);
        axpy(-coef, &d.ap, &mut aq);
    }
    let pap = dot(&q, &aq);
    Dir { p: q, ap: aq, pap }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{pcg, Stencil7};

    /// The exact inverse, by a tight inner CG solve.
    struct Exact<'a>(&'a Stencil7);
    impl DirectionOracle for Exact<'_> {
        fn direction(&mut self, r: &[f64], q: &mut [f64]) -> Result<()> {
            let s = SolveSettings { tol: 1e-13, maxiter: 100_000, ..Default::default() };
            let (x, _) = pcg(self.0, r, None, None, &s, None)?;
            q.copy_from_slice(&x);
            Ok(())
        }
    }

    struct Identity;
    impl DirectionOracle for Identity {
        fn direction(&mut self, r: &[f64], q: &mut [f64]) -> Result<()> {
            q.copy_from_slice(r);
            Ok(())
        }
    }

    struct Nan;
    impl DirectionOracle for Nan {
        fn direction(&mut self, _: &[f64], q: &mut [f64]) -> Result<()> {
            q.fill(f64::NAN);
            Ok(())
        }
    }

    #[test]
    fn exact_inverse_oracle_converges_in_one_iteration() {
        let a = Stencil7::new(6, 6, 6, None).unwrap();
        let b: Vec<f64> = (0..216).map(|i| ((i * 31) % 17) as f64 - 8.0).collect();
        let s = SolveSettings { tol: 1e-8, ..Default::default() };
        let (_, info) = dcdm(&a, &b, None, &mut Exact(&a), 2, &s, None).unwrap();
        assert!(info.converged);
        assert_eq!(info.iterations, 1);
    }

    #[test]
    fn identity_oracle_with_full_history_matches_cg() {
        // With q = r and A-orthogonalisation against the last 2 directions, the directions are CG's
        // (up to scaling): the iteration counts agree.
        let a = Stencil7::new(8, 8, 8, None).unwrap();
        let b: Vec<f64> = (0..512).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        let s = SolveSettings { tol: 1e-8, maxiter: 2000, ..Default::default() };
        let (_, di) = dcdm(&a, &b, None, &mut Identity, 2, &s, None).unwrap();
        let (_, ci) = pcg(&a, &b, None, None, &s, None).unwrap();
        assert!(di.converged && ci.converged);
        assert!((di.iterations as i64 - ci.iterations as i64).abs() <= 3, "{} vs {}", di.iterations, ci.iterations);
    }

    /// Always the same direction: useless after the first step, so the stall guard must take over.
    struct Constant;
    impl DirectionOracle for Constant {
        fn direction(&mut self, r: &[f64], q: &mut [f64]) -> Result<()> {
            for (i, v) in q.iter_mut().enumerate() {
                *v = 1.0 + (i % 3) as f64 + 1e-3 * r[i];
            }
            Ok(())
        }
    }

    #[test]
    fn a_stalling_oracle_still_converges() {
        let a = Stencil7::new(8, 8, 8, None).unwrap();
        let b: Vec<f64> = (0..512).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        let s = SolveSettings { tol: 1e-8, maxiter: 3000, ..Default::default() };
        let (_, info) = dcdm(&a, &b, None, &mut Constant, 2, &s, None).unwrap();
        assert!(info.converged, "{:?}", info.reason);
        assert!(info.fallbacks > 0);
    }

    #[test]
    fn nan_oracle_is_an_error() {
        let a = Stencil7::new(4, 4, 4, None).unwrap();
        let b = vec![1.0; 64];
        assert!(matches!(dcdm(&a, &b, None, &mut Nan, 2, &SolveSettings::default(), None), Err(Error::Solver(_))));
    }
}
