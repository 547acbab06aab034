//! The certificate: evaluate every LMI of the chain at the solver's multipliers in float64, bound the
//! rounding error of that evaluation, and repair the multipliers until each LMI is positive
//! semidefinite with a margin that covers the rounding. The bound is then a mathematical upper bound
//! whatever the solver's accuracy.
//!
//! LMIs (X_0 = rho I for l2, diag(d) for l-inf; X_k for k >= 1 is the stage k-1 group multiplier Q
//! for plain group stages, else a free symmetric matrix), in the variables (dz_k, w_k = act increment):
//! - linear:          X_k - W^T X_{k+1} W
//! - plain groups:    X_k - W^T Q W
//! - plain sector:    [[X_k + 2ab W^T T W, -(a+b) W^T T], [., 2T - X_{k+1}]]
//! - residual groups: [[X_k - S^T X' S - W^T Q W, -S^T X' G], [., Q - G^T X' G]]
//! - residual sector: [[X_k - S^T X' S + 2ab W^T T W, -S^T X' G - (a+b) W^T T], [., 2T - G^T X' G]]
//!   (z' = S z + G w; S = I without a skip, G = I for Residual([Dense, act]))
//! - implicit (z' = act(F z' + W z), in the variables (dz, dz')): with (k2, k1, k0) = (2ab, -(a+b), 2) for a
//!   sector [a, b] (Q = T) and (-1, 0, 1) for groups (Q = blockdiag(lambda_j I + gamma_j E)),
//!   [[X_k + k2 W^T Q W, k1 W^T Q + k2 W^T Q F], [., k0 Q + k1 (Q F + F^T Q) + k2 F^T Q F - X']]
//!   (the sector QC 2 (dz' - a dv)^T T (b dv - dz') >= 0, or the group QC dv^T Q dv - dz'^T Q dz' >= 0,
//!   with dv = F dz' + W dz, written out in (dz, dz'))
//! - final, l2:       X_L - R^T R               (R: final rows)  bound sqrt(rho) * scale
//! - final, l-inf:    [[X_L, R^T], [R, rho]]     (R: one row)    bound sqrt(rho * sum d) * scale
//! Each LMI k is the S-procedure step dz_k^T X_k dz_k >= dz_{k+1}^T X_{k+1} dz_{k+1} given the
//! activation's quadratic constraint, so together they prove |df|^2 <= bound^2 |dx|^2.
//!
//! Error bound: M is computed as sums of products of length at most p; |fl(M) - M| <= gamma_p |M|_abs
//! elementwise, where |M|_abs is the same LMI built from absolute values with all signs positive. The
//! symmetric eigensolver is backward stable: its eigenvalues are those of fl(M) + F with
//! ||F||_2 <= c N eps ||fl(M)||_2. The margin 2 gamma_p ||M_abs||_F + 8 N eps ||fl(M)||_F (Weyl) is
//! therefore below lambda_min of the exact LMI whenever the computed lambda_min exceeds it.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};

use super::chain::{Act, Chain};
use super::Norm;
use crate::error::{shape_err, Error, Result};

const EPS: f64 = f64::EPSILON;

/// Multipliers of one stage.
#[derive(Clone, Debug, Default)]
pub struct StageMult {
    /// Sector: one multiplier per neuron (>= 0). Groups: lambda_j per group (>= 0). Linear: empty.
    pub t: Vec<f64>,
    /// Groups: gamma_j per group (free). Otherwise empty.
    pub gamma: Vec<f64>,
    /// X_{k+1}, unless the stage is a plain group stage (then X_{k+1} = Q_k).
    pub x_next: Option<Mat<f64>>,
}

#[derive(Clone, Debug)]
pub struct Multipliers {
    pub rho: f64,
    /// l-inf only: the diagonal input multiplier.
    pub d: Vec<f64>,
    pub stages: Vec<StageMult>,
}

#[derive(Clone, Debug)]
pub struct LmiReport {
    pub name: String,
    pub size: usize,
    pub min_eig_before: f64,
    pub min_eig_after: f64,
    pub margin: f64,
}

#[derive(Clone, Debug)]
pub struct Certificate {
    /// The certified upper bound (already multiplied by the chain's scale), when certified.
    pub bound: f64,
    pub certified: bool,
    /// The bound the solver's own multipliers imply, before any repair (not a certificate).
    pub solver_bound: f64,
    pub rho: f64,
    pub lmis: Vec<LmiReport>,
    pub repaired: bool,
    pub message: String,
}

pub(super) fn matmul_new(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut c = Mat::<f64>::zeros(a.nrows(), b.ncols());
    matmul(c.as_mut(), Accum::Replace, a, b, 1.0, Par::Seq);
    c
}

pub(super) fn abs_mat(a: MatRef<'_, f64>) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)].abs())
}

pub(super) fn fro(a: MatRef<'_, f64>) -> f64 {
    super::norms::frobenius(a)
}

pub fn min_eig(m: MatRef<'_, f64>) -> Result<f64> {
    if m.nrows() == 0 {
        return Ok(f64::INFINITY);
    }
    let ev = m.self_adjoint_eigenvalues(Side::Lower).map_err(|e| Error::Solver(format!("eigendecomposition failed: {e:?}")))?;
    Ok(ev[0])
}

/// A symmetric LMI matrix with its A-block size (the rest is the activation block C).
struct Lmi {
    m: Mat<f64>,
    na: usize,
    margin: f64,
}

struct Builder<'a> {
    chain: &'a Chain,
    norm: Norm,
}

impl<'a> Builder<'a> {
    fn n_lmis(&self) -> usize {
        self.chain.stages.len() + 1
    }

    fn name(&self, k: usize) -> String {
        if k == self.chain.stages.len() {
            "final".into()
        } else {
            let s = &self.chain.stages[k];
            format!("stage {k}: {}", s.layer)
        }
    }

    /// The stage-k group or sector multiplier as a dense matrix (Q, or T for sectors).
    fn q(&self, k: usize, mu: &Multipliers, abs: bool) -> Mat<f64> {
        let st = &self.chain.stages[k];
        let m = st.w.nrows();
        let sm = &mu.stages[k];
        let f = |v: f64| if abs { v.abs() } else { v };
        match st.act.family() {
            Act::Sector { .. } => Mat::from_fn(m, m, |i, j| if i == j { f(sm.t[i]) } else { 0.0 }),
            Act::Groups { groups, e } => {
                let mut q = Mat::<f64>::zeros(m, m);
                for (j, g) in groups.iter().enumerate() {
                    for (a, &ia) in g.iter().enumerate() {
                        for (b, &ib) in g.iter().enumerate() {
                            let lam = if a == b { f(sm.t[j]) } else { 0.0 };
                            q[(ia, ib)] = lam + f(sm.gamma[j]) * f(e[(a, b)]);
                        }
                    }
                }
                q
            }
            Act::Linear | Act::Implicit { .. } => Mat::zeros(m, m),
        }
    }

    /// X_k as a dense matrix.
    fn x(&self, k: usize, mu: &Multipliers, abs: bool) -> Mat<f64> {
        let f = |v: f64| if abs { v.abs() } else { v };
        if k == 0 {
            let n = self.chain.input_dim;
            return match self.norm {
                Norm::L2 => Mat::from_fn(n, n, |i, j| if i == j { f(mu.rho) } else { 0.0 }),
                Norm::Linf => Mat::from_fn(n, n, |i, j| if i == j { f(mu.d[i]) } else { 0.0 }),
            };
        }
        if self.chain.x_is_q(k) {
            return self.q(k - 1, mu, abs);
        }
        let x = mu.stages[k - 1].x_next.as_ref().expect("checked in validate");
        if abs {
            abs_mat(x.as_ref())
        } else {
            x.clone()
        }
    }

    fn build_one(&self, k: usize, mu: &Multipliers, abs: bool) -> (Mat<f64>, usize, usize) {
        let sg = |s: f64| if abs { s.abs() } else { s };
        let xk = self.x(k, mu, abs);
        if k == self.chain.stages.len() {
            let r = self.chain.final_rows();
            let r = if abs { abs_mat(r.as_ref()) } else { r };
            let p = r.nrows() + 8;
            return match self.norm {
                Norm::L2 => {
                    let g = matmul_new(r.transpose(), r.as_ref());
                    (Mat::from_fn(xk.nrows(), xk.ncols(), |i, j| xk[(i, j)] + sg(-1.0) * g[(i, j)]), xk.nrows(), p)
                }
                Norm::Linf => {
                    let n = xk.nrows();
                    let rho = if abs { mu.rho.abs() } else { mu.rho };
                    let m = Mat::from_fn(n + 1, n + 1, |i, j| match (i < n, j < n) {
                        (true, true) => xk[(i, j)],
                        (true, false) => r[(0, i)],
                        (false, true) => r[(0, j)],
                        (false, false) => rho,
                    });
                    (m, n, p)
                }
            };
        }
        let st = &self.chain.stages[k];
        let w = if abs { abs_mat(st.w.as_ref()) } else { st.w.clone() };
        let (m, n) = (w.nrows(), w.ncols());
        let p = 2 * m.max(n) + 16;
        match (&st.act, st.residual) {
            (Act::Implicit { f, inner, .. }, _) => {
                let q = self.q(k, mu, abs);
                let f = if abs { abs_mat(f.as_ref()) } else { f.clone() };
                let (k2, k1, k0) = match **inner {
                    Act::Sector { alpha, beta } => (2.0 * alpha * beta, -(alpha + beta), 2.0),
                    _ => (-1.0, 0.0, 1.0),
                };
                let xn = self.x(k + 1, mu, abs);
                let qw = matmul_new(q.as_ref(), w.as_ref()); // Q W (m x n)
                let qf = matmul_new(q.as_ref(), f.as_ref()); // Q F (m x m)
                let wqw = matmul_new(w.transpose(), qw.as_ref());
                let wqf = matmul_new(w.transpose(), qf.as_ref());
                let fqf = matmul_new(f.transpose(), qf.as_ref());
                let size = n + m;
                let mat = Mat::from_fn(size, size, |i, j| {
                    if i < n && j < n {
                        xk[(i, j)] + sg(k2) * wqw[(i, j)]
                    } else if i >= n && j >= n {
                        let (i, j) = (i - n, j - n);
                        k0 * q[(i, j)] + sg(k1) * (qf[(i, j)] + qf[(j, i)]) + sg(k2) * fqf[(i, j)] + sg(-1.0) * xn[(i, j)]
                    } else {
                        let (zi, wj) = if i < n { (i, j - n) } else { (j, i - n) };
                        // (W^T Q)[zi, wj] = (Q W)[wj, zi] (Q symmetric)
                        sg(k1) * qw[(wj, zi)] + sg(k2) * wqf[(zi, wj)]
                    }
                });
                (mat, n, p)
            }
            (Act::Linear, _) => {
                let xn = self.x(k + 1, mu, abs);
                let s = matmul_new(w.transpose(), matmul_new(xn.as_ref(), w.as_ref()).as_ref());
                (Mat::from_fn(n, n, |i, j| xk[(i, j)] + sg(-1.0) * s[(i, j)]), n, p)
            }
            (Act::Groups { .. }, false) => {
                let q = self.q(k, mu, abs);
                let s = matmul_new(w.transpose(), matmul_new(q.as_ref(), w.as_ref()).as_ref());
                (Mat::from_fn(n, n, |i, j| xk[(i, j)] + sg(-1.0) * s[(i, j)]), n, p)
            }
            (act, residual) => {
                let q = self.q(k, mu, abs);
                let (a2, apb, cq) = match act {
                    Act::Sector { alpha, beta } => (2.0 * alpha * beta, alpha + beta, 2.0),
                    _ => (-1.0, 0.0, 1.0), // groups: -W^T Q W in A, +Q in C
                };
                let wqw = matmul_new(w.transpose(), matmul_new(q.as_ref(), w.as_ref()).as_ref());
                let wq = matmul_new(w.transpose(), q.as_ref());
                let xn = self.x(k + 1, mu, abs);
                // residual: z' = S z + G w adds [[-S^T X' S, -S^T X' G], [., -G^T X' G]]; plain: z' = w adds -X'
                // to C. `sxs` is S^T X' S (X' without a skip) and `xg` is S^T X' G.
                let (sxs, xg, gxg) = if residual {
                    let g = st.g.as_ref().expect("residual stages carry G");
                    let g = if abs { abs_mat(g.as_ref()) } else { g.clone() };
                    let xg = matmul_new(xn.as_ref(), g.as_ref());
                    let gxg = matmul_new(g.transpose(), xg.as_ref());
                    match &st.skip {
                        None => (xn.clone(), xg, gxg),
                        Some(sk) => {
                            let sk = if abs { abs_mat(sk.as_ref()) } else { sk.clone() };
                            let sxs = matmul_new(sk.transpose(), matmul_new(xn.as_ref(), sk.as_ref()).as_ref());
                            let sxg = matmul_new(sk.transpose(), xg.as_ref());
                            (sxs, sxg, gxg)
                        }
                    }
                } else {
                    (Mat::zeros(n, n), Mat::zeros(n, m), xn.clone())
                };
                let r = if residual { 1.0 } else { 0.0 };
                let size = n + m;
                let mat = Mat::from_fn(size, size, |i, j| {
                    if i < n && j < n {
                        xk[(i, j)] + sg(-r) * sxs[(i, j)] + sg(a2) * wqw[(i, j)]
                    } else if i >= n && j >= n {
                        let (i, j) = (i - n, j - n);
                        cq * q[(i, j)] + sg(-1.0) * gxg[(i, j)]
                    } else {
                        let (zi, wj) = if i < n { (i, j - n) } else { (j, i - n) };
                        sg(-r) * xg[(zi, wj)] + sg(-apb) * wq[(zi, wj)]
                    }
                });
                (mat, n, p)
            }
        }
    }

    fn build(&self, k: usize, mu: &Multipliers) -> Lmi {
        let (m, na, p) = self.build_one(k, mu, false);
        let (ma, _, _) = self.build_one(k, mu, true);
        let margin = rounding_margin(m.as_ref(), ma.as_ref(), p);
        Lmi { m, na, margin }
    }

    /// Adds delta I to X_k.
    fn raise_x(&self, k: usize, mu: &mut Multipliers, delta: f64) {
        if k == 0 {
            match self.norm {
                Norm::L2 => mu.rho += delta,
                Norm::Linf => mu.d.iter_mut().for_each(|d| *d += delta),
            }
        } else if self.chain.x_is_q(k) {
            mu.stages[k - 1].t.iter_mut().for_each(|t| *t += delta);
        } else {
            let x = mu.stages[k - 1].x_next.as_mut().expect("checked in validate");
            for i in 0..x.nrows() {
                x[(i, i)] += delta;
            }
        }
    }

    /// Whether X_k is a free symmetric multiplier (not rho I / diag(d), not a group multiplier Q).
    fn x_is_free(&self, k: usize) -> bool {
        k >= 1 && !self.chain.x_is_q(k)
    }

    /// Low-rank repair of LMI k through its own free X_k (which enters the A block with coefficient +I): with
    /// M_t = M - tau I and its C block C_t positive definite, the negative part P of the Schur complement
    /// A_t - B C_t^{-1} B^T (of M_t itself when there is no C block) gives M + diag(P, 0) >= tau I. P acts only
    /// on the failing directions, so the earlier LMIs (where X_k enters as -S^T X_k S, -S^T X_k G, -G^T X_k G or
    /// -W^T X_k W) lose less than under a raise of X_k by a multiple of I. Returns P and its largest eigenvalue,
    /// or None when C_t is not positive definite.
    fn free_x_fix(&self, lmi: &Lmi, tau: f64) -> Result<Option<(Mat<f64>, f64)>> {
        let n = lmi.m.nrows();
        let mut shifted = lmi.m.clone();
        for i in 0..n {
            shifted[(i, i)] -= tau;
        }
        let s = if lmi.na == n {
            shifted
        } else {
            let nc = n - lmi.na;
            if min_eig(shifted.as_ref().submatrix(lmi.na, lmi.na, nc, nc))? <= 0.0 {
                return Ok(None);
            }
            schur(shifted.as_ref(), lmi.na)?
        };
        let evd = s.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Solver(format!("eigendecomposition failed: {e:?}")))?;
        let (u, ev) = (evd.U(), evd.S().column_vector());
        let na = lmi.na;
        let cols: Vec<usize> = (0..na).filter(|&j| ev[j] < 0.0).collect();
        let pmax = cols.iter().map(|&j| -ev[j]).fold(0.0, f64::max);
        let scaled = Mat::from_fn(na, cols.len(), |i, c| u[(i, cols[c])] * (-ev[cols[c]]).sqrt());
        let p = matmul_new(scaled.as_ref(), scaled.transpose());
        let p = Mat::from_fn(na, na, |i, j| 0.5 * (p[(i, j)] + p[(j, i)]));
        // a nearly singular C_t can overflow the Schur complement: leave such cases to the identity raise
        if !pmax.is_finite() || (0..na).any(|j| (0..na).any(|i| !p[(i, j)].is_finite())) {
            return Ok(None);
        }
        Ok(Some((p, pmax)))
    }

    /// Adds the symmetric P to the free X_k.
    fn add_to_x(&self, k: usize, mu: &mut Multipliers, p: &Mat<f64>) {
        let x = mu.stages[k - 1].x_next.as_mut().expect("checked in validate");
        for j in 0..p.ncols() {
            for i in 0..p.nrows() {
                x[(i, j)] += p[(i, j)];
            }
        }
    }

    /// Raises the multiplier that owns LMI k's C block so that C grows by delta I.
    fn raise_own(&self, k: usize, mu: &mut Multipliers, delta: f64) {
        if k == self.chain.stages.len() {
            mu.rho += delta;
            return;
        }
        let gain = match self.chain.stages[k].act.family() {
            Act::Sector { .. } => 2.0,
            _ => 1.0,
        };
        if let Act::Implicit { dir, inner, .. } = &self.chain.stages[k].act {
            if matches!(**inner, Act::Sector { .. }) {
                // along the layer's Lambda, scaled to max 1 (the caller rescales by the growth it measures)
                let top = dir.iter().fold(0.0f64, |a, &v| a.max(v));
                mu.stages[k].t.iter_mut().zip(dir).for_each(|(t, &d)| *t += delta / gain * d / top);
                return;
            }
        }
        mu.stages[k].t.iter_mut().for_each(|t| *t += delta / gain);
    }
}

/// A - B C^{-1} B^T of a 2x2-block symmetric matrix (C positive definite).
fn schur(m: MatRef<'_, f64>, na: usize) -> Result<Mat<f64>> {
    let n = m.nrows();
    let a = m.submatrix(0, 0, na, na);
    let b = m.submatrix(0, na, na, n - na);
    let c = m.submatrix(na, na, n - na, n - na).to_owned();
    let evd = c.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Solver(format!("eigendecomposition failed: {e:?}")))?;
    let (u, s) = (evd.U(), evd.S());
    let bu = matmul_new(b, u);
    let scaled = Mat::from_fn(na, n - na, |i, j| bu[(i, j)] / s.column_vector()[j].sqrt());
    let bcb = matmul_new(scaled.as_ref(), scaled.transpose());
    Ok(Mat::from_fn(na, na, |i, j| a[(i, j)] - bcb[(i, j)]))
}

pub(super) fn validate(chain: &Chain, norm: Norm, mu: &mut Multipliers) -> Result<()> {
    if chain.stages.len() != mu.stages.len() {
        return Err(shape_err!("certificate: {} stage multipliers for {} stages", mu.stages.len(), chain.stages.len()));
    }
    let finite = |v: &[f64], what: &str| -> Result<()> {
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::Solver(format!("the solver returned non-finite multipliers ({what})")));
        }
        Ok(())
    };
    finite(&[mu.rho], "rho")?;
    if norm == Norm::Linf {
        if chain.c.is_none() && chain.last.nrows() != 1 {
            return Err(Error::Unsupported("l-inf SDP bounds need a scalar output (output=k or a vector c)".into()));
        }
        if mu.d.len() != chain.input_dim {
            return Err(shape_err!("certificate: d has length {}, expected {}", mu.d.len(), chain.input_dim));
        }
        finite(&mu.d, "d")?;
        mu.d.iter_mut().for_each(|d| *d = d.max(0.0));
    }
    mu.rho = mu.rho.max(0.0);
    for (k, (st, sm)) in chain.stages.iter().zip(mu.stages.iter_mut()).enumerate() {
        let m = st.w.nrows();
        let (nt, ng) = match st.act.family() {
            Act::Linear | Act::Implicit { .. } => (0, 0),
            Act::Sector { .. } => (m, 0),
            Act::Groups { groups, .. } => (groups.len(), groups.len()),
        };
        if sm.t.len() != nt || sm.gamma.len() != ng {
            return Err(shape_err!(
                "certificate: stage {k} has {} / {} multipliers, expected {nt} / {ng}",
                sm.t.len(),
                sm.gamma.len()
            ));
        }
        finite(&sm.t, "t")?;
        finite(&sm.gamma, "gamma")?;
        // lambda >= 0 and T >= 0 are what make the quadratic constraints valid.
        sm.t.iter_mut().for_each(|t| *t = t.max(0.0));
        if !chain.x_is_q(k + 1) {
            let x = sm.x_next.as_mut().ok_or_else(|| shape_err!("certificate: stage {k} needs X_{}", k + 1))?;
            let o = st.out_dim();
            if x.nrows() != o || x.ncols() != o {
                return Err(shape_err!("certificate: X_{} is {}x{}, expected {o}x{o}", k + 1, x.nrows(), x.ncols()));
            }
            finite(&x.as_ref().col_iter().flat_map(|c| c.iter().copied().collect::<Vec<_>>()).collect::<Vec<_>>(), "X")?;
            let sym = Mat::from_fn(o, o, |i, j| 0.5 * (x[(i, j)] + x[(j, i)]));
            *x = sym;
        }
    }
    Ok(())
}

pub(super) fn bound_of(chain: &Chain, norm: Norm, mu: &Multipliers) -> f64 {
    let sq = match norm {
        Norm::L2 => mu.rho,
        Norm::Linf => {
            let n = mu.d.len() as f64;
            let sd: f64 = mu.d.iter().sum::<f64>() * (1.0 + 2.0 * (n + 1.0) * EPS);
            mu.rho * sd * (1.0 + 2.0 * EPS)
        }
    };
    let b = sq.sqrt() * (1.0 + 2.0 * EPS);
    b * chain.scale * (1.0 + 2.0 * EPS)
}

/// The stage-k group / sector multiplier (Q, or T) as a dense matrix; `abs`: entrywise absolute values.
pub(super) fn stage_q(chain: &Chain, norm: Norm, k: usize, mu: &Multipliers, abs: bool) -> Mat<f64> {
    Builder { chain, norm }.q(k, mu, abs)
}

/// The margin that covers the rounding error of an LMI matrix `m` computed with sums of products of
/// length at most `p` (`ma`: the same matrix built from absolute values) and of its eigensolver.
pub(crate) fn rounding_margin(m: MatRef<'_, f64>, ma: MatRef<'_, f64>, p: usize) -> f64 {
    let n = m.nrows() as f64;
    let pf = p as f64;
    let gamma = pf * EPS / (1.0 - pf * EPS);
    2.0 * (2.0 * gamma * fro(ma) + 8.0 * n * EPS * fro(m)) + f64::MIN_POSITIVE
}

/// Checks (and with `repair`, fixes) the multipliers; see the module docs.
pub fn certify(chain: &Chain, norm: Norm, mut mu: Multipliers, repair: bool) -> Result<Certificate> {
    validate(chain, norm, &mut mu)?;
    let bld = Builder { chain, norm };
    let nl = bld.n_lmis();
    let solver_bound = bound_of(chain, norm, &mu);
    let mut before = vec![0.0; nl];
    for (k, b) in before.iter_mut().enumerate() {
        *b = min_eig(bld.build(k, &mu).m.as_ref())?;
    }
    let mut repaired = false;
    if repair {
        for k in (0..nl).rev() {
            let mut slack = 1.0;
            for _ in 0..60 {
                let lmi = bld.build(k, &mu);
                let lam = min_eig(lmi.m.as_ref())?;
                if lam >= lmi.margin {
                    break;
                }
                repaired = true;
                // Shift the whole LMI up by e: M + Delta + a E_A >= M + e I.
                let e = slack * (2.0 * lmi.margin - lam.min(0.0) + 1e-15 * (1.0 + fro(lmi.m.as_ref())));
                let n = lmi.m.nrows();
                // the low-rank fix through a free X_k, when it costs no more than the raise below (X_k + a I)
                let fix = if bld.x_is_free(k) { bld.free_x_fix(&lmi, e + lam.min(0.0))? } else { None };
                if let Some((p, pmax)) = &fix {
                    if lmi.na == n || *pmax <= e {
                        bld.add_to_x(k, &mut mu, p);
                        slack *= 2.0;
                        continue;
                    }
                }
                let saved = fix.as_ref().map(|_| mu.clone());
                let a = if lmi.na == n {
                    e
                } else {
                    let before = lmi.m;
                    let nc = n - lmi.na;
                    // raise the C block's own multiplier so that C grows by 2e ...
                    bld.raise_own(k, &mut mu, 2.0 * e);
                    let mut after = bld.build(k, &mu).m;
                    let mut delta = Mat::from_fn(n, n, |i, j| after[(i, j)] - before[(i, j)]);
                    // (implicit stages: C grows by the raise times 2I - (a+b)(F + F^T) + ..., positive definite but
                    // possibly below 2e I; the change is linear in the raise, so scale it up to reach 2e)
                    let grow = min_eig(delta.as_ref().submatrix(lmi.na, lmi.na, nc, nc))?;
                    if grow > 0.0 && grow <= e {
                        bld.raise_own(k, &mut mu, 2.0 * e * (2.0 * e / grow - 1.0));
                        after = bld.build(k, &mu).m;
                        delta = Mat::from_fn(n, n, |i, j| after[(i, j)] - before[(i, j)]);
                    }
                    // ... then a >= e - lambda_min(A_D - B_D (C_D - e I)^{-1} B_D^T), with C_D - e I ~ e I.
                    let mut cd = delta.as_ref().submatrix(lmi.na, lmi.na, nc, nc).to_owned();
                    for i in 0..nc {
                        cd[(i, i)] -= e;
                    }
                    let mut shifted = delta.clone();
                    for i in 0..nc {
                        shifted[(lmi.na + i, lmi.na + i)] -= e;
                    }
                    if min_eig(cd.as_ref())? > 0.0 {
                        let s = schur(shifted.as_ref(), lmi.na)?;
                        e - min_eig(s.as_ref())?.min(0.0)
                    } else {
                        e * 4.0
                    }
                };
                match (fix, saved) {
                    (Some((p, pmax)), Some(saved)) if pmax <= a.max(e) => {
                        mu = saved;
                        bld.add_to_x(k, &mut mu, &p);
                    }
                    _ => bld.raise_x(k, &mut mu, a.max(e)),
                }
                slack *= 2.0;
                if !slack.is_finite() {
                    break;
                }
            }
        }
    }
    let mut lmis = Vec::with_capacity(nl);
    let mut ok = true;
    for k in 0..nl {
        let lmi = bld.build(k, &mu);
        let after = min_eig(lmi.m.as_ref())?;
        ok &= after >= lmi.margin && after.is_finite();
        lmis.push(LmiReport { name: bld.name(k), size: lmi.m.nrows(), min_eig_before: before[k], min_eig_after: after, margin: lmi.margin });
    }
    let bound = bound_of(chain, norm, &mu);
    ok &= bound.is_finite();
    let message = if ok {
        if repaired { "certified after repair".into() } else { "certified".into() }
    } else {
        let worst = lmis.iter().filter(|l| !(l.min_eig_after >= l.margin)).map(|l| l.name.clone()).collect::<Vec<_>>();
        format!("could not certify: LMI(s) {} not PSD with margin", worst.join(", "))
    };
    Ok(Certificate { bound, certified: ok, solver_bound, rho: mu.rho, lmis, repaired, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{Layer, Network, Pairing};

    fn rot(t: f64) -> Mat<f64> {
        Mat::from_fn(2, 2, |i, j| match (i, j) {
            (0, 0) | (1, 1) => t.cos(),
            (0, 1) => -t.sin(),
            _ => t.sin(),
        })
    }

    #[test]
    fn repair_from_zero_gives_the_spectral_norm() {
        let w = Mat::from_fn(2, 3, |i, j| (i as f64 + 1.0) * (j as f64 - 1.3));
        let net = Network::new(vec![Layer::dense(w.clone(), None).unwrap()], None).unwrap();
        let chain = Chain::new(&net, None).unwrap();
        let cert = certify(&chain, Norm::L2, Multipliers { rho: 0.0, d: vec![], stages: vec![] }, true).unwrap();
        let s = w.singular_values().unwrap()[0];
        assert!(cert.certified && cert.repaired);
        assert!(cert.bound >= s && cert.bound <= s * (1.0 + 1e-9), "{} vs {s}", cert.bound);
        let bad = certify(&chain, Norm::L2, Multipliers { rho: 0.0, d: vec![], stages: vec![] }, false).unwrap();
        assert!(!bad.certified);
    }

    #[test]
    fn maxmin_with_rotations_certifies_one() {
        let layers = vec![
            Layer::dense(rot(0.3), None).unwrap(),
            Layer::maxmin(Pairing::Adjacent),
            Layer::dense(rot(1.1), None).unwrap(),
        ];
        let net = Network::new(layers, None).unwrap();
        let chain = Chain::new(&net, None).unwrap();
        for eps in [1e-2, 1e-8, 0.0] {
            let mu = Multipliers {
                rho: 1.0 - eps,
                d: vec![],
                stages: vec![StageMult { t: vec![1.0 - eps], gamma: vec![eps], x_next: None }],
            };
            let cert = certify(&chain, Norm::L2, mu, true).unwrap();
            assert!(cert.certified);
            // the repair keeps gamma, so the bound may grow by about eps
            assert!(cert.bound >= 1.0 && cert.bound < 1.0 + 2.0 * eps + 1e-6, "{}", cert.bound);
        }
    }

    /// The general residual LMI with an explicit S = I is the identity-skip LMI, entry for entry; a skip
    /// S = 2I needs X_1 / 4 for the same certificate (z' = 2z + G w is 2 (z + G/2 w)).
    #[test]
    fn explicit_identity_skip_matches_the_plain_residual_lmi() {
        let w = Mat::from_fn(3, 3, |i, j| ((i * 3 + j) as f64 * 0.7).sin());
        let g = Mat::from_fn(3, 3, |i, j| ((i + 2 * j) as f64 * 0.3).cos() * 0.5);
        let inner = vec![Layer::dense(w, None).unwrap(), Layer::ReLU, Layer::dense(g, None).unwrap()];
        let net = Network::new(vec![Layer::residual(inner, None).unwrap()], None).unwrap();
        let plain = Chain::new(&net, None).unwrap();
        assert!(plain.stages[0].skip.is_none());
        let mut explicit = plain.clone();
        explicit.stages[0].skip = Some(Mat::from_fn(3, 3, |i, j| if i == j { 1.0 } else { 0.0 }));
        let mu = |x: f64| Multipliers {
            rho: 0.0,
            d: vec![],
            stages: vec![StageMult { t: vec![1.0; 3], gamma: vec![], x_next: Some(Mat::from_fn(3, 3, |i, j| if i == j { x } else { 0.0 })) }],
        };
        let (a, b) = (certify(&plain, Norm::L2, mu(1.0), true).unwrap(), certify(&explicit, Norm::L2, mu(1.0), true).unwrap());
        assert!(a.certified && b.certified);
        assert_eq!(a.bound, b.bound);
        for (la, lb) in a.lmis.iter().zip(&b.lmis) {
            assert_eq!(la.min_eig_before, lb.min_eig_before);
        }
        let bld = |c: &Chain, m: &Multipliers| Builder { chain: c, norm: Norm::L2 }.build_one(0, m, false).0;
        let mut double = plain.clone();
        double.stages[0].skip = Some(Mat::from_fn(3, 3, |i, j| if i == j { 2.0 } else { 0.0 }));
        double.stages[0].g = Some(Mat::from_fn(3, 3, |i, j| 2.0 * plain.stages[0].g.as_ref().unwrap()[(i, j)]));
        let (m1, m2) = (bld(&plain, &mu(1.0)), bld(&double, &mu(0.25)));
        for i in 0..6 {
            for j in 0..6 {
                assert!((m1[(i, j)] - m2[(i, j)]).abs() < 1e-14, "({i}, {j}): {} vs {}", m1[(i, j)], m2[(i, j)]);
            }
        }
    }

    #[test]
    fn scalar_implicit_relu_certifies_its_exact_constant() {
        // z = relu(w z + x): L = 1 / (1 - w). With t = 1/(1-w), X_1 = 1 the implicit LMI
        // [[rho, -t], [-t, 2t(1-w) - X_1]] is PSD exactly for rho >= t^2 = L^2, and the final LMI X_1 - 1 >= 0.
        for w in [0.0, 0.5, -2.0, 0.75] {
            let imp = crate::network::Implicit::new(
                Mat::from_fn(1, 1, |_, _| w),
                Mat::from_fn(1, 1, |_, _| 1.0),
                None,
                Layer::ReLU,
            )
            .unwrap();
            let net = Network::new(vec![Layer::Implicit(Box::new(imp))], None).unwrap();
            let chain = Chain::new(&net, None).unwrap();
            assert_eq!(chain.stages.len(), 1);
            let l = 1.0 / (1.0 - w);
            let mu = |rho: f64| Multipliers {
                rho,
                d: vec![],
                stages: vec![StageMult { t: vec![l], gamma: vec![], x_next: Some(Mat::from_fn(1, 1, |_, _| 1.0)) }],
            };
            let cert = certify(&chain, Norm::L2, mu(l * l), true).unwrap();
            assert!(cert.certified);
            assert!(cert.bound >= l && cert.bound < l * (1.0 + 1e-9), "w {w}: {} vs {l}", cert.bound);
            // below the constant nothing certifies without repair, and the repair lands above it
            let low = certify(&chain, Norm::L2, mu(0.9 * l * l), false).unwrap();
            assert!(!low.certified);
            let fixed = certify(&chain, Norm::L2, mu(0.9 * l * l), true).unwrap();
            assert!(fixed.certified && fixed.repaired && fixed.bound >= l);
        }
    }

    #[test]
    fn lower_bound_of_a_linear_map_is_its_norm() {
        let w = Mat::from_fn(2, 2, |i, j| [[3.0, 1.0], [0.0, 2.0]][i][j]);
        let net = Network::new(vec![Layer::dense(w.clone(), None).unwrap()], None).unwrap();
        let (v, _) = crate::lipschitz::lower::lower_bound(&net, Norm::L2, None, 2, 5, 1).unwrap();
        assert!((v - w.singular_values().unwrap()[0]).abs() < 1e-12);
        let (v, _) = crate::lipschitz::lower::lower_bound(&net, Norm::Linf, Some(&[1.0, 0.0]), 2, 5, 1).unwrap();
        assert!((v - 4.0).abs() < 1e-12);
    }
}
