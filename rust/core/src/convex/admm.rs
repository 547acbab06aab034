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
use super::ustep::{self, PcgWarm, USolve, USolver};
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

/// With `pcg_decay` > 0 the PCG tolerance is also kept below this factor times the relative residuals of the last
/// convergence check, so that the u-step errors shrink with the ADMM's own progress.
const PCG_RESIDUAL_FACTOR: f64 = 0.01;

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
    /// Residuals, objective and stopping test every `check_every` iterations (also at residual-balancing
    /// iterations, at `max_iter` and once past `time_limit`): each check costs three n x d x 2P GEMMs (the objective
    /// at Zc, the dual residual and its scale) besides the iteration's own three. The history has one record per
    /// check, so with `check_every` > 1 it is sampled (its `inner_iterations` sum the iterations since the last
    /// record); the iterates do not depend on it. 1 checks every iteration.
    pub check_every: usize,
    /// Inexact PCG u-steps: when > 0, iteration k solves from the previous U to relative residual
    /// max(pcg_tol, min(pcg_decay / k^1.5, 0.01 r)), r the larger relative residual (primal, dual) of the last
    /// convergence check: summable errors, as inexact ADMM needs (Eckstein & Bertsekas 1992), that also shrink with
    /// the run's progress (the decay alone, 1e-2 / k^1.5, made an Anderson-accelerated test run need 8x more ADMM
    /// iterations; with the residual term, 1% more and 43% fewer inner iterations). 0 uses pcg_tol throughout.
    /// Only the PCG u-step reads it.
    pub pcg_decay: f64,
    /// Memory of the safeguarded type-II Anderson acceleration of the ADMM fixed-point iteration (see
    /// [`Anderson`]); 0 runs the plain ADMM. Standard ADMM only (the robust ADMM ignores it).
    pub anderson: usize,
    /// An accelerated point is rejected (and the memory cleared) when its fixed-point residual exceeds this
    /// factor times the residual of the point it was extrapolated from.
    pub anderson_safeguard: f64,
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
            anderson: 0,
            anderson_safeguard: 1.0,
            check_every: 1,
            pcg_decay: 0.0,
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
    /// Anderson-accelerated points taken, and rejected by the safeguard (0 and 0 without acceleration).
    pub anderson_accepted: usize,
    pub anderson_rejected: usize,
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
        let kind = ustep::choose(settings.u_solver, n, d, p, settings.memory_limit, settings.time_limit)?;
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
        // rr: the u-step's n x 2P right-hand side before X^T; at check iterations it is reused for the dual residual
        // and rr2 holds the columns of the dual-scale product.
        let mut rr = Mat::<f64>::zeros(n, m);
        let mut rr2 = Mat::<f64>::zeros(n, m);
        let mut rhs = Mat::<f64>::zeros(d, m);
        let mut zc_old = Mat::<f64>::zeros(d, m);
        let mut q_old = vec![0.0; n];
        let mut fu = vec![0.0; n];
        let mut tmp = vec![0.0; n];
        let mut history = Vec::new();
        let mut status = "max_iter";
        let mut iters = 0;
        let mut inner_since = 0;
        let check_every = settings.check_every.max(1);
        // The PCG u-step's state between iterations (M U of the last solve; X U is in xu).
        let mut warm = PcgWarm::new(d, m);
        // Largest relative residual (primal over its scale, dual over rho ||A^T y||) at the last check.
        let mut rel_last = f64::INFINITY;
        // F^T y is constant for the squared loss: one X^T product for the whole run.
        let fty = self.squared.then(|| {
            let mut e = Mat::<f64>::zeros(n, m);
            ops.add_ft_cols(y, e.as_mut(), 1.0);
            let mut t = Mat::<f64>::zeros(d, m);
            ops.xtr(e.as_ref(), t.as_mut());
            t
        });
        // Anderson acceleration on the state t = (Zc + Lam, S + Nu, q + mu), from which one iteration's inputs
        // follow (Zc = group shrink of its block, S = its positive part, q = the loss prox; the duals are the rest).
        let state_len = d * m + n * m + if self.squared { 0 } else { n };
        let mut accel = (settings.anderson > 0).then(|| AccelState::new(settings.anderson, state_len));

        for it in 1..=settings.max_iter {
            iters = it;
            let a = if self.squared { rho } else { 1.0 };
            // u-step: M U = F^T t + a [(Zc - Lam) + G^T (S - Nu)], t = y (squared) or q - mu.
            ops.gt_cols_diff(s.as_ref(), nu.as_ref(), rr.as_mut(), a);
            if !self.squared {
                for k in 0..n {
                    tmp[k] = q[k] - mu[k];
                }
                ops.add_ft_cols(&tmp, rr.as_mut(), 1.0);
            }
            ops.xtr(rr.as_ref(), rhs.as_mut());
            for j in 0..m {
                for c in 0..d {
                    let f0 = fty.as_ref().map_or(0.0, |t| t[(c, j)]);
                    rhs[(c, j)] += f0 + a * cw * (zc[(c, j)] - lam[(c, j)]);
                }
            }
            // Inexact PCG: the tolerance decays with k and follows the relative residuals of the last check.
            let tol_k = (settings.pcg_decay > 0.0)
                .then(|| (settings.pcg_decay / (it as f64).powf(1.5)).min(PCG_RESIDUAL_FACTOR * rel_last));
            let inner = local.as_ref().unwrap_or(&self.usolver).solve_xu(ops, rhs.as_ref(), u.as_mut(),
                                                                        Some(xu.as_mut()), tol_k, Some(&mut warm))?;
            inner_since += inner;
            if !self.squared {
                ops.f_from_z(xu.as_ref(), &mut fu);
            }
            // Residuals, objective and the stopping test (three more GEMMs) only every check_every iterations, at
            // residual-balancing iterations, at the last iteration and once past the time limit.
            let adapt_now = settings.adapt_every > 0 && it % settings.adapt_every == 0 && refactors < settings.max_refactor;
            let check = it % check_every == 0 || it == settings.max_iter || adapt_now
                || start.elapsed().as_secs_f64() > settings.time_limit;

            // Zc-step: group soft-thresholding of U + Lam at beta / rho.
            zc_old.copy_from(&zc);
            group_soft_threshold(&mut zc, u.as_ref(), lam.as_ref(), al, beta / (rho * cw));
            // S-step (projection onto the nonnegative orthant) and its dual update, fused with G U = (2D - I) X U;
            // at check iterations also the residual sums and the columns of A^T B (s - s_old) and A^T nu.
            let (mut pr2, mut au2, mut bz2) = (0.0, 0.0, 0.0);
            for j in 0..m {
                let dj = ops.dm.col_as_slice(j % p);
                let xj = xu.col_as_slice(j);
                let (sj, nj) = (s.col_as_slice_mut(j), nu.col_as_slice_mut(j));
                if check {
                    let (r1, r2) = (rr.col_as_slice_mut(j), rr2.col_as_slice_mut(j));
                    for k in 0..n {
                        let sg = 2.0 * dj[k] - 1.0;
                        let g = sg * xj[k];
                        let so = sj[k];
                        let sn = (al * g + (1.0 - al) * so + nj[k]).max(0.0);
                        let nn = nj[k] + al * g + (1.0 - al) * so - sn;
                        sj[k] = sn;
                        nj[k] = nn;
                        pr2 += (g - sn) * (g - sn);
                        au2 += g * g;
                        bz2 += sn * sn;
                        r1[k] = sg * (sn - so);
                        r2[k] = sg * nn;
                    }
                } else {
                    for k in 0..n {
                        let g = (2.0 * dj[k] - 1.0) * xj[k];
                        let so = sj[k];
                        let sn = (al * g + (1.0 - al) * so + nj[k]).max(0.0);
                        nj[k] += al * g + (1.0 - al) * so - sn;
                        sj[k] = sn;
                    }
                }
            }
            // q-step: prox of the loss, and its dual update.
            if !self.squared {
                q_old.copy_from_slice(&q);
                for k in 0..n {
                    q[k] = loss.prox(al * fu[k] + (1.0 - al) * q_old[k] + mu[k], y[k], 1.0 / rho);
                    let diff = fu[k] - q[k];
                    mu[k] += al * fu[k] + (1.0 - al) * q_old[k] - q[k];
                    pr2 += diff * diff;
                    au2 += fu[k] * fu[k];
                    bz2 += q[k] * q[k];
                }
            }
            for j in 0..m {
                for c in 0..d {
                    let diff = u[(c, j)] - zc[(c, j)];
                    lam[(c, j)] += al * u[(c, j)] + (1.0 - al) * zc_old[(c, j)] - zc[(c, j)];
                    pr2 += cw * diff * diff;
                    au2 += cw * u[(c, j)] * u[(c, j)];
                    bz2 += cw * zc[(c, j)] * zc[(c, j)];
                }
            }
            // At a check: the residuals (primal, dual, dual scale) the residual balancing below reads.
            let residuals = if check {
                // Dual residual rho * A^T B (z - z_old) and the scale rho * ||A^T (lam, nu, mu)||, via one GEMM each.
                if !self.squared {
                    for k in 0..n {
                        tmp[k] = q[k] - q_old[k];
                    }
                    ops.add_ft_cols(&tmp, rr.as_mut(), 1.0);
                    ops.add_ft_cols(&mu, rr2.as_mut(), 1.0);
                }
                let mut dres = Mat::<f64>::zeros(d, m);
                ops.xtr(rr.as_ref(), dres.as_mut());
                let dres = (&dres + (&zc - &zc_old) * faer::Scale(cw)).norm_l2() * rho;
                let mut ady = Mat::<f64>::zeros(d, m);
                ops.xtr(rr2.as_ref(), ady.as_mut());
                let ady = (&ady + &lam * faer::Scale(cw)).norm_l2() * rho;

                let pres = pr2.sqrt();
                rel_last = (pres / au2.sqrt().max(bz2.sqrt()).max(1e-300)).max(dres / ady.max(1e-300));
                let n_con = (d * m + n * m + if self.squared { 0 } else { n }) as f64;
                let eps_pri = n_con.sqrt() * settings.eps_abs + settings.eps_rel * au2.sqrt().max(bz2.sqrt());
                let eps_dual = ((d * m) as f64).sqrt() * settings.eps_abs + settings.eps_rel * ady;

                let (objective, violation) = self.objective(zc.as_ref(), y, beta, loss, &mut rr, &mut fu);
                let rec = Record {
                    iter: it,
                    objective,
                    primal_residual: pres,
                    dual_residual: dres,
                    violation,
                    seconds: start.elapsed().as_secs_f64(),
                    inner_iterations: inner_since,
                };
                inner_since = 0;
                history.push(rec);
                if let Some(why) = rec.stop("ADMM", progress, eps_pri, eps_dual, settings.time_limit)? {
                    status = why;
                    break;
                }
                Some((pres, dres, ady))
            } else {
                None
            };
            if let Some(acc) = accel.as_mut() {
                let thr = beta / (rho * cw);
                acc.after_iteration(settings.anderson_safeguard, thr, y, loss, rho, &mut zc, &mut lam, &mut s,
                                    &mut nu, &mut q, &mut mu);
            }
            if let (true, Some((pres, dres, ady))) = (adapt_now, residuals) {
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
                        warm.invalidate();
                        factor_seconds += t0.elapsed().as_secs_f64();
                    }
                    // Convergence needs rho fixed eventually, whether or not it costs a refactorisation.
                    refactors += 1;
                    if let Some(acc) = accel.as_mut() {
                        acc.restart(&zc, &lam, &s, &nu, &q, &mu);
                    }
                }
            }
        }
        // Only a converged iterate is projected: there the violation, and so the move, is of the order of the
        // tolerance. An iterate stopped early (max_iter, time limit, interrupt) is returned as it is: projecting
        // it can move the network far (its objective_ and constraint_violation_ are reported honestly either way).
        if settings.project && status == "converged" {
            project_cones(ops.x, ops.dm.as_ref(), zc.as_mut(), 2000);
            let (obj, viol) = self.objective(zc.as_ref(), y, beta, loss, &mut rr, &mut fu);
            if let Some(r) = history.last_mut() {
                r.objective = obj;
                r.violation = viol;
            }
        }
        let objective = history.last().map(|r| r.objective).unwrap_or(f64::NAN);
        let v = zc.as_ref().subcols(0, p).to_owned();
        let w = zc.as_ref().subcols(p, p).to_owned();
        let (anderson_accepted, anderson_rejected) = accel.map(|a| (a.accepted, a.rejected)).unwrap_or((0, 0));
        Ok(AdmmResult {
            v,
            w,
            objective,
            iterations: iters,
            status,
            anderson_accepted,
            anderson_rejected,
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

/// Safeguarded type-II Anderson acceleration of a fixed-point iteration x <- T(x) (Walker & Ni 2011; the
/// safeguard as in SCS 3 and Zhang, O'Donoghue & Boyd 2020): from the last `mem` pairs (x_k, g_k = T(x_k) - x_k)
/// the next point is x + g - (S + Y) gamma, gamma = argmin ||g - Y gamma||^2 + reg ||gamma||^2, where S and Y hold
/// the differences of consecutive x and g. The caller evaluates T at that point next and rejects it (going back
/// to the plain step T(x_k) and clearing the memory) if its residual grew (see [`AdmmSettings::anderson_safeguard`]).
pub(crate) struct Anderson {
    mem: usize,
    /// Ring buffers: y_i = g_{k+1} - g_k and z_i = s_i + y_i = T(x_{k+1}) - T(x_k) (only S + Y enters the step).
    y: Vec<Vec<f64>>,
    z: Vec<Vec<f64>>,
    /// Gram matrix Y^T Y over the ring positions.
    gram: Vec<f64>,
    /// T(x) = x + g and g of the previous pair.
    t_prev: Vec<f64>,
    g_prev: Vec<f64>,
    have_prev: bool,
    next: usize,
    len: usize,
}

const CHUNK: usize = 1 << 15;
const PAR_MIN: usize = 1 << 22;

/// (a.b, a.c) in one pass over a.
fn dot2(a: &[f64], b: &[f64], c: &[f64]) -> (f64, f64) {
    let (mut s, mut t) = ([0.0f64; 8], [0.0f64; 8]);
    let (a8, b8, c8) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
    let (ra, rb, rc) = (a8.remainder(), b8.remainder(), c8.remainder());
    for ((x, y), z) in a8.zip(b8).zip(c8) {
        for l in 0..8 {
            s[l] += x[l] * y[l];
            t[l] += x[l] * z[l];
        }
    }
    let (mut s1, mut t1) = (s.iter().sum::<f64>(), t.iter().sum::<f64>());
    for ((x, y), z) in ra.iter().zip(rb).zip(rc) {
        s1 += x * y;
        t1 += x * z;
    }
    (s1, t1)
}

type DiffChunk<'a> = (((&'a mut [f64], &'a mut [f64]), (&'a mut [f64], &'a mut [f64])), (&'a [f64], &'a [f64]));

impl Anderson {
    pub(crate) fn new(mem: usize, len: usize) -> Self {
        Self {
            mem,
            y: (0..mem).map(|_| vec![0.0; len]).collect(),
            z: (0..mem).map(|_| vec![0.0; len]).collect(),
            gram: vec![0.0; mem * mem],
            t_prev: vec![0.0; len],
            g_prev: vec![0.0; len],
            have_prev: false,
            next: 0,
            len: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.have_prev = false;
        self.len = 0;
        self.next = 0;
    }

    /// Records the pair (x, g = T(x) - x) and writes the extrapolated point into `out`; returns false (and
    /// writes x + g) when there is nothing to extrapolate from yet or the least-squares problem is degenerate.
    pub(crate) fn step(&mut self, x: &[f64], g: &[f64], out: &mut [f64]) -> bool {
        use rayon::prelude::*;
        let mem = self.mem;
        // Serial below ~4M entries: on a loaded machine every parallel call can wait for a descheduled thread.
        let par = x.len() > PAR_MIN;
        // One pass: the new differences into the ring slot (when there is a previous pair); this pair becomes
        // the previous one.
        let slot = self.next;
        let record = self.have_prev;
        {
            let body = |(((yv, zv), (tp, gp)), (x, g)): DiffChunk<'_>| {
                if record {
                    for ((((yv, zv), tp), gp), (x, g)) in
                        yv.iter_mut().zip(zv.iter_mut()).zip(tp.iter_mut()).zip(gp.iter_mut()).zip(x.iter().zip(g))
                    {
                        let t = x + g;
                        *yv = g - *gp;
                        *zv = t - *tp;
                        *tp = t;
                        *gp = *g;
                    }
                } else {
                    for ((tp, gp), (x, g)) in tp.iter_mut().zip(gp.iter_mut()).zip(x.iter().zip(g)) {
                        *tp = x + g;
                        *gp = *g;
                    }
                }
            };
            let (yv, zv) = (&mut self.y[slot], &mut self.z[slot]);
            if par {
                yv.par_chunks_mut(CHUNK)
                    .zip(zv.par_chunks_mut(CHUNK))
                    .zip(self.t_prev.par_chunks_mut(CHUNK).zip(self.g_prev.par_chunks_mut(CHUNK)))
                    .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
                    .for_each(body);
            } else {
                body((((&mut yv[..], &mut zv[..]), (&mut self.t_prev[..], &mut self.g_prev[..])), (x, g)));
            }
        }
        self.have_prev = true;
        if !record {
            out.copy_from_slice(&self.t_prev);
            return false;
        }
        self.next = (slot + 1) % mem;
        self.len = (self.len + 1).min(mem);
        let m = self.len;
        // The ring holds m columns at positions 0..m (m < mem) or all of them. One pass over each column gives
        // its product with the new column (the Gram matrix) and with g.
        // Chunk by chunk, so that the new column's and g's chunks stay in cache over the m columns.
        let ys = &self.y;
        let chunk_dots = |c: usize| -> Vec<f64> {
            let off = c * CHUNK;
            let end = (off + CHUNK).min(g.len());
            let mut acc = vec![0.0; 2 * m];
            for k in 0..m {
                let (gk, bk) = dot2(&ys[k][off..end], &ys[slot][off..end], &g[off..end]);
                acc[2 * k] = gk;
                acc[2 * k + 1] = bk;
            }
            acc
        };
        let nchunks = g.len().div_ceil(CHUNK);
        let add = |mut p: Vec<f64>, q: Vec<f64>| {
            p.iter_mut().zip(&q).for_each(|(a, b)| *a += b);
            p
        };
        let sums = if par {
            (0..nchunks).into_par_iter().map(chunk_dots).reduce(|| vec![0.0; 2 * m], add)
        } else {
            (0..nchunks).map(chunk_dots).fold(vec![0.0; 2 * m], add)
        };
        let mut b = vec![0.0; m];
        for k in 0..m {
            self.gram[slot * mem + k] = sums[2 * k];
            self.gram[k * mem + slot] = sums[2 * k];
            b[k] = sums[2 * k + 1];
        }
        let mut a = vec![0.0; m * m];
        let mut tr = 0.0;
        for i in 0..m {
            for j in 0..m {
                a[i * m + j] = self.gram[i * mem + j];
            }
            tr += a[i * m + i];
        }
        // Tikhonov regularisation relative to the scale of Y^T Y.
        let reg = 1e-10 * tr.max(f64::MIN_POSITIVE);
        for i in 0..m {
            a[i * m + i] += reg;
        }
        if cholesky_solve(&mut a, &mut b, m).is_none() || b.iter().any(|v| !v.is_finite()) {
            out.copy_from_slice(&self.t_prev);
            return false;
        }
        // out = x + g - Z gamma, chunk by chunk (each chunk of out stays in cache over the m columns).
        let zs = &self.z;
        let body = |(c, (o, t)): (usize, (&mut [f64], &[f64]))| {
            o.copy_from_slice(t);
            let off = c * CHUNK;
            for (k, gk) in b.iter().enumerate() {
                let len = o.len();
                for (oi, zi) in o.iter_mut().zip(&zs[k][off..off + len]) {
                    *oi -= gk * zi;
                }
            }
        };
        if par {
            out.par_chunks_mut(CHUNK).zip(self.t_prev.par_chunks(CHUNK)).enumerate().for_each(body);
        } else {
            body((0, (out, &self.t_prev[..])));
        }
        true
    }
}

/// Solves the small SPD system a z = b in place (b becomes z); None when a is not numerically SPD.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], m: usize) -> Option<()> {
    for j in 0..m {
        let mut d = a[j * m + j];
        for k in 0..j {
            d -= a[j * m + k] * a[j * m + k];
        }
        if !(d > 0.0) {
            return None;
        }
        let d = d.sqrt();
        a[j * m + j] = d;
        for i in j + 1..m {
            let mut v = a[i * m + j];
            for k in 0..j {
                v -= a[i * m + k] * a[j * m + k];
            }
            a[i * m + j] = v / d;
        }
    }
    for i in 0..m {
        let mut v = b[i];
        for k in 0..i {
            v -= a[i * m + k] * b[k];
        }
        b[i] = v / a[i * m + i];
    }
    for i in (0..m).rev() {
        let mut v = b[i];
        for k in i + 1..m {
            v -= a[k * m + i] * b[k];
        }
        b[i] = v / a[i * m + i];
    }
    Some(())
}

/// The ADMM's side of the acceleration: packs the iterate into the fixed-point state, calls [`Anderson`], applies
/// the safeguard and unpacks the chosen point back into the iterate.
struct AccelState {
    aa: Anderson,
    /// The point the last iteration started from, its image T(t_in), the candidate, and the plain step T(x) of the
    /// last point whose extrapolation is being tried (where a rejected candidate falls back to).
    t_in: Vec<f64>,
    t_out: Vec<f64>,
    g: Vec<f64>,
    cand: Vec<f64>,
    fallback: Vec<f64>,
    /// Fixed-point residual ||T(x) - x|| at the point the current candidate was extrapolated from.
    gref: f64,
    last_was_aa: bool,
    /// The next pair straddles a change of rho (its t_in is not a state of the new map): do not record it.
    skip_pair: bool,
    accepted: usize,
    rejected: usize,
}

impl AccelState {
    fn new(mem: usize, len: usize) -> Self {
        Self {
            aa: Anderson::new(mem, len),
            t_in: vec![0.0; len],
            t_out: vec![0.0; len],
            g: vec![0.0; len],
            cand: vec![0.0; len],
            fallback: vec![0.0; len],
            gref: f64::INFINITY,
            last_was_aa: false,
            skip_pair: false,
            accepted: 0,
            rejected: 0,
        }
    }

    fn pack(t: &mut [f64], zc: &Mat<f64>, lam: &Mat<f64>, s: &Mat<f64>, nu: &Mat<f64>, q: &[f64], mu: &[f64]) {
        let (d, m, n) = (zc.nrows(), zc.ncols(), s.nrows());
        let mut o = 0;
        for j in 0..m {
            for c in 0..d {
                t[o] = zc[(c, j)] + lam[(c, j)];
                o += 1;
            }
        }
        for j in 0..m {
            let (sj, nj) = (s.col_as_slice(j), nu.col_as_slice(j));
            for (tk, (a, b)) in t[o..o + n].iter_mut().zip(sj.iter().zip(nj)) {
                *tk = a + b;
            }
            o += n;
        }
        for k in o..t.len() {
            t[k] = q[k - o] + mu[k - o];
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn unpack(t: &[f64], thr: f64, y: &[f64], loss: Loss, rho: f64, zc: &mut Mat<f64>, lam: &mut Mat<f64>,
              s: &mut Mat<f64>, nu: &mut Mat<f64>, q: &mut [f64], mu: &mut [f64]) {
        let (d, m, n) = (zc.nrows(), zc.ncols(), s.nrows());
        let mut o = 0;
        for j in 0..m {
            let col = &t[o..o + d];
            let nrm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            let shrink = if nrm > thr { 1.0 - thr / nrm } else { 0.0 };
            for c in 0..d {
                zc[(c, j)] = shrink * col[c];
                lam[(c, j)] = col[c] - zc[(c, j)];
            }
            o += d;
        }
        for j in 0..m {
            let (sj, nj) = (s.col_as_slice_mut(j), nu.col_as_slice_mut(j));
            for ((&v, a), b) in t[o..o + n].iter().zip(sj.iter_mut()).zip(nj.iter_mut()) {
                *a = v.max(0.0);
                *b = v - *a;
            }
            o += n;
        }
        for k in 0..t.len() - o {
            let v = t[o + k];
            q[k] = loss.prox(v, y[k], 1.0 / rho);
            mu[k] = v - q[k];
        }
    }

    /// After an iteration that started from `t_in` and produced the iterate given: safeguard, then extrapolate.
    #[allow(clippy::too_many_arguments)]
    fn after_iteration(&mut self, safeguard: f64, thr: f64, y: &[f64], loss: Loss, rho: f64, zc: &mut Mat<f64>,
                       lam: &mut Mat<f64>, s: &mut Mat<f64>, nu: &mut Mat<f64>, q: &mut [f64], mu: &mut [f64]) {
        Self::pack(&mut self.t_out, zc, lam, s, nu, q, mu);
        let mut g2 = 0.0;
        for ((g, a), b) in self.g.iter_mut().zip(&self.t_out).zip(&self.t_in) {
            *g = a - b;
            g2 += *g * *g;
        }
        let gnorm = g2.sqrt();
        if self.last_was_aa && !(gnorm <= safeguard * self.gref) {
            // The extrapolated point did worse than the point it came from: take that point's plain step instead.
            self.rejected += 1;
            self.aa.reset();
            self.last_was_aa = false;
            self.t_in.copy_from_slice(&self.fallback);
            Self::unpack(&self.t_in, thr, y, loss, rho, zc, lam, s, nu, q, mu);
            return;
        }
        if self.last_was_aa {
            self.accepted += 1;
        }
        self.gref = gnorm;
        self.fallback.copy_from_slice(&self.t_out);
        if self.skip_pair {
            self.skip_pair = false;
            self.last_was_aa = false;
            std::mem::swap(&mut self.t_in, &mut self.t_out);
            return;
        }
        if self.aa.step(&self.t_in, &self.g, &mut self.cand) {
            std::mem::swap(&mut self.t_in, &mut self.cand);
            Self::unpack(&self.t_in, thr, y, loss, rho, zc, lam, s, nu, q, mu);
            self.last_was_aa = true;
        } else {
            std::mem::swap(&mut self.t_in, &mut self.t_out);
            self.last_was_aa = false;
        }
    }

    /// After a change of rho (the duals were rescaled): forget the history and restart from the iterate.
    fn restart(&mut self, zc: &Mat<f64>, lam: &Mat<f64>, s: &Mat<f64>, nu: &Mat<f64>, q: &[f64], mu: &[f64]) {
        self.aa.reset();
        self.last_was_aa = false;
        self.skip_pair = true;
        self.gref = f64::INFINITY;
        Self::pack(&mut self.t_in, zc, lam, s, nu, q, mu);
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
