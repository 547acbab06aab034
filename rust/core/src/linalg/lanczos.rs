//! Lanczos with full reorthogonalisation: Ritz pairs of a symmetric operator (DCDM's training data).

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par, Side};

use super::vecops::{dot, norm2};
use super::LinOp;
use crate::error::{invalid_err, shape_err, Error, Result};

pub struct RitzPairs {
    /// Ritz values in nondecreasing order.
    pub values: Vec<f64>,
    /// Ritz vectors as columns (dim x m), unit 2-norm.
    pub vectors: Mat<f64>,
    /// Residual norms ||A y - theta y|| = |beta_m s_{m,i}| of each pair.
    pub residuals: Vec<f64>,
}

/// m steps of Lanczos from `v0` (stops early on an invariant subspace).
pub fn lanczos(a: &dyn LinOp, v0: &[f64], m: usize) -> Result<RitzPairs> {
    let n = a.dim();
    if v0.len() != n {
        return Err(shape_err!("v0 has length {} but the operator has dimension {n}", v0.len()));
    }
    if m == 0 || m > n {
        return Err(invalid_err!("Lanczos steps m must be in 1..={n}, got {m}"));
    }
    let nv = norm2(v0);
    if !(nv > 0.0) || !nv.is_finite() {
        return Err(invalid_err!("v0 must be finite and nonzero"));
    }
    // the basis as the columns of one matrix: reorthogonalisation and the Ritz vectors are then
    // matrix products (parallel, blocked) instead of m scalar dot/axpy sweeps each
    let mut basis = Mat::<f64>::zeros(n, m);
    for (b, v) in basis.col_as_slice_mut(0).iter_mut().zip(v0) {
        *b = v / nv;
    }
    let par = if n >= 1 << 15 { Par::rayon(0) } else { Par::Seq };
    let (mut alpha, mut beta) = (Vec::with_capacity(m), Vec::with_capacity(m));
    let mut w = Mat::<f64>::zeros(n, 1);
    let mut c = Mat::<f64>::zeros(m, 1);
    let mut last_beta = 0.0;
    for j in 0..m {
        a.apply(basis.col_as_slice(j), w.col_as_slice_mut(0));
        let aj = dot(w.col_as_slice(0), basis.col_as_slice(j));
        alpha.push(aj);
        // full reorthogonalisation, twice (classical Gram-Schmidt is unstable once)
        let v = basis.as_ref().subcols(0, j + 1);
        for _ in 0..2 {
            matmul(c.as_mut().subrows_mut(0, j + 1), Accum::Replace, v.transpose(), w.as_ref(), 1.0, par);
            matmul(w.as_mut(), Accum::Add, v, c.as_ref().subrows(0, j + 1), -1.0, par);
        }
        let bj = norm2(w.col_as_slice(0));
        last_beta = bj;
        if j + 1 == m || bj <= 1e-12 * aj.abs().max(1.0) {
            break;
        }
        beta.push(bj);
        for (b, x) in basis.col_as_slice_mut(j + 1).iter_mut().zip(w.col_as_slice(0)) {
            *b = x / bj;
        }
    }
    let k = alpha.len();
    let t = Mat::<f64>::from_fn(k, k, |i, j| {
        if i == j {
            alpha[i]
        } else if i + 1 == j {
            beta[i]
        } else if j + 1 == i {
            beta[j]
        } else {
            0.0
        }
    });
    let eig = t.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Solver(format!("tridiagonal eigensolver: {e:?}")))?;
    let s = eig.U();
    let values: Vec<f64> = (0..k).map(|i| eig.S()[i]).collect();
    let mut vectors = Mat::<f64>::zeros(n, k);
    matmul(vectors.as_mut(), Accum::Replace, basis.as_ref().subcols(0, k), s, 1.0, par);
    let residuals = (0..k).map(|i| (last_beta * s[(k - 1, i)]).abs()).collect();
    Ok(RitzPairs { values, vectors, residuals })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::Stencil7;

    #[test]
    fn extreme_ritz_values_of_1d_like_laplacian() {
        // 1x1xN grid: the 1-D Dirichlet Laplacian diagonal 2 + 4 (the four walls in x and y)
        let n = 40;
        let a = Stencil7::new(1, 1, n, None).unwrap();
        let v0: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 0.37).sin()).collect();
        let rp = lanczos(&a, &v0, n).unwrap();
        let h = std::f64::consts::PI / (n as f64 + 1.0);
        let lmin = 4.0 + 2.0 - 2.0 * h.cos();
        let lmax = 4.0 + 2.0 + 2.0 * h.cos();
        assert!((rp.values[0] - lmin).abs() < 1e-9, "{} vs {lmin}", rp.values[0]);
        assert!((rp.values[rp.values.len() - 1] - lmax).abs() < 1e-9);
        // A y = theta y for the smallest pair
        let y: Vec<f64> = (0..n).map(|i| rp.vectors[(i, 0)]).collect();
        let mut ay = vec![0.0; n];
        a.apply(&y, &mut ay);
        let res: f64 = ay.iter().zip(&y).map(|(u, v)| (u - rp.values[0] * v).powi(2)).sum::<f64>().sqrt();
        assert!(res < 1e-8);
    }
}
