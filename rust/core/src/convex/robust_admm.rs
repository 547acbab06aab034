//! ADMM for the l-inf adversarial convex program (Bai, Gautam & Sojoudi 2022, Section 4; pieces in [`super::robust`]):
//!   min  sum_k robust_loss(f_k, y_k, eps ||g_k||_1) + beta sum_j ||u_j||_2
//!   s.t. (2D_j - I) X u_j >= eps ||u_j,f||_1   (every column j of U = [V W], row-wise)
//! with f = F U and g_k the rows of Gamma U = D (V - W)_f^T. Splitting (scaled form, over-relaxed):
//!   U = Zc (weight c: group norms),  (G U, U) = (S, T) in the cone {s >= eps ||t_f||_1}  (per column),
//!   (F U, Gamma U) = (q, R)  (robust loss prox, per sample).
//! Every term with data is split off, so the u-step matrix blkdiag((c + 1) I + X^T X) + F^T F + Gamma^T Gamma
//! does not depend on rho: it is factored once and residual balancing is free. At eps = 0 it solves the
//! standard program (tested against it).

use std::time::Instant;

use faer::linalg::matmul::matmul;
use faer::prelude::*;
use faer::{Accum, Mat, MatMut, MatRef, Side};

use super::admm::{check_problem, group_soft_threshold, AdmmResult, AdmmSettings, Loss, Record};
use super::ops::{par, Ops};
use super::robust::{project_l1_cone, robust_loss, robust_prox};
use super::ustep::{self, USolve, USolver};
use crate::error::{Error, Result};

/// A data set, its patterns, the perturbable coordinates and the radius, with the u-step factored once.
pub struct RobustAdmmProblem<'a> {
    ops: Ops<'a>,
    fidx: Vec<usize>,
    eps: f64,
    usolver: USolver,
    c: f64,
    factor_seconds: f64,
}

impl<'a> RobustAdmmProblem<'a> {
    /// `x`: n x d (intercept column appended when wanted); `patterns`: n x P of 0/1; `feat`: length d, true for
    /// the coordinates the adversary may perturb; `eps` >= 0: the l-inf radius.
    pub fn new(x: MatRef<'a, f64>, patterns: MatRef<'_, f64>, feat: &[bool], eps: f64, settings: &AdmmSettings)
               -> Result<Self> {
        check_problem(x, patterns, settings)?;
        let (n, d, p) = (x.nrows(), x.ncols(), patterns.ncols());
        if feat.len() != d {
            return Err(Error::Shape(format!("feat has {} entries but X has {d} columns", feat.len())));
        }
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::InvalidInput(format!("adversarial eps must be finite and >= 0, got {eps}")));
        }
        let kind = ustep::choose_robust(settings.u_solver, n, d, p, settings.memory_limit, settings.time_limit)?;
        let fidx: Vec<usize> = (0..d).filter(|&c| feat[c]).collect();
        let ops = Ops { x, dm: patterns.to_owned() };
        let c = if settings.z_weight > 0.0 { settings.z_weight } else { (x.squared_norm_l2() / d as f64).max(1e-12) };
        let t0 = Instant::now();
        let usolver = USolver::with_gamma(&ops, 1.0, c + 1.0, kind, settings.pcg_tol, Some(&fidx))?;
        Ok(Self { ops, fidx, eps, usolver, c, factor_seconds: t0.elapsed().as_secs_f64() })
    }

    pub fn u_solver(&self) -> USolve {
        self.usolver.kind()
    }

    /// Runs the ADMM for one target `y` (length n); `progress` as in [`super::AdmmProblem::solve`]. The returned
    /// objective is the robust objective; `violation` in the history is the largest violation of the robust
    /// cone constraints at the group-sparse iterate.
    pub fn solve(&self, y: &[f64], beta: f64, loss: Loss, settings: &AdmmSettings,
                 progress: &mut dyn FnMut(&Record) -> bool) -> Result<AdmmResult> {
        let ops = &self.ops;
        let (n, d, p) = (ops.n(), ops.d(), ops.p());
        let (fidx, df, eps) = (&self.fidx, self.fidx.len(), self.eps);
        loss.check_targets(y, n)?;
        if !(beta > 0.0 && beta.is_finite()) {
            return Err(Error::InvalidInput(format!("beta must be positive and finite, got {beta}")));
        }
        let (cw, al) = (self.c, settings.relaxation);
        let mut rho = settings.rho;
        let mut adapts = 0;
        let m = 2 * p;
        let start = Instant::now();

        let mut u = Mat::<f64>::zeros(d, m);
        let (mut zc, mut lam) = (Mat::<f64>::zeros(d, m), Mat::<f64>::zeros(d, m));
        let (mut s, mut nu) = (Mat::<f64>::zeros(n, m), Mat::<f64>::zeros(n, m));
        let (mut t, mut th) = (Mat::<f64>::zeros(d, m), Mat::<f64>::zeros(d, m));
        let (mut q, mut mu) = (vec![0.0; n], vec![0.0; n]);
        let (mut r, mut xi) = (Mat::<f64>::zeros(n, df), Mat::<f64>::zeros(n, df));
        let mut xu = Mat::<f64>::zeros(n, m);
        let mut gu = Mat::<f64>::zeros(n, m);
        let mut gam = Mat::<f64>::zeros(n, df);
        let mut rr = Mat::<f64>::zeros(n, m);
        let mut rhs = Mat::<f64>::zeros(d, m);
        let mut fu = vec![0.0; n];
        let mut tmp = vec![0.0; n];
        let (mut a_col, mut b_col, mut b_row) = (vec![0.0; n], vec![0.0; df], vec![0.0; df]);
        let mut history = Vec::new();
        let mut status = "max_iter";
        let mut iters = 0;

        // out = A^T (blocks) for the blocks (Zc, S, T, q, R) given as (cw * zc-part, s-part, t-part, q-part, r-part).
        let at_blocks = |zpart: MatRef<'_, f64>, spart: MatRef<'_, f64>, tpart: MatRef<'_, f64>, qpart: &[f64],
                         rpart: MatRef<'_, f64>, rr: &mut Mat<f64>, out: &mut Mat<f64>| {
            rr.fill(0.0);
            ops.add_gt_cols(spart, rr.as_mut(), 1.0);
            ops.add_ft_cols(qpart, rr.as_mut(), 1.0);
            ops.xtr(rr.as_ref(), out.as_mut());
            for j in 0..m {
                for c in 0..d {
                    out[(c, j)] += cw * zpart[(c, j)] + tpart[(c, j)];
                }
            }
            ops.add_gamma_t(rpart, fidx, out.as_mut(), 1.0);
        };

        for it in 1..=settings.max_iter {
            iters = it;
            // u-step: M U = c (Zc - Lam) + G^T (S - Nu) + (T - Th) + F^T (q - mu) + Gamma^T (R - Xi).
            for k in 0..n {
                tmp[k] = q[k] - mu[k];
            }
            at_blocks((&zc - &lam).as_ref(), (&s - &nu).as_ref(), (&t - &th).as_ref(), &tmp, (&r - &xi).as_ref(),
                      &mut rr, &mut rhs);
            let inner = self.usolver.solve(ops, rhs.as_ref(), u.as_mut())?;
            ops.xu(u.as_ref(), xu.as_mut());
            ops.g_from_z(xu.as_ref(), gu.as_mut());
            ops.f_from_z(xu.as_ref(), &mut fu);
            ops.gamma(u.as_ref(), fidx, gam.as_mut());

            // Zc-step: group soft-thresholding at beta / (rho c).
            let zc_old = zc.clone();
            group_soft_threshold(&mut zc, u.as_ref(), lam.as_ref(), al, beta / (rho * cw));
            // (S, T)-step: projection of each column onto the cone {s >= eps ||t_f||_1} (t's other rows are free).
            let (s_old, t_old) = (s.clone(), t.clone());
            for j in 0..m {
                for k in 0..n {
                    a_col[k] = al * gu[(k, j)] + (1.0 - al) * s_old[(k, j)] + nu[(k, j)];
                }
                for c in 0..d {
                    t[(c, j)] = al * u[(c, j)] + (1.0 - al) * t_old[(c, j)] + th[(c, j)];
                }
                for (i, &c) in fidx.iter().enumerate() {
                    b_col[i] = t[(c, j)];
                }
                project_l1_cone(&mut a_col, &mut b_col, eps);
                for k in 0..n {
                    s[(k, j)] = a_col[k];
                }
                for (i, &c) in fidx.iter().enumerate() {
                    t[(c, j)] = b_col[i];
                }
            }
            // (q, R)-step: the robust loss prox, per sample.
            let (q_old, r_old) = (q.clone(), r.clone());
            for k in 0..n {
                for i in 0..df {
                    b_row[i] = al * gam[(k, i)] + (1.0 - al) * r_old[(k, i)] + xi[(k, i)];
                }
                let a = al * fu[k] + (1.0 - al) * q_old[k] + mu[k];
                q[k] = robust_prox(loss, a, &mut b_row, y[k], 1.0 / rho, eps);
                for i in 0..df {
                    r[(k, i)] = b_row[i];
                }
            }
            // Dual updates and residuals.
            let (mut pr2, mut au2, mut bz2) = (0.0, 0.0, 0.0);
            for j in 0..m {
                for c in 0..d {
                    let (uc, z, tt) = (u[(c, j)], zc[(c, j)], t[(c, j)]);
                    lam[(c, j)] += al * uc + (1.0 - al) * zc_old[(c, j)] - z;
                    th[(c, j)] += al * uc + (1.0 - al) * t_old[(c, j)] - tt;
                    pr2 += cw * (uc - z).powi(2) + (uc - tt).powi(2);
                    au2 += (cw + 1.0) * uc * uc;
                    bz2 += cw * z * z + tt * tt;
                }
                for k in 0..n {
                    let (g, sv) = (gu[(k, j)], s[(k, j)]);
                    nu[(k, j)] += al * g + (1.0 - al) * s_old[(k, j)] - sv;
                    pr2 += (g - sv).powi(2);
                    au2 += g * g;
                    bz2 += sv * sv;
                }
            }
            for k in 0..n {
                mu[k] += al * fu[k] + (1.0 - al) * q_old[k] - q[k];
                pr2 += (fu[k] - q[k]).powi(2);
                au2 += fu[k] * fu[k];
                bz2 += q[k] * q[k];
                for i in 0..df {
                    let (g, rv) = (gam[(k, i)], r[(k, i)]);
                    xi[(k, i)] += al * g + (1.0 - al) * r_old[(k, i)] - rv;
                    pr2 += (g - rv).powi(2);
                    au2 += g * g;
                    bz2 += rv * rv;
                }
            }
            // Dual residual rho A^T (z - z_old) and its scale rho ||A^T (scaled duals)||.
            for k in 0..n {
                tmp[k] = q[k] - q_old[k];
            }
            let mut dres = Mat::<f64>::zeros(d, m);
            at_blocks((&zc - &zc_old).as_ref(), (&s - &s_old).as_ref(), (&t - &t_old).as_ref(), &tmp,
                      (&r - &r_old).as_ref(), &mut rr, &mut dres);
            let dres = dres.norm_l2() * rho;
            let mut ady = Mat::<f64>::zeros(d, m);
            at_blocks(lam.as_ref(), nu.as_ref(), th.as_ref(), &mu, xi.as_ref(), &mut rr, &mut ady);
            let ady = ady.norm_l2() * rho;

            let pres = pr2.sqrt();
            let n_con = (2 * d * m + n * m + n + n * df) as f64;
            let eps_pri = n_con.sqrt() * settings.eps_abs + settings.eps_rel * au2.sqrt().max(bz2.sqrt());
            let eps_dual = ((d * m) as f64).sqrt() * settings.eps_abs + settings.eps_rel * ady;

            let (objective, violation) = self.objective(zc.as_ref(), y, beta, loss);
            let rec = Record { iter: it, objective, primal_residual: pres, dual_residual: dres, violation,
                               seconds: start.elapsed().as_secs_f64(), inner_iterations: inner };
            history.push(rec);
            if let Some(why) = rec.stop("robust ADMM", progress, eps_pri, eps_dual, settings.time_limit)? {
                status = why;
                break;
            }
            // Residual balancing (unnormalised, as for the split losses of the standard ADMM); the u-step matrix
            // does not involve rho, so a change costs nothing but the rescaling of the scaled duals.
            if settings.adapt_every > 0 && it % settings.adapt_every == 0 && adapts < settings.max_refactor {
                let ratio = (pres / dres.max(1e-300)).sqrt();
                if ratio.is_finite() && !(0.2..=5.0).contains(&ratio) {
                    let new_rho = (rho * ratio).clamp(1e-6, 1e6);
                    let k = rho / new_rho;
                    for mat in [&mut lam, &mut nu, &mut th, &mut xi] {
                        *mat = &*mat * faer::Scale(k);
                    }
                    mu.iter_mut().for_each(|v| *v *= k);
                    rho = new_rho;
                    adapts += 1;
                }
            }
        }
        // Unlike the standard ADMM, an iterate stopped by max_iter or the time limit is projected too: only a point
        // of the robust cones has its objective equal to the network's worst-case loss, so an unprojected iterate's
        // objective could understate it. (Not after an interruption: the caller wants to stop.)
        if settings.project && status != "interrupted" {
            project_robust_cones(ops.x, ops.dm.as_ref(), fidx, eps, zc.as_mut(), 20_000)?;
            let (obj, viol) = self.objective(zc.as_ref(), y, beta, loss);
            if let Some(rec) = history.last_mut() {
                rec.objective = obj;
                rec.violation = viol;
            }
        }
        let objective = history.last().map(|r| r.objective).unwrap_or(f64::NAN);
        Ok(AdmmResult {
            v: zc.as_ref().subcols(0, p).to_owned(),
            w: zc.as_ref().subcols(p, p).to_owned(),
            objective,
            iterations: iters,
            status,
            anderson_accepted: 0,
            anderson_rejected: 0,
            history,
            u_solver: self.usolver.kind(),
            factor_seconds: self.factor_seconds,
            solve_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// (robust objective, largest violation of the robust cone constraints) at U (d x 2P).
    pub fn objective(&self, u: MatRef<'_, f64>, y: &[f64], beta: f64, loss: Loss) -> (f64, f64) {
        let ops = &self.ops;
        let (n, p) = (ops.n(), ops.p());
        let mut xu = Mat::<f64>::zeros(n, 2 * p);
        let mut fu = vec![0.0; n];
        let mut gam = Mat::<f64>::zeros(n, self.fidx.len());
        ops.xu(u, xu.as_mut());
        ops.f_from_z(xu.as_ref(), &mut fu);
        ops.gamma(u, &self.fidx, gam.as_mut());
        let mut value = 0.0;
        for k in 0..n {
            let g1: f64 = (0..self.fidx.len()).map(|i| gam[(k, i)].abs()).sum();
            value += robust_loss(loss, fu[k], y[k], self.eps * g1);
        }
        let mut viol: f64 = 0.0;
        for j in 0..2 * p {
            value += beta * u.col(j).norm_l2();
            let l1: f64 = self.fidx.iter().map(|&c| u[(c, j)].abs()).sum();
            let dj = ops.dm.col(j % p);
            for k in 0..n {
                viol = viol.max(self.eps * l1 - (2.0 * dj[k] - 1.0) * xu[(k, j)]);
            }
        }
        (value, viol)
    }
}

/// Moves each column u_j of `u` (d x 2P; pattern j mod P) to the nearest point of {v : (2D_j - I) X v >=
/// eps ||v_f||_1}, measured in ||X v - X u_j||^2 + ||v - u_j||^2 on the pair (s, v) = ((2D_j - I) X v, v):
/// Dykstra's alternating projections between the subspace s = (2D_j - I) X v (one d x d Cholesky of I + X^T X) and
/// the cone {s >= eps ||v_f||_1} ([`project_l1_cone`]). Returns the largest remaining violation, which is the
/// violation of the subspace iterate (it satisfies s = (2D_j - I) X v exactly); a column that is already feasible
/// is left as it is, and one whose Dykstra iterate is still violated by more than 1e-6 max(|u_j|, |X u_j|) after
/// `max_sweeps` (a cone without interior, where the iteration stalls) is set to zero, which is always feasible.
pub fn project_robust_cones(x: MatRef<'_, f64>, dm: MatRef<'_, f64>, fidx: &[usize], eps: f64, mut u: MatMut<'_, f64>,
                            max_sweeps: usize) -> Result<f64> {
    let (n, d, p) = (x.nrows(), x.ncols(), dm.ncols());
    let mut a = Mat::<f64>::zeros(d, d);
    matmul(a.as_mut(), Accum::Replace, x.transpose(), x, 1.0, par());
    for i in 0..d {
        a[(i, i)] += 1.0;
    }
    let llt = a.llt(Side::Lower).map_err(|e| Error::Solver(format!("Cholesky of I + X^T X failed ({e:?})")))?;
    let viol_of = |v: &[f64], sg: &[f64]| -> f64 {
        let l1: f64 = fidx.iter().map(|&c| v[c].abs()).sum();
        (0..n).map(|k| eps * l1 - sg[k] * (0..d).map(|c| x[(k, c)] * v[c]).sum::<f64>()).fold(0.0, f64::max)
    };
    let margins = |v: &[f64], sg: &[f64], out: &mut [f64]| {
        for k in 0..n {
            out[k] = sg[k] * (0..d).map(|c| x[(k, c)] * v[c]).sum::<f64>();
        }
    };
    let mut worst: f64 = 0.0;
    let (mut sg, mut s, mut ys, mut ps, mut qs) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let (mut v, mut yv, mut pv, mut qv) = (vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let mut bf = vec![0.0; fidx.len()];
    let mut rhs = Mat::<f64>::zeros(d, 1);
    for j in 0..u.ncols() {
        let dj = dm.col(j % p);
        for k in 0..n {
            sg[k] = 2.0 * dj[k] - 1.0;
        }
        for c in 0..d {
            v[c] = u[(c, j)];
        }
        if viol_of(&v, &sg) <= 0.0 {
            continue;
        }
        let scale = v.iter().map(|t| t.abs()).fold(0.0, f64::max);
        margins(&v, &sg, &mut s);
        let xscale = s.iter().map(|t| t.abs()).fold(scale, f64::max);
        ps.iter_mut().for_each(|t| *t = 0.0);
        pv.iter_mut().for_each(|t| *t = 0.0);
        qs.iter_mut().for_each(|t| *t = 0.0);
        qv.iter_mut().for_each(|t| *t = 0.0);
        let mut best = (f64::INFINITY, v.clone());
        for _ in 0..max_sweeps {
            // Subspace: v' = (I + X^T X)^{-1} (v + X^T (sg o s)), s' = sg o X v'.
            for c in 0..d {
                rhs[(c, 0)] = v[c] + pv[c] + (0..n).map(|k| x[(k, c)] * sg[k] * (s[k] + ps[k])).sum::<f64>();
            }
            llt.solve_in_place(rhs.as_mut());
            for c in 0..d {
                yv[c] = rhs[(c, 0)];
            }
            margins(&yv, &sg, &mut ys);
            for k in 0..n {
                ps[k] += s[k] - ys[k];
            }
            for c in 0..d {
                pv[c] += v[c] - yv[c];
            }
            let viol = viol_of(&yv, &sg);
            if viol < best.0 {
                best = (viol, yv.clone());
            }
            if viol <= 1e-15 * scale.max(f64::MIN_POSITIVE) {
                break;
            }
            // Cone: (s, v_f) <- projection of (ys + qs, yv_f + qv_f); the other rows of v are free.
            for k in 0..n {
                s[k] = ys[k] + qs[k];
            }
            for c in 0..d {
                v[c] = yv[c] + qv[c];
            }
            for (i, &c) in fidx.iter().enumerate() {
                bf[i] = v[c];
            }
            project_l1_cone(&mut s, &mut bf, eps);
            for (i, &c) in fidx.iter().enumerate() {
                v[c] = bf[i];
            }
            for k in 0..n {
                qs[k] += ys[k] - s[k];
            }
            for c in 0..d {
                qv[c] += yv[c] - v[c];
            }
        }
        // Dykstra stalls on a cone without interior (e.g. {0}); then fall back on 0, which every cone contains.
        // A small remaining violation is kept and reported (zeroing a group the fit needs costs far more).
        if best.0 > 1e-6 * xscale {
            best = (0.0, vec![0.0; d]);
        }
        worst = worst.max(best.0.max(0.0));
        for c in 0..d {
            u[(c, j)] = best.1[c];
        }
    }
    Ok(worst)
}
