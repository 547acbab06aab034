//! ADMM for the exact convex formulation (Bai, Gautam & Sojoudi 2022, Section 3).
//!
//! Splitting (scaled form): U (d x 2P) is the network, Zc its copy carrying the group norms, S >= 0 the
//! slacks of G U, and, for losses without a closed-form u-step (logistic, hinge), q the copy of F U:
//!   squared:  min 0.5||F U - y||^2 + beta sum_j ||Zc_j|| + I(S >= 0)  s.t. U = Zc, G U = S
//!   others:   min loss(q, y)      + beta sum_j ||Zc_j|| + I(S >= 0)  s.t. U = Zc, G U = S, F U = q
//! Since (2D_j - I)^2 = I, G^T G = blkdiag(X^T X), so the u-step matrix is a (I + X^T X) blockwise + F^T F
//! with a = rho (squared) or 1 (others, after dividing by rho); see [`super::ustep`].

use std::time::Instant;

use faer::{Mat, MatRef};

use super::ops::Ops;
use super::project::project_cones;
use super::ustep::{self, USolve, USolver};
use crate::error::{Error, Result};
use crate::network::sigmoid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// 0.5 * sum of squared errors.
    Squared,
    /// sum log(1 + exp(-y f)), labels +-1.
    Logistic,
    /// sum max(0, 1 - y f), labels +-1.
    Hinge,
}

impl Loss {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "squared" => Ok(Loss::Squared),
            "logistic" => Ok(Loss::Logistic),
            "hinge" => Ok(Loss::Hinge),
            _ => Err(Error::InvalidInput(format!("loss must be 'squared', 'logistic' or 'hinge', got {s:?}"))),
        }
    }

    pub fn value(self, f: &[f64], y: &[f64]) -> f64 {
        f.iter()
            .zip(y)
            .map(|(&f, &y)| match self {
                Loss::Squared => 0.5 * (f - y) * (f - y),
                Loss::Logistic => softplus(-y * f),
                Loss::Hinge => (1.0 - y * f).max(0.0),
            })
            .sum()
    }

    /// A target vector of length `n`, finite, and +-1 labels for the classification losses.
    pub(crate) fn check_targets(self, y: &[f64], n: usize) -> Result<()> {
        if y.len() != n {
            return Err(Error::Shape(format!("y has {} entries but X has {n} rows", y.len())));
        }
        if let Some(k) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(format!("y[{k}] = {} is not finite", y[k])));
        }
        if self != Loss::Squared {
            if let Some(k) = y.iter().position(|&v| v != 1.0 && v != -1.0) {
                return Err(Error::InvalidInput(format!("the {self:?} loss needs labels +-1; y[{k}] = {}", y[k])));
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn prox_for_tests(self, a: f64, y: f64, t: f64) -> f64 {
        self.prox(a, y, t)
    }

    /// argmin_q  t * loss(q, y) + 0.5 (q - a)^2, elementwise.
    pub(crate) fn prox(self, a: f64, y: f64, t: f64) -> f64 {
        match self {
            Loss::Squared => (a + t * y) / (1.0 + t),
            Loss::Hinge => {
                let m = y * a;
                if m >= 1.0 {
                    a
                } else if m <= 1.0 - t {
                    a + t * y
                } else {
                    y
                }
            }
            Loss::Logistic => {
                // g(q) = q - a - t y sigma(-y q) is strictly increasing with its root between a and a + t y:
                // Newton steps kept inside a shrinking bracket (plain Newton overshoots for large t).
                let (mut lo, mut hi) = if y > 0.0 { (a, a + t) } else { (a - t, a) };
                let mut q = 0.5 * (lo + hi);
                for _ in 0..200 {
                    let s = sigmoid(-y * q);
                    let g = q - a - t * y * s;
                    if g > 0.0 {
                        hi = q;
                    } else {
                        lo = q;
                    }
                    let h = 1.0 + t * s * (1.0 - s);
                    let mut next = q - g / h;
                    if !(next > lo && next < hi) {
                        next = 0.5 * (lo + hi);
                    }
                    if (next - q).abs() <= 1e-15 * (1.0 + q.abs()) || hi - lo <= 1e-15 * (1.0 + q.abs()) {
                        q = next;
                        break;
                    }
                    q = next;
                }
                q
            }
        }
    }
}


fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Settings with defaults (see [`AdmmSettings::default`]).
#[derive(Clone, Debug)]
pub struct AdmmSettings {
    /// ADMM penalty.
    pub rho: f64,
    pub max_iter: usize,
    /// Absolute and relative tolerances of the primal/dual residual stopping rule (Boyd et al. 2011, 3.3.1).
    pub eps_abs: f64,
    pub eps_rel: f64,
    pub u_solver: USolve,
    /// Relative residual of the PCG u-step.
    pub pcg_tol: f64,
    /// Bytes the u-step may allocate (checked before any work starts).
    pub memory_limit: f64,
    /// Seconds; the run stops with status "time_limit" (the iterate so far is returned).
    pub time_limit: f64,
    /// Residual balancing: every `adapt_every` iterations rho is rescaled when the normalised primal and
    /// dual residuals differ by more than 5x (OSQP's rule); 0 disables it. With the squared loss a change
    /// of rho refactors the u-step, so at most `max_refactor` changes are made.
    pub adapt_every: usize,
    pub max_refactor: usize,
    /// Weight c of the consensus constraint U = Zc against G U = S (penalties rho c and rho). G^T G =
    /// blkdiag(X^T X) has eigenvalues of order ||X||_F^2 / d, so with c = 1 the two blocks are badly
    /// balanced for large n; 0 selects c = ||X||_F^2 / d (measured no faster than 1 so far).
    pub z_weight: f64,
    /// Over-relaxation alpha in [1, 2) (Boyd et al. 2011, 3.4.3); 1 is plain ADMM.
    pub relaxation: f64,
    /// Project the returned groups onto their cones when the run converged (see [`super::project`]); the last
    /// history record then holds the objective and violation after the projection.
    pub project: bool,
}

impl Default for AdmmSettings {
    fn default() -> Self {
        Self {
            rho: 1.0,
            max_iter: 10_000,
            eps_abs: 1e-7,
            eps_rel: 1e-6,
            u_solver: USolve::Auto,
            pcg_tol: 1e-10,
            memory_limit: 4.0 * (1u64 << 30) as f64,
            time_limit: f64::INFINITY,
            adapt_every: 25,
            max_refactor: 30,
            z_weight: 1.0,
            relaxation: 1.6,
            project: true,
        }
    }
}

/// One line of the history: after iteration `iter`.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub iter: usize,
    /// Convex objective at the group-sparse iterate Zc.
    pub objective: f64,
    pub primal_residual: f64,
    pub dual_residual: f64,
    /// Largest violation max(0, -(2D_j - I) X zc_j) of the cone constraints at Zc.
    pub violation: f64,
    pub seconds: f64,
    pub inner_iterations: usize,
}

impl Record {
    /// Why an ADMM run stops after this record, if it does: a non-finite objective is an error; then an
    /// interruption by `progress`, convergence (both residuals within their tolerances), the time limit.
    pub(crate) fn stop(&self, what: &str, progress: &mut dyn FnMut(&Record) -> bool, eps_pri: f64, eps_dual: f64,
                       time_limit: f64) -> Result<Option<&'static str>> {
        if !self.objective.is_finite() {
            return Err(Error::Solver(format!("{what} diverged at iteration {} (objective {})", self.iter,
                                             self.objective)));
        }
        Ok(if !progress(self) {
            Some("interrupted")
        } else if self.primal_residual <= eps_pri && self.dual_residual <= eps_dual {
            Some("converged")
        } else if self.seconds > time_limit {
            Some("time_limit")
        } else {
            None
        })
    }
}

#[derive(Clone, Debug)]
pub struct AdmmResult {
    /// d x P each: column j is v_j (resp. w_j).
    pub v: Mat<f64>,
    pub w: Mat<f64>,
    pub objective: f64,
    pub iterations: usize,
    /// "converged", "max_iter", "time_limit" or "interrupted".
    pub status: &'static str,
    pub history: Vec<Record>,
    pub u_solver: USolve,
    pub factor_seconds: f64,
    pub solve_seconds: f64,
}

/// A data set and its patterns with the u-step factored once; `solve` may be called for several
/// targets (one output per class) and reuses the factorisation.
pub struct AdmmProblem<'a> {
    ops: Ops<'a>,
    usolver: USolver,
    rho: f64,
    c: f64,
    pcg_tol: f64,
    squared: bool,
    factor_seconds: f64,
}

impl<'a> AdmmProblem<'a> {
    /// `x`: n x d data (with the intercept column already appended when wanted); `patterns`: n x P of 0/1.
    pub fn new(x: MatRef<'a, f64>, patterns: MatRef<'_, f64>, loss: Loss, settings: &AdmmSettings) -> Result<Self> {
        check_problem(x, patterns, settings)?;
        let (n, d, p) = (x.nrows(), x.ncols(), patterns.ncols());
        let kind = ustep::choose(settings.u_solver, n, d, p, settings.memory_limit)?;
        let ops = Ops { x, dm: patterns.to_owned() };
        let squared = loss == Loss::Squared;
        let a = if squared { settings.rho } else { 1.0 };
        let t0 = Instant::now();
        let c = if settings.z_weight > 0.0 {
            settings.z_weight
        } else {
            (x.squared_norm_l2() / d as f64).max(1e-12)
        };
        let usolver = USolver::new(&ops, a, c, kind, settings.pcg_tol)?;
        Ok(Self { ops, usolver, rho: settings.rho, c, pcg_tol: settings.pcg_tol, squared, factor_seconds: t0.elapsed().as_secs_f64() })
    }

    pub fn u_solver(&self) -> USolve {
        self.usolver.kind()
    }

    /// Runs the ADMM for one target `y` (length n). `progress` is called after every iteration with its
    /// record; returning `false` stops the run (status "interrupted").
    pub fn solve(&self, y: &[f64], beta: f64, loss: Loss, settings: &AdmmSettings,
                 progress: &mut dyn FnMut(&Record) -> bool) -> Result<AdmmResult> {
        let ops = &self.ops;
        let (n, d, p) = (ops.n(), ops.d(), ops.p());
        loss.check_targets(y, n)?;
        if (loss == Loss::Squared) != self.squared {
            return Err(Error::InvalidInput("the problem was factored for a different loss".into()));
        }
        if !(beta > 0.0 && beta.is_finite()) {
            return Err(Error::InvalidInput(format!("beta must be positive and finite, got {beta}")));
        }
        let mut rho = self.rho;
        let cw = self.c;
        let al = settings.relaxation;
        let mut local: Option<USolver> = None;
        let mut refactors = 0;
        let mut factor_seconds = 0.0;
        let m = 2 * p;
        let start = Instant::now();

        let mut u = Mat::<f64>::zeros(d, m);
        let mut zc = Mat::<f64>::zeros(d, m);
        let mut lam = Mat::<f64>::zeros(d, m);
        let mut s = Mat::<f64>::zeros(n, m);
        let mut nu = Mat::<f64>::zeros(n, m);
        let mut q = vec![0.0; n];
        let mut mu = vec![0.0; n];
        let mut xu = Mat::<f64>::zeros(n, m);
        let mut gu = Mat::<f64>::zeros(n, m);
        let mut r = Mat::<f64>::zeros(n, m);
        let mut rhs = Mat::<f64>::zeros(d, m);
        let mut fu = vec![0.0; n];
        let mut tmp = vec![0.0; n];
        let mut history = Vec::new();
        let mut status = "max_iter";
        let mut iters = 0;

        for it in 1..=settings.max_iter {
            iters = it;
            let a = if self.squared { rho } else { 1.0 };
            // u-step: M U = F^T t + a [(Zc - Lam) + G^T (S - Nu)], t = y (squared) or q - mu.
            for j in 0..m {
                for k in 0..n {
                    r[(k, j)] = s[(k, j)] - nu[(k, j)];
                }
            }
            let mut rr = Mat::<f64>::zeros(n, m);
            ops.add_gt_cols(r.as_ref(), rr.as_mut(), a);
            if self.squared {
                ops.add_ft_cols(y, rr.as_mut(), 1.0);
            } else {
                for k in 0..n {
                    tmp[k] = q[k] - mu[k];
                }
                ops.add_ft_cols(&tmp, rr.as_mut(), 1.0);
            }
            ops.xtr(rr.as_ref(), rhs.as_mut());
            for j in 0..m {
                for c in 0..d {
                    rhs[(c, j)] += a * cw * (zc[(c, j)] - lam[(c, j)]);
                }
            }
            let inner = local.as_ref().unwrap_or(&self.usolver).solve(ops, rhs.as_ref(), u.as_mut())?;
            ops.xu(u.as_ref(), xu.as_mut());
            ops.g_from_z(xu.as_ref(), gu.as_mut());
            ops.f_from_z(xu.as_ref(), &mut fu);

            // Zc-step: group soft-thresholding of U + Lam at beta / rho.
            let zc_old = zc.clone();
            group_soft_threshold(&mut zc, u.as_ref(), lam.as_ref(), al, beta / (rho * cw));
            // S-step: projection onto the nonnegative orthant; q-step: prox of the loss.
            let s_old = s.clone();
            for j in 0..m {
                for k in 0..n {
                    s[(k, j)] = (al * gu[(k, j)] + (1.0 - al) * s_old[(k, j)] + nu[(k, j)]).max(0.0);
                }
            }
            let q_old = q.clone();
            if !self.squared {
                for k in 0..n {
                    q[k] = loss.prox(al * fu[k] + (1.0 - al) * q_old[k] + mu[k], y[k], 1.0 / rho);
                }
            }
            // Dual updates and residuals.
            let (mut pr2, mut au2, mut bz2) = (0.0, 0.0, 0.0);
            for j in 0..m {
                for c in 0..d {
                    let diff = u[(c, j)] - zc[(c, j)];
                    lam[(c, j)] += al * u[(c, j)] + (1.0 - al) * zc_old[(c, j)] - zc[(c, j)];
                    pr2 += cw * diff * diff;
                    au2 += cw * u[(c, j)] * u[(c, j)];
                    bz2 += cw * zc[(c, j)] * zc[(c, j)];
                }
                for k in 0..n {
                    let diff = gu[(k, j)] - s[(k, j)];
                    nu[(k, j)] += al * gu[(k, j)] + (1.0 - al) * s_old[(k, j)] - s[(k, j)];
                    pr2 += diff * diff;
                    au2 += gu[(k, j)] * gu[(k, j)];
                    bz2 += s[(k, j)] * s[(k, j)];
                }
            }
            if !self.squared {
                for k in 0..n {
                    let diff = fu[k] - q[k];
                    mu[k] += al * fu[k] + (1.0 - al) * q_old[k] - q[k];
                    pr2 += diff * diff;
                    au2 += fu[k] * fu[k];
                    bz2 += q[k] * q[k];
                }
            }
            // Dual residual rho * A^T B (z - z_old) and the scale rho * ||A^T (lam, nu, mu)||, via one GEMM each.
            rr.fill(0.0);
            for j in 0..m {
                for k in 0..n {
                    r[(k, j)] = s[(k, j)] - s_old[(k, j)];
                }
            }
            ops.add_gt_cols(r.as_ref(), rr.as_mut(), 1.0);
            if !self.squared {
                for k in 0..n {
                    tmp[k] = q[k] - q_old[k];
                }
                ops.add_ft_cols(&tmp, rr.as_mut(), 1.0);
            }
            let mut dres = Mat::<f64>::zeros(d, m);
            ops.xtr(rr.as_ref(), dres.as_mut());
            let dres = (&dres + (&zc - &zc_old) * faer::Scale(cw)).norm_l2() * rho;
            rr.fill(0.0);
            ops.add_gt_cols(nu.as_ref(), rr.as_mut(), 1.0);
            if !self.squared {
                ops.add_ft_cols(&mu, rr.as_mut(), 1.0);
            }
            let mut ady = Mat::<f64>::zeros(d, m);
            ops.xtr(rr.as_ref(), ady.as_mut());
            let ady = (&ady + &lam * faer::Scale(cw)).norm_l2() * rho;

            let pres = pr2.sqrt();
            let n_con = (d * m + n * m + if self.squared { 0 } else { n }) as f64;
            let eps_pri = n_con.sqrt() * settings.eps_abs + settings.eps_rel * au2.sqrt().max(bz2.sqrt());
            let eps_dual = ((d * m) as f64).sqrt() * settings.eps_abs + settings.eps_rel * ady;

            let (objective, violation) = self.objective(zc.as_ref(), y, beta, loss, &mut xu, &mut fu);
            let rec = Record {
                iter: it,
                objective,
                primal_residual: pres,
                dual_residual: dres,
                violation,
                seconds: start.elapsed().as_secs_f64(),
                inner_iterations: inner,
            };
            history.push(rec);
            if let Some(why) = rec.stop("ADMM", progress, eps_pri, eps_dual, settings.time_limit)? {
                status = why;
                break;
            }
            if settings.adapt_every > 0 && it % settings.adapt_every == 0 && refactors < settings.max_refactor {
                // With the loss split off (q = F U) the u-step has no smooth term, so rho A^T y equals the
                // dual residual and cannot normalise it; those losses use the unnormalised rule.
                let (pn, dn) = if self.squared {
                    (pres / au2.sqrt().max(bz2.sqrt()).max(1e-300), dres / ady.max(1e-300))
                } else {
                    (pres, dres)
                };
                let ratio = (pn / dn.max(1e-300)).sqrt();
                if ratio.is_finite() && !(0.2..=5.0).contains(&ratio) {
                    let new_rho = (rho * ratio).clamp(1e-6, 1e6);
                    // Scaled duals are y / rho.
                    let k = rho / new_rho;
                    lam = &lam * faer::Scale(k);
                    nu = &nu * faer::Scale(k);
                    mu.iter_mut().for_each(|v| *v *= k);
                    rho = new_rho;
                    if self.squared {
                        let t0 = Instant::now();
                        local = Some(USolver::new(ops, rho, cw, self.usolver.kind(), self.pcg_tol)?);
                        factor_seconds += t0.elapsed().as_secs_f64();
                    }
                    // Convergence needs rho fixed eventually, whether or not it costs a refactorisation.
                    refactors += 1;
                }
            }
        }
        // Only a converged iterate is projected: there the violation, and so the move, is of the order of the
        // tolerance. An iterate stopped early (max_iter, time limit, interrupt) is returned as it is: projecting
        // it can move the network far (its objective_ and constraint_violation_ are reported honestly either way).
        if settings.project && status == "converged" {
            project_cones(ops.x, ops.dm.as_ref(), zc.as_mut(), 2000);
            let (obj, viol) = self.objective(zc.as_ref(), y, beta, loss, &mut xu, &mut fu);
            if let Some(r) = history.last_mut() {
                r.objective = obj;
                r.violation = viol;
            }
        }
        let objective = history.last().map(|r| r.objective).unwrap_or(f64::NAN);
        let v = zc.as_ref().subcols(0, p).to_owned();
        let w = zc.as_ref().subcols(p, p).to_owned();
        Ok(AdmmResult {
            v,
            w,
            objective,
            iterations: iters,
            status,
            history,
            u_solver: self.usolver.kind(),
            factor_seconds: self.factor_seconds + factor_seconds,
            solve_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// (convex objective, largest cone-constraint violation) at U (d x 2P); uses the buffers given.
    fn objective(&self, u: MatRef<'_, f64>, y: &[f64], beta: f64, loss: Loss, xu: &mut Mat<f64>,
                 fu: &mut [f64]) -> (f64, f64) {
        let ops = &self.ops;
        let p = ops.p();
        ops.xu(u, xu.as_mut());
        ops.f_from_z(xu.as_ref(), fu);
        let mut reg = 0.0;
        for j in 0..2 * p {
            reg += u.col(j).norm_l2();
        }
        let mut viol: f64 = 0.0;
        for j in 0..2 * p {
            let dj = ops.dm.col(j % p);
            for k in 0..ops.n() {
                viol = viol.max(-(2.0 * dj[k] - 1.0) * xu[(k, j)]);
            }
        }
        (loss.value(fu, y) + beta * reg, viol)
    }
}

/// Shapes, finiteness, 0/1 patterns, relaxation and rho of a problem (shared by the standard and robust ADMM).
pub(crate) fn check_problem(x: MatRef<'_, f64>, patterns: MatRef<'_, f64>, settings: &AdmmSettings) -> Result<()> {
    let (n, d, p) = (x.nrows(), x.ncols(), patterns.ncols());
    if n == 0 || d == 0 || p == 0 {
        return Err(Error::Shape(format!("empty problem: n = {n}, d = {d}, P = {p}")));
    }
    if patterns.nrows() != n {
        return Err(Error::Shape(format!("patterns have {} rows but X has {n}", patterns.nrows())));
    }
    for j in 0..d {
        for i in 0..n {
            if !x[(i, j)].is_finite() {
                return Err(Error::InvalidInput(format!("X[{i}, {j}] = {} is not finite", x[(i, j)])));
            }
        }
    }
    for j in 0..p {
        for i in 0..n {
            let v = patterns[(i, j)];
            if v != 0.0 && v != 1.0 {
                return Err(Error::InvalidInput(format!("patterns[{i}, {j}] = {v}; patterns must be 0/1")));
            }
        }
    }
    if !(1.0..2.0).contains(&settings.relaxation) {
        return Err(Error::InvalidInput(format!("relaxation must be in [1, 2), got {}", settings.relaxation)));
    }
    if !(settings.rho > 0.0 && settings.rho.is_finite()) {
        return Err(Error::InvalidInput(format!("rho must be positive and finite, got {}", settings.rho)));
    }
    Ok(())
}

/// One-call convenience: factor and solve for one target.
/// The Zc-step: each column of the over-relaxed al U + (1 - al) Zc + Lam soft-thresholded in l2 norm at `thr`.
pub(crate) fn group_soft_threshold(zc: &mut Mat<f64>, u: MatRef<'_, f64>, lam: MatRef<'_, f64>, al: f64, thr: f64) {
    for j in 0..zc.ncols() {
        let col = |c: usize, zc: &Mat<f64>| al * u[(c, j)] + (1.0 - al) * zc[(c, j)] + lam[(c, j)];
        let nrm = (0..zc.nrows()).map(|c| col(c, zc).powi(2)).sum::<f64>().sqrt();
        let shrink = if nrm > thr { 1.0 - thr / nrm } else { 0.0 };
        for c in 0..zc.nrows() {
            let v = shrink * col(c, zc);
            zc[(c, j)] = v;
        }
    }
}

pub fn solve_admm(x: MatRef<'_, f64>, y: &[f64], patterns: MatRef<'_, f64>, beta: f64, loss: Loss,
                  settings: &AdmmSettings) -> Result<AdmmResult> {
    AdmmProblem::new(x, patterns, loss, settings)?.solve(y, beta, loss, settings, &mut |_| true)
}
