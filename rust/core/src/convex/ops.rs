//! The linear maps of the convex program, applied through GEMMs with X.
//!
//! Variables are stored as a d x 2P matrix U: column j < P is v_j, column P + j is w_j.
//! F U = sum_j D_j X (v_j - w_j) (length n); G U = [(2D_j - I) X v_j, (2D_j - I) X w_j] (n x 2P);
//! for the adversarial program, Gamma U = D (V - W)_f^T (n x d_f): row k is the input gradient
//! g_k = sum_j D_kj (v_j - w_j) restricted to the perturbable coordinates f.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

pub(crate) fn par() -> Par {
    Par::rayon(0)
}

pub(crate) struct Ops<'a> {
    pub x: MatRef<'a, f64>,
    /// n x P, entries 0 or 1.
    pub dm: Mat<f64>,
}

impl<'a> Ops<'a> {
    pub fn n(&self) -> usize {
        self.x.nrows()
    }
    pub fn d(&self) -> usize {
        self.x.ncols()
    }
    pub fn p(&self) -> usize {
        self.dm.ncols()
    }

    /// out = X U  (n x 2P)
    pub fn xu(&self, u: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        matmul(out, Accum::Replace, self.x, u, 1.0, par());
    }

    /// out = X^T R  (d x 2P)
    pub fn xtr(&self, r: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        matmul(out, Accum::Replace, self.x.transpose(), r, 1.0, par());
    }

    /// F U given Z = X U.
    pub fn f_from_z(&self, z: MatRef<'_, f64>, f: &mut [f64]) {
        let p = self.p();
        f.iter_mut().for_each(|v| *v = 0.0);
        for j in 0..p {
            let (dj, zv, zw) = (self.dm.col(j), z.col(j), z.col(p + j));
            for k in 0..f.len() {
                f[k] += dj[k] * (zv[k] - zw[k]);
            }
        }
    }

    /// G U given Z = X U, written into g (n x 2P).
    pub fn g_from_z(&self, z: MatRef<'_, f64>, mut g: MatMut<'_, f64>) {
        let p = self.p();
        for j in 0..2 * p {
            let dj = self.dm.col(j % p);
            let (zj, mut gj) = (z.col(j), g.rb_mut().col_mut(j));
            for k in 0..zj.nrows() {
                gj[k] = (2.0 * dj[k] - 1.0) * zj[k];
            }
        }
    }

    /// Adds F^T-side columns for a length-n vector t to R (n x 2P): R[:, j] += +-D_j t.
    /// X^T R then equals F^T t (plus whatever R held).
    pub fn add_ft_cols(&self, t: &[f64], mut r: MatMut<'_, f64>, scale: f64) {
        let p = self.p();
        for j in 0..p {
            let dj = self.dm.col(j);
            for k in 0..t.len() {
                let v = scale * dj[k] * t[k];
                r[(k, j)] += v;
                r[(k, p + j)] -= v;
            }
        }
    }

    /// out[:, j] = scale * (2D_j - I) (s[:, j] - t[:, j]): the G^T-side columns of scale * (S - T), written.
    pub fn gt_cols_diff(&self, s: MatRef<'_, f64>, t: MatRef<'_, f64>, mut out: MatMut<'_, f64>, scale: f64) {
        let p = self.p();
        for j in 0..2 * p {
            let (dj, sj, tj) = (self.dm.col(j % p), s.col(j), t.col(j));
            let mut oj = out.rb_mut().col_mut(j);
            for k in 0..s.nrows() {
                oj[k] = scale * (2.0 * dj[k] - 1.0) * (sj[k] - tj[k]);
            }
        }
    }

    /// Adds G^T-side columns: R[:, j] += scale * (2D_j - I) S[:, j].
    pub fn add_gt_cols(&self, s: MatRef<'_, f64>, mut r: MatMut<'_, f64>, scale: f64) {
        let p = self.p();
        for j in 0..2 * p {
            let dj = self.dm.col(j % p);
            for k in 0..s.nrows() {
                r[(k, j)] += scale * (2.0 * dj[k] - 1.0) * s[(k, j)];
            }
        }
    }

    /// Gamma U = D (V - W)[fidx]^T (n x |fidx|), written into `out`.
    pub fn gamma(&self, u: MatRef<'_, f64>, fidx: &[usize], out: MatMut<'_, f64>) {
        let p = self.p();
        let delta = Mat::<f64>::from_fn(p, fidx.len(), |j, c| u[(fidx[c], j)] - u[(fidx[c], p + j)]);
        matmul(out, Accum::Replace, self.dm.as_ref(), delta.as_ref(), 1.0, par());
    }

    /// out[fidx, j] += scale * (D^T R)[j, :] and out[fidx, P + j] -= the same: out += scale * Gamma^T R.
    pub fn add_gamma_t(&self, r: MatRef<'_, f64>, fidx: &[usize], mut out: MatMut<'_, f64>, scale: f64) {
        let p = self.p();
        let mut dtr = Mat::<f64>::zeros(p, fidx.len());
        matmul(dtr.as_mut(), Accum::Replace, self.dm.transpose(), r, 1.0, par());
        for j in 0..p {
            for (c, &fc) in fidx.iter().enumerate() {
                out[(fc, j)] += scale * dtr[(j, c)];
                out[(fc, p + j)] -= scale * dtr[(j, c)];
            }
        }
    }
}

use faer::reborrow::ReborrowMut;
