//! The u-step of the ADMM: solve (a * blkdiag(c I + X^T X) + F^T F) U = R for U (d x 2P).
//!
//! The matrix never changes during a run, so it is factored once. Three ways, one interface:
//! - `Dense`: in the variables S = V + W and T = V - W the matrix splits (F = [F_h, -F_h]): a S = blkdiag(A) S with
//!   A = a (c I + X^T X) (d x d), and (blkdiag(A) + 2 F_h^T F_h) vec T (dP x dP), each factored once by Cholesky;
//!   a quarter of the 2dP x 2dP matrix's memory and an eighth of its factorisation;
//! - `Woodbury`: Cholesky of A = a (I + X^T X) (d x d) and of the n x n capacitance matrix
//!   K = I + F B^{-1} F^T = I + 2 (X A^{-1} X^T) o (D D^T), since every pattern appears in a v and a w block;
//! - `Pcg`: matrix-free conjugate gradients preconditioned by blkdiag(A)^{-1}, for when neither fits.
//!
//! The adversarial ADMM adds Gamma^T Gamma (Gamma U = D (V - W)_f^T, see [`super::ops`]); its matrix is factored
//! `Dense` or applied by `Pcg` (the n x n Woodbury capacitance does not cover the n d_f extra rows).

use faer::linalg::matmul::{matmul, triangular::{self, BlockStructure}};
use faer::prelude::*;
use faer::reborrow::ReborrowMut;
use faer::{Accum, Mat, MatMut, MatRef, Side};

use super::ops::{par, Ops};
use crate::error::{Error, Result};

/// Which u-step to use (`Auto` picks the smaller factorisation that fits in memory, else `Pcg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum USolve {
    Auto,
    Dense,
    Woodbury,
    Pcg,
}

impl USolve {
    pub fn name(self) -> &'static str {
        match self {
            USolve::Auto => "auto",
            USolve::Dense => "dense",
            USolve::Woodbury => "woodbury",
            USolve::Pcg => "pcg",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => USolve::Auto,
            "dense" => USolve::Dense,
            "woodbury" => USolve::Woodbury,
            "pcg" => USolve::Pcg,
            _ => return Err(Error::InvalidInput(format!("u_solver must be 'auto', 'dense', 'woodbury' or 'pcg', got {s:?}"))),
        })
    }
}

/// Bytes each u-step needs beyond the problem data (estimated before any work starts).
pub fn memory_bytes(kind: USolve, n: usize, d: usize, p: usize) -> f64 {
    let (n, m) = (n as f64, (2 * d * p) as f64);
    match kind {
        // a block of rows of F_h, the dP x dP matrix and its factor
        USolve::Dense => {
            let h = (d * p) as f64;
            8.0 * (DENSE_ROWS.min(n as usize) as f64 * h + 2.0 * h * h)
        }
        USolve::Woodbury => 8.0 * (3.0 * n * n + 2.0 * n * d as f64),
        USolve::Pcg | USolve::Auto => 8.0 * 6.0 * m,
    }
}

/// Flops of the one-off factorisation (to steer `Auto` away from huge factorisations).
fn factor_flops(kind: USolve, n: usize, d: usize, p: usize) -> f64 {
    let n = n as f64;
    match kind {
        // the lower triangle of F_h^T F_h (n (dP)^2 flops), then the dP x dP Cholesky
        USolve::Dense => {
            let h = (d * p) as f64;
            n * h * h + h * h * h / 3.0
        }
        USolve::Woodbury => n * n * (p as f64 + d as f64) + n * n * n / 3.0,
        _ => 0.0,
    }
}

/// Rows of F_h formed at a time while the dense u-step's matrix is accumulated.
const DENSE_ROWS: usize = 2048;

/// Whether a factorisation of `flops` is worth it against the matrix-free u-step: up to 2e11 flops always, and up
/// to the cost of 1,000 PCG inner iterations (each two n x d x 2P products, 8 n d P flops), which a run needing
/// thousands of ADMM iterations spends many times over. The factorisation cannot be interrupted, so under a finite
/// `time_limit` (seconds) it must also take at most half of it at a modest 10 GFlop/s.
fn worth_factoring(flops: f64, n: usize, d: usize, p: usize, time_limit: f64) -> bool {
    let cap = 2e11f64.max(1000.0 * 8.0 * (n * d * p) as f64);
    flops <= if time_limit.is_finite() { cap.min(0.5 * time_limit * 1e10) } else { cap }
}

/// Whether the factorisation `k` fits in `memory_limit` bytes and is worth it (see [`worth_factoring`]).
fn affordable(k: USolve, n: usize, d: usize, p: usize, memory_limit: f64, time_limit: f64) -> bool {
    memory_bytes(k, n, d, p) <= memory_limit && worth_factoring(factor_flops(k, n, d, p), n, d, p, time_limit)
}

/// Picks the u-step for `Auto`, or checks that an explicit choice fits in `memory_limit` bytes; `time_limit` (seconds,
/// may be infinite) is the run's, see [`worth_factoring`].
pub fn choose(kind: USolve, n: usize, d: usize, p: usize, memory_limit: f64, time_limit: f64) -> Result<USolve> {
    let gib = |b: f64| b / (1u64 << 30) as f64;
    if kind != USolve::Auto {
        let need = memory_bytes(kind, n, d, p);
        if need > memory_limit {
            return Err(Error::InvalidInput(format!(
                "the {} u-step needs about {:.2} GiB but only {:.2} GiB are allowed (n = {n}, d = {d}, P = {p}); \
                 use u_solver='auto' or 'pcg', fewer patterns, or raise memory_limit",
                kind.name(), gib(need), gib(memory_limit))));
        }
        return Ok(kind);
    }
    let first = if n <= d * p { USolve::Woodbury } else { USolve::Dense };
    let second = if first == USolve::Woodbury { USolve::Dense } else { USolve::Woodbury };
    for k in [first, second] {
        if affordable(k, n, d, p, memory_limit, time_limit) {
            return Ok(k);
        }
    }
    Ok(USolve::Pcg)
}

/// Picks the u-step of the adversarial ADMM: `Dense` when it fits (memory and flops as in [`choose`]), else `Pcg`;
/// `Woodbury` is refused.
pub fn choose_robust(kind: USolve, n: usize, d: usize, p: usize, memory_limit: f64, time_limit: f64) -> Result<USolve> {
    match kind {
        USolve::Woodbury => Err(Error::Unsupported(
            "the Woodbury u-step does not cover the adversarial program's gradient rows; use u_solver='auto', \
             'dense' or 'pcg'".into())),
        USolve::Auto => {
            Ok(if affordable(USolve::Dense, n, d, p, memory_limit, time_limit) { USolve::Dense } else { USolve::Pcg })
        }
        k => choose(k, n, d, p, memory_limit, time_limit),
    }
}

pub(crate) enum USolver {
    /// `a`: A = a (c I + X^T X) (d x d); `t`: blkdiag(A) + 2 (F_h^T F_h [+ Gamma_h^T Gamma_h]) (dP x dP).
    Dense { a: faer::linalg::solvers::Llt<f64>, t: faer::linalg::solvers::Llt<f64> },
    Woodbury { a: faer::linalg::solvers::Llt<f64>, k: faer::linalg::solvers::Llt<f64> },
    Pcg { a: faer::linalg::solvers::Llt<f64>, scale: f64, c: f64, tol: f64, max_iter: usize, gamma: Option<Vec<usize>> },
}

fn chol(m: &Mat<f64>, what: &str) -> Result<faer::linalg::solvers::Llt<f64>> {
    m.llt(Side::Lower)
        .map_err(|e| Error::Solver(format!("Cholesky factorisation of the {what} failed ({e:?}); is the data finite?")))
}

impl USolver {
    /// Factors a * blkdiag(c I + X^T X) + F^T F by the chosen method (not `Auto`).
    pub fn new(ops: &Ops<'_>, a: f64, c: f64, kind: USolve, pcg_tol: f64) -> Result<Self> {
        Self::with_gamma(ops, a, c, kind, pcg_tol, None)
    }

    /// As [`USolver::new`], plus Gamma^T Gamma over the coordinates `gamma` when given (not with `Woodbury`).
    pub fn with_gamma(ops: &Ops<'_>, a: f64, c: f64, kind: USolve, pcg_tol: f64, gamma: Option<&[usize]>)
                      -> Result<Self> {
        let (n, d, p) = (ops.n(), ops.d(), ops.p());
        if gamma.is_some() && kind == USolve::Woodbury {
            return Err(Error::Unsupported("the Woodbury u-step does not cover Gamma^T Gamma".into()));
        }
        let mut am = Mat::<f64>::zeros(d, d);
        matmul(am.as_mut(), Accum::Replace, ops.x.transpose(), ops.x, a, par());
        for i in 0..d {
            am[(i, i)] += a * c;
        }
        match kind {
            USolve::Dense => {
                let m = d * p;
                // Lower triangle of 2 F_h^T F_h, F_h = [D_1 X, .., D_P X], accumulated over blocks of rows.
                let mut tm = Mat::<f64>::zeros(m, m);
                let mut f = Mat::<f64>::zeros(DENSE_ROWS.min(n), m);
                for r0 in (0..n).step_by(DENSE_ROWS) {
                    let rows = DENSE_ROWS.min(n - r0);
                    for j in 0..p {
                        let dj = ops.dm.col(j);
                        for c in 0..d {
                            let xc = ops.x.col(c);
                            let mut fc = f.col_mut(j * d + c);
                            for k in 0..rows {
                                fc[k] = dj[r0 + k] * xc[r0 + k];
                            }
                        }
                    }
                    let fb = f.as_ref().subrows(0, rows);
                    triangular::matmul(tm.as_mut(), BlockStructure::TriangularLower, Accum::Add, fb.transpose(),
                                       BlockStructure::Rectangular, fb, BlockStructure::Rectangular, 2.0, par());
                }
                drop(f);
                for j in 0..p {
                    for r in 0..d {
                        for c in 0..=r {
                            tm[(j * d + r, j * d + c)] += am[(r, c)];
                        }
                    }
                }
                if let Some(fidx) = gamma {
                    // Gamma_h^T Gamma_h = (D^T D) (x) I_f over the coordinates f (Gamma U = D (V - W)_f^T).
                    let mut dtd = Mat::<f64>::zeros(p, p);
                    matmul(dtd.as_mut(), Accum::Replace, ops.dm.transpose(), ops.dm.as_ref(), 1.0, par());
                    for j in 0..p {
                        for l in 0..=j {
                            for &fc in fidx {
                                tm[(j * d + fc, l * d + fc)] += 2.0 * dtd[(j, l)];
                            }
                        }
                    }
                }
                for c in 0..m {
                    for r in 0..c {
                        tm[(r, c)] = tm[(c, r)];
                    }
                }
                Ok(USolver::Dense { a: chol(&am, "d x d block")?, t: chol(&tm, "dense u-step matrix")? })
            }
            USolve::Woodbury => {
                let a_llt = chol(&am, "d x d block")?;
                let xt = ops.x.transpose().to_owned();
                let ainv_xt = a_llt.solve(xt.as_ref()); // d x n
                drop(xt);
                let mut kmat = Mat::<f64>::zeros(n, n);
                matmul(kmat.as_mut(), Accum::Replace, ops.dm.as_ref(), ops.dm.transpose(), 1.0, par());
                let mut h = Mat::<f64>::zeros(n, n);
                matmul(h.as_mut(), Accum::Replace, ops.x, ainv_xt.as_ref(), 1.0, par());
                for c in 0..n {
                    for r in 0..n {
                        kmat[(r, c)] = 2.0 * kmat[(r, c)] * h[(r, c)] + if r == c { 1.0 } else { 0.0 };
                    }
                }
                drop(h);
                let k_llt = chol(&kmat, "n x n Woodbury capacitance matrix")?;
                Ok(USolver::Woodbury { a: a_llt, k: k_llt })
            }
            USolve::Pcg => Ok(USolver::Pcg { a: chol(&am, "d x d block")?, scale: a, c, tol: pcg_tol, max_iter: 2000,
                                             gamma: gamma.map(|g| g.to_vec()) }),
            USolve::Auto => unreachable!("choose() resolves Auto first"),
        }
    }

    pub fn kind(&self) -> USolve {
        match self {
            USolver::Dense { .. } => USolve::Dense,
            USolver::Woodbury { .. } => USolve::Woodbury,
            USolver::Pcg { .. } => USolve::Pcg,
        }
    }

    /// Solves M U = R (both d x 2P); `u` holds the previous solution on entry (the PCG warm start).
    /// Returns the number of inner iterations (0 for direct solves).
    pub fn solve(&self, ops: &Ops<'_>, r: MatRef<'_, f64>, u: MatMut<'_, f64>) -> Result<usize> {
        self.solve_xu(ops, r, u, None, None, None)
    }

    /// As [`USolver::solve`], and when `xu` (n x 2P) is given it receives X U: from the products the Woodbury
    /// and PCG solves compute anyway (no extra n x d x 2P GEMM), by a GEMM for the dense solve. `pcg_tol`, when
    /// given, loosens the PCG's relative tolerance for this solve (never below the factor's own `pcg_tol`).
    /// `warm` (PCG only, with `xu`): state kept between the solves of one run with this matrix (see [`PcgWarm`]);
    /// `xu` must then hold X U for the `u` given (as the previous call left it).
    pub fn solve_xu(&self, ops: &Ops<'_>, r: MatRef<'_, f64>, mut u: MatMut<'_, f64>, xu: Option<MatMut<'_, f64>>,
                    pcg_tol: Option<f64>, warm: Option<&mut PcgWarm>) -> Result<usize> {
        let (n, d, p) = (ops.n(), ops.d(), ops.p());
        match self {
            USolver::Woodbury { a, k } => {
                // U = T - A^{-1} F^T K^{-1} F T with T = A^{-1} R (blockwise). F^T y' = X^T [D y', -D y'], so only
                // the P columns B = A^{-1} X^T (D o y') are computed: U = T - [B, -B], X U = X T - [X B, -X B].
                let t = a.solve(r);
                let mut z = Mat::<f64>::zeros(n, 2 * p);
                ops.xu(t.as_ref(), z.as_mut());
                let mut f = vec![0.0; n];
                ops.f_from_z(z.as_ref(), &mut f);
                let mut fy = Mat::<f64>::from_fn(n, 1, |i, _| f[i]);
                k.solve_in_place(fy.as_mut());
                let yv = fy.col(0);
                let e = Mat::<f64>::from_fn(n, p, |i, j| ops.dm[(i, j)] * yv[i]);
                let mut b = Mat::<f64>::zeros(d, p);
                matmul(b.as_mut(), Accum::Replace, ops.x.transpose(), e.as_ref(), 1.0, par());
                a.solve_in_place(b.as_mut());
                for j in 0..p {
                    for c in 0..d {
                        u[(c, j)] = t[(c, j)] - b[(c, j)];
                        u[(c, p + j)] = t[(c, p + j)] + b[(c, j)];
                    }
                }
                if let Some(mut xu) = xu {
                    let mut xb = Mat::<f64>::zeros(n, p);
                    matmul(xb.as_mut(), Accum::Replace, ops.x, b.as_ref(), 1.0, par());
                    for j in 0..p {
                        let (zv, zw, xbj) = (z.col(j), z.col(p + j), xb.col(j));
                        for i in 0..n {
                            xu[(i, j)] = zv[i] - xbj[i];
                            xu[(i, p + j)] = zw[i] + xbj[i];
                        }
                    }
                }
                Ok(0)
            }
            USolver::Pcg { a, scale, c, tol, max_iter, gamma } => {
                let tol = pcg_tol.map_or(*tol, |t| t.max(*tol));
                pcg(ops, a, *scale, *c, gamma.as_deref(), r, u, tol, *max_iter, xu, warm)
            }
            USolver::Dense { .. } => {
                let it = self.solve_direct(ops, r, u.rb_mut())?;
                if let Some(xu) = xu {
                    ops.xu(u.as_ref(), xu);
                }
                Ok(it)
            }
        }
    }

    /// The dense u-step: S = A^{-1} (R_v + R_w) blockwise and vec T = (blkdiag(A) + 2 F_h^T F_h)^{-1} vec(R_v - R_w),
    /// then V = (S + T) / 2 and W = (S - T) / 2.
    fn solve_direct(&self, ops: &Ops<'_>, r: MatRef<'_, f64>, mut u: MatMut<'_, f64>) -> Result<usize> {
        let (d, p) = (ops.d(), ops.p());
        let USolver::Dense { a, t } = self else { unreachable!("solve_direct is the dense u-step") };
        let mut sm = Mat::<f64>::from_fn(d, p, |c, j| r[(c, j)] + r[(c, p + j)]);
        a.solve_in_place(sm.as_mut());
        let mut col = Mat::<f64>::from_fn(d * p, 1, |i, _| r[(i % d, i / d)] - r[(i % d, p + i / d)]);
        t.solve_in_place(col.as_mut());
        for j in 0..p {
            for c in 0..d {
                let (sv, tv) = (sm[(c, j)], col[(j * d + c, 0)]);
                u[(c, j)] = 0.5 * (sv + tv);
                u[(c, p + j)] = 0.5 * (sv - tv);
            }
        }
        Ok(0)
    }
}

/// out = (a (c I + X^T X) blockwise + F^T F [+ Gamma^T Gamma]) U; on return z = X U (n x 2P), w is scratch.
#[allow(clippy::too_many_arguments)]
fn apply_m(ops: &Ops<'_>, scale: f64, c: f64, gamma: Option<&[usize]>, u: MatRef<'_, f64>, z: &mut Mat<f64>,
           w: &mut Mat<f64>, f: &mut [f64], out: &mut Mat<f64>) {
    ops.xu(u, z.as_mut());
    ops.f_from_z(z.as_ref(), f);
    // X^T (a Z + [D f, -D f]) = a X^T X U + F^T F U
    let p = ops.p();
    for j in 0..p {
        let (dj, zv, zw) = (ops.dm.col(j), z.col(j), z.col(p + j));
        for k in 0..z.nrows() {
            let t = dj[k] * f[k];
            w[(k, j)] = scale * zv[k] + t;
            w[(k, p + j)] = scale * zw[k] - t;
        }
    }
    ops.xtr(w.as_ref(), out.as_mut());
    for j in 0..u.ncols() {
        for i in 0..u.nrows() {
            out[(i, j)] += scale * c * u[(i, j)];
        }
    }
    if let Some(fidx) = gamma {
        let mut g = Mat::<f64>::zeros(ops.n(), fidx.len());
        ops.gamma(u, fidx, g.as_mut());
        ops.add_gamma_t(g.as_ref(), fidx, out.as_mut(), 1.0);
    }
}

fn dot(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
    let mut s = 0.0;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            s += a[(i, j)] * b[(i, j)];
        }
    }
    s
}

/// What one PCG u-step leaves for the next with the same matrix M: M U = R - Res (its right-hand side less its final
/// recurrence residual), so the next warm start's residual needs no product with M (two n x d x 2P GEMMs); the
/// caller keeps X U. Recomputed from scratch every [`PcgWarm::REFRESH`] solves (recurrence drift) and after
/// [`PcgWarm::invalidate`] (a new matrix).
pub(crate) struct PcgWarm {
    mu: Mat<f64>,
    valid: bool,
    age: usize,
}

impl PcgWarm {
    const REFRESH: usize = 20;

    pub fn new(d: usize, m: usize) -> Self {
        Self { mu: Mat::zeros(d, m), valid: false, age: 0 }
    }

    pub fn invalidate(&mut self) {
        self.valid = false;
    }
}

/// Preconditioned CG from the warm start in `u`; when `xu` is given it receives X U, kept up to date from the
/// products X dir each inner iteration computes anyway.
#[allow(clippy::too_many_arguments)]
fn pcg(ops: &Ops<'_>, a: &faer::linalg::solvers::Llt<f64>, scale: f64, c: f64, gamma: Option<&[usize]>,
       r: MatRef<'_, f64>, mut u: MatMut<'_, f64>, tol: f64, max_iter: usize, mut xu: Option<MatMut<'_, f64>>,
       mut warm: Option<&mut PcgWarm>) -> Result<usize> {
    let (n, d, p) = (ops.n(), ops.d(), ops.p());
    let mut z = Mat::<f64>::zeros(n, 2 * p);
    let mut w = Mat::<f64>::zeros(n, 2 * p);
    let mut f = vec![0.0; n];
    let mut mu = Mat::<f64>::zeros(d, 2 * p);
    let reuse = xu.is_some() && warm.as_ref().is_some_and(|s| s.valid && s.age < PcgWarm::REFRESH);
    let mut res = if reuse {
        r.to_owned() - &warm.as_ref().unwrap().mu
    } else {
        apply_m(ops, scale, c, gamma, u.as_ref(), &mut z, &mut w, &mut f, &mut mu);
        if let Some(xu) = xu.as_mut() {
            xu.copy_from(&z);
        }
        r.to_owned() - &mu
    };
    let rnorm = r.norm_l2().max(f64::MIN_POSITIVE);
    let mut iters = 0;
    if res.norm_l2() > tol * rnorm {
        let mut prec = a.solve(res.as_ref());
        let mut dir = prec.clone();
        let mut rz = dot(&res, &prec);
        for it in 1..=max_iter {
            iters = it;
            apply_m(ops, scale, c, gamma, dir.as_ref(), &mut z, &mut w, &mut f, &mut mu);
            let alpha = rz / dot(&dir, &mu);
            if !alpha.is_finite() {
                if let Some(s) = warm.as_mut() {
                    s.valid = false;
                }
                return Err(Error::Solver("PCG u-step broke down (non-finite step)".into()));
            }
            u.copy_from(u.as_ref() + &dir * faer::Scale(alpha));
            if let Some(xu) = xu.as_mut() {
                for j in 0..2 * p {
                    let (zj, mut xj) = (z.col(j), xu.rb_mut().col_mut(j));
                    for k in 0..n {
                        xj[k] += alpha * zj[k];
                    }
                }
            }
            res = &res - &mu * faer::Scale(alpha);
            if res.norm_l2() <= tol * rnorm {
                break;
            }
            prec = a.solve(res.as_ref());
            let rz_new = dot(&res, &prec);
            dir = &prec + &dir * faer::Scale(rz_new / rz);
            rz = rz_new;
        }
    }
    if let Some(s) = warm {
        s.mu = r.to_owned() - &res;
        s.age = if reuse { s.age + 1 } else { 0 };
        s.valid = xu.is_some();
    }
    Ok(iters)
}
