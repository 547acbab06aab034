//! Sampled convex programs (SCP) for two-layer ReLU training (Bai, Gautam & Sojoudi 2022, the SCP algorithm).
//!
//! The training problem's dual has one constraint |lambda^T (X u)_+| <= beta per hidden direction u on the unit
//! sphere (semi-infinite). Sampling N directions h_1..h_N (unit norm) gives a sampled convex program whose
//! dual is the unconstrained program over the output weights of the sampled neurons:
//!   min_a  loss(A a, y) + beta ||a||_1,   A = (X H)_+  (n x N, H = [h_1 .. h_N]).
//! Its solution is a ReLU network with neurons u_j = sqrt(|a_j|) h_j and output weights sign(a_j) sqrt(|a_j|),
//! whose weight-decay objective equals the program's objective; it is a feasible point of the cone-constrained
//! program with patterns D_j = 1[X h_j >= 0] (v_j = a_j h_j for a_j > 0, w_j = -a_j h_j otherwise), so the SCP
//! optimum is never below that program's optimum.
//!
//! Solver: ADMM on  min loss(q) + beta ||z||_1  s.t. a = z, A a = q  (scaled form, over-relaxed). The a-step
//! matrix I + A^T A does not depend on the penalty, so it is factored once (N x N, or the n x n Woodbury
//! capacitance I + A A^T when n < N) and residual balancing of rho is free.

use std::time::Instant;

use faer::linalg::matmul::matmul;
use faer::prelude::*;
use faer::{Accum, Mat, MatRef, Side};

use super::admm::{Loss, Record};
use super::ops::par;
use crate::error::{Error, Result};

/// Settings of the SCP solver (defaults in [`ScpSettings::default`]).
#[derive(Clone, Debug)]
pub struct ScpSettings {
    pub rho: f64,
    pub max_iter: usize,
    pub eps_abs: f64,
    pub eps_rel: f64,
    pub time_limit: f64,
    /// Residual balancing every `adapt_every` iterations (0: never), at most `max_adapt` times.
    pub adapt_every: usize,
    pub max_adapt: usize,
    pub relaxation: f64,
}

impl Default for ScpSettings {
    fn default() -> Self {
        Self { rho: 1.0, max_iter: 10_000, eps_abs: 1e-8, eps_rel: 1e-7, time_limit: f64::INFINITY, adapt_every: 20,
               max_adapt: 50, relaxation: 1.6 }
    }
}

#[derive(Clone, Debug)]
pub struct ScpResult {
    /// Output weight a_j of each sampled neuron.
    pub a: Vec<f64>,
    pub objective: f64,
    pub iterations: usize,
    /// "converged", "max_iter", "time_limit" or "interrupted".
    pub status: &'static str,
    pub history: Vec<Record>,
    pub factor_seconds: f64,
    pub solve_seconds: f64,
}

enum Factor {
    /// Cholesky of I + A^T A (N x N).
    Direct(faer::linalg::solvers::Llt<f64>),
    /// Cholesky of I + A A^T (n x n): (I + A^T A)^{-1} r = r - A^T (I + A A^T)^{-1} A r.
    Woodbury(faer::linalg::solvers::Llt<f64>),
}

/// Features of the sampled neurons and the factored a-step; `solve` may be called for several targets.
pub struct ScpProblem {
    a: Mat<f64>,
    factor: Factor,
    factor_seconds: f64,
}

fn chol(m: &Mat<f64>) -> Result<faer::linalg::solvers::Llt<f64>> {
    m.llt(Side::Lower).map_err(|e| Error::Solver(format!("Cholesky factorisation of the SCP system failed ({e:?})")))
}

impl ScpProblem {
    /// `x`: n x d data (intercept column appended if wanted); `h`: d x N sampled neurons (unit columns).
    pub fn new(x: MatRef<'_, f64>, h: MatRef<'_, f64>) -> Result<Self> {
        let (n, d, nn) = (x.nrows(), x.ncols(), h.ncols());
        if n == 0 || d == 0 || nn == 0 {
            return Err(Error::Shape(format!("empty problem: n = {n}, d = {d}, N = {nn}")));
        }
        if h.nrows() != d {
            return Err(Error::Shape(format!("the sampled neurons have {} rows but X has {d} columns", h.nrows())));
        }
        for (name, m) in [("X", x), ("H", h)] {
            for j in 0..m.ncols() {
                for i in 0..m.nrows() {
                    if !m[(i, j)].is_finite() {
                        return Err(Error::InvalidInput(format!("{name}[{i}, {j}] = {} is not finite", m[(i, j)])));
                    }
                }
            }
        }
        let t0 = Instant::now();
        let mut a = Mat::<f64>::zeros(n, nn);
        matmul(a.as_mut(), Accum::Replace, x, h, 1.0, par());
        for j in 0..nn {
            for i in 0..n {
                a[(i, j)] = a[(i, j)].max(0.0);
            }
        }
        let factor = if nn <= n {
            let mut k = Mat::<f64>::zeros(nn, nn);
            matmul(k.as_mut(), Accum::Replace, a.transpose(), a.as_ref(), 1.0, par());
            for i in 0..nn {
                k[(i, i)] += 1.0;
            }
            Factor::Direct(chol(&k)?)
        } else {
            let mut k = Mat::<f64>::zeros(n, n);
            matmul(k.as_mut(), Accum::Replace, a.as_ref(), a.transpose(), 1.0, par());
            for i in 0..n {
                k[(i, i)] += 1.0;
            }
            Factor::Woodbury(chol(&k)?)
        };
        Ok(Self { a, factor, factor_seconds: t0.elapsed().as_secs_f64() })
    }

    /// The feature matrix (X H)_+.
    pub fn features(&self) -> MatRef<'_, f64> {
        self.a.as_ref()
    }

    fn a_times(&self, v: &[f64]) -> Vec<f64> {
        let m = Mat::<f64>::from_fn(v.len(), 1, |i, _| v[i]);
        let mut out = Mat::<f64>::zeros(self.a.nrows(), 1);
        matmul(out.as_mut(), Accum::Replace, self.a.as_ref(), m.as_ref(), 1.0, par());
        (0..self.a.nrows()).map(|i| out[(i, 0)]).collect()
    }

    fn at_times(&self, v: &[f64]) -> Vec<f64> {
        let m = Mat::<f64>::from_fn(v.len(), 1, |i, _| v[i]);
        let mut out = Mat::<f64>::zeros(self.a.ncols(), 1);
        matmul(out.as_mut(), Accum::Replace, self.a.transpose(), m.as_ref(), 1.0, par());
        (0..self.a.ncols()).map(|i| out[(i, 0)]).collect()
    }

    /// (I + A^T A)^{-1} r.
    fn solve_k(&self, r: Vec<f64>) -> Vec<f64> {
        match &self.factor {
            Factor::Direct(llt) => {
                let mut m = Mat::<f64>::from_fn(r.len(), 1, |i, _| r[i]);
                llt.solve_in_place(m.as_mut());
                (0..r.len()).map(|i| m[(i, 0)]).collect()
            }
            Factor::Woodbury(llt) => {
                let ar = self.a_times(&r);
                let mut m = Mat::<f64>::from_fn(ar.len(), 1, |i, _| ar[i]);
                llt.solve_in_place(m.as_mut());
                let t: Vec<f64> = (0..ar.len()).map(|i| m[(i, 0)]).collect();
                let att = self.at_times(&t);
                r.iter().zip(&att).map(|(a, b)| a - b).collect()
            }
        }
    }

    /// loss(A a, y) + beta ||a||_1.
    pub fn objective(&self, a: &[f64], y: &[f64], beta: f64, loss: Loss) -> f64 {
        let f = self.a_times(a);
        loss.value(&f, y) + beta * a.iter().map(|v| v.abs()).sum::<f64>()
    }

    /// Runs the ADMM for one target `y`; `progress` as in [`super::AdmmProblem::solve`].
    pub fn solve(&self, y: &[f64], beta: f64, loss: Loss, settings: &ScpSettings,
                 progress: &mut dyn FnMut(&Record) -> bool) -> Result<ScpResult> {
        let (n, nn) = (self.a.nrows(), self.a.ncols());
        loss.check_targets(y, n)?;
        if !(beta > 0.0 && beta.is_finite()) {
            return Err(Error::InvalidInput(format!("beta must be positive and finite, got {beta}")));
        }
        if !(settings.rho > 0.0 && settings.rho.is_finite()) {
            return Err(Error::InvalidInput(format!("rho must be positive and finite, got {}", settings.rho)));
        }
        if !(1.0..2.0).contains(&settings.relaxation) {
            return Err(Error::InvalidInput(format!("relaxation must be in [1, 2), got {}", settings.relaxation)));
        }
        let start = Instant::now();
        let al = settings.relaxation;
        let mut rho = settings.rho;
        let (mut z, mut lam) = (vec![0.0; nn], vec![0.0; nn]);
        let (mut q, mut mu) = (vec![0.0; n], vec![0.0; n]);
        let mut history = Vec::new();
        let mut status = "max_iter";
        let mut iters = 0;
        let mut adapts = 0;
        for it in 1..=settings.max_iter {
            iters = it;
            // a-step: (I + A^T A) x = (z - lam) + A^T (q - mu).
            let qm: Vec<f64> = q.iter().zip(&mu).map(|(a, b)| a - b).collect();
            let atq = self.at_times(&qm);
            let x = self.solve_k((0..nn).map(|j| z[j] - lam[j] + atq[j]).collect());
            let ax = self.a_times(&x);
            // z-step (soft threshold) and q-step (loss prox) at the over-relaxed points.
            let (z_old, q_old) = (z.clone(), q.clone());
            let thr = beta / rho;
            for j in 0..nn {
                let v = al * x[j] + (1.0 - al) * z_old[j] + lam[j];
                z[j] = v.signum() * (v.abs() - thr).max(0.0);
            }
            for k in 0..n {
                q[k] = loss.prox(al * ax[k] + (1.0 - al) * q_old[k] + mu[k], y[k], 1.0 / rho);
            }
            let (mut pr2, mut au2, mut bz2) = (0.0, 0.0, 0.0);
            for j in 0..nn {
                lam[j] += al * x[j] + (1.0 - al) * z_old[j] - z[j];
                pr2 += (x[j] - z[j]).powi(2);
                au2 += x[j] * x[j];
                bz2 += z[j] * z[j];
            }
            for k in 0..n {
                mu[k] += al * ax[k] + (1.0 - al) * q_old[k] - q[k];
                pr2 += (ax[k] - q[k]).powi(2);
                au2 += ax[k] * ax[k];
                bz2 += q[k] * q[k];
            }
            // Dual residual rho (dz + A^T dq). Its scale is rho max(||lam||, ||A^T mu||), not rho ||lam + A^T mu||:
            // with no smooth term in the a-step the two dual blocks cancel at the optimum (OSQP's max rule).
            let dq: Vec<f64> = q.iter().zip(&q_old).map(|(a, b)| a - b).collect();
            let atdq = self.at_times(&dq);
            let dres = rho * (0..nn).map(|j| (z[j] - z_old[j] + atdq[j]).powi(2)).sum::<f64>().sqrt();
            let atmu = self.at_times(&mu);
            let norm = |v: &[f64]| v.iter().map(|t| t * t).sum::<f64>().sqrt();
            let ady = rho * norm(&lam).max(norm(&atmu));
            let pres = pr2.sqrt();
            let eps_pri = ((nn + n) as f64).sqrt() * settings.eps_abs + settings.eps_rel * au2.sqrt().max(bz2.sqrt());
            let eps_dual = (nn as f64).sqrt() * settings.eps_abs + settings.eps_rel * ady;
            let objective = self.objective(&z, y, beta, loss);
            let rec = Record { iter: it, objective, primal_residual: pres, dual_residual: dres, violation: 0.0,
                               seconds: start.elapsed().as_secs_f64(), inner_iterations: 0 };
            history.push(rec);
            if let Some(why) = rec.stop("SCP ADMM", progress, eps_pri, eps_dual, settings.time_limit)? {
                status = why;
                break;
            }
            if settings.adapt_every > 0 && it % settings.adapt_every == 0 && adapts < settings.max_adapt {
                let pn = pres / au2.sqrt().max(bz2.sqrt()).max(1e-300);
                let dn = dres / ady.max(1e-300);
                let ratio = (pn / dn.max(1e-300)).sqrt();
                if ratio.is_finite() && !(0.2..=5.0).contains(&ratio) {
                    let new_rho = (rho * ratio).clamp(1e-8, 1e8);
                    let k = rho / new_rho;
                    lam.iter_mut().for_each(|v| *v *= k);
                    mu.iter_mut().for_each(|v| *v *= k);
                    rho = new_rho;
                    adapts += 1;
                }
            }
        }
        let objective = history.last().map(|r| r.objective).unwrap_or(f64::NAN);
        Ok(ScpResult { a: z, objective, iterations: iters, status, history, factor_seconds: self.factor_seconds,
                       solve_seconds: start.elapsed().as_secs_f64() })
    }
}
