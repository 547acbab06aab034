//! Matrix norms and the naive Lipschitz bound (product of layer norms).
//!
//! Spectral norms come from an exact SVD; every value returned is inflated by a guard that covers the
//! SVD's rounding error, so the naive bound is a true upper bound.

use faer::{Mat, MatRef};

use super::Norm;
use crate::error::{shape_err, Error, Result};
use crate::network::{Layer, Network};

const EPS: f64 = f64::EPSILON;

/// Largest singular value of `w`, rounded up by a backward-error guard.
pub fn spectral_norm(w: MatRef<'_, f64>) -> Result<f64> {
    if w.nrows() == 0 || w.ncols() == 0 {
        return Ok(0.0);
    }
    let s = w.singular_values().map_err(|e| Error::Solver(format!("SVD failed: {e:?}")))?;
    let n = w.nrows().max(w.ncols()) as f64;
    let fro = frobenius(w);
    Ok(s[0] * (1.0 + 4.0 * n * EPS) + 8.0 * n * EPS * fro)
}

pub fn frobenius(w: MatRef<'_, f64>) -> f64 {
    let mut s = 0.0;
    for j in 0..w.ncols() {
        for i in 0..w.nrows() {
            s += w[(i, j)] * w[(i, j)];
        }
    }
    s.sqrt()
}

/// The induced l-inf norm: the largest absolute row sum, rounded up.
pub fn inf_norm(w: MatRef<'_, f64>) -> f64 {
    let mut best: f64 = 0.0;
    for i in 0..w.nrows() {
        let r: f64 = (0..w.ncols()).map(|j| w[(i, j)].abs()).sum();
        best = best.max(r);
    }
    best * (1.0 + 2.0 * (w.ncols() as f64 + 1.0) * EPS)
}

/// The smallest power of two >= x (1 for x <= 0 or non-finite): dividing by it is exact.
pub fn pow2_at_least(x: f64) -> f64 {
    if !(x > 0.0) || !x.is_finite() {
        return 1.0;
    }
    let mut p = 2f64.powi(x.log2().ceil() as i32);
    while p < x {
        p *= 2.0;
    }
    while p / 2.0 >= x {
        p /= 2.0;
    }
    p
}

/// Lipschitz constant of an activation layer in the given norm.
pub fn activation_constant(layer: &Layer, norm: Norm) -> f64 {
    match *layer {
        Layer::Implicit(_) => unreachable!("not an activation"),
        Layer::ReLU | Layer::Tanh | Layer::GroupSort { .. } => 1.0,
        Layer::LeakyReLU { slope } => slope.abs().max(1.0),
        Layer::Sigmoid => 0.25,
        Layer::Householder { theta, .. } => match norm {
            Norm::L2 => 1.0,
            Norm::Linf => {
                let (v0, v1) = ((theta / 2.0).sin(), -(theta / 2.0).cos());
                let r = [1.0 - 2.0 * v0 * v0, -2.0 * v0 * v1, 1.0 - 2.0 * v1 * v1];
                let m = (r[0].abs() + r[1].abs()).max(r[1].abs() + r[2].abs());
                m.max(1.0) * (1.0 + 8.0 * EPS)
            }
        },
        Layer::Dense(_) | Layer::Residual { .. } => unreachable!("not an activation"),
    }
}

fn layer_norm(w: MatRef<'_, f64>, norm: Norm) -> Result<f64> {
    match norm {
        Norm::L2 => spectral_norm(w),
        Norm::Linf => Ok(inf_norm(w)),
    }
}

/// beta ||U|| / (1 - beta ||W||) for an implicit layer z = act(W z + U x + b), when beta ||W|| < 1 in the norm
/// (|dz| <= beta (||W|| |dz| + ||U|| |dx|)); `Unsupported` otherwise (a monotone-only layer has no naive bound).
pub fn implicit_naive(imp: &crate::network::Implicit, norm: Norm) -> Result<f64> {
    let beta = activation_constant(imp.activation(), norm);
    let q = beta * layer_norm(imp.weight(), norm)? * (1.0 + 2.0 * EPS);
    if !(q < 1.0) {
        let nm = if norm == Norm::L2 { "2" } else { "inf" };
        return Err(Error::Unsupported(format!(
            "the naive bound is unavailable for an Implicit layer ({} units, {}) with beta*||W||_{nm} = {q:.6} >= 1 (it needs a contraction; use an SDP method)",
            imp.out_dim(),
            imp.activation().kind()
        )));
    }
    let num = beta * layer_norm(imp.input_weight(), norm)? * (1.0 + 2.0 * EPS);
    // 1 - q rounded down, then the quotient rounded up
    Ok(num / ((1.0 - q) * (1.0 - 2.0 * EPS)) * (1.0 + 2.0 * EPS))
}

fn product(layers: &[Layer], norm: Norm) -> Result<f64> {
    let mut b = 1.0f64;
    for l in layers {
        b *= match l {
            Layer::Implicit(imp) => implicit_naive(imp, norm)?,
            Layer::Dense(d) => layer_norm(d.weight(), norm)?,
            // ||S x + f(x)|| Lipschitz constant <= ||S|| + Lip(f) (||I|| = 1), rounded up.
            Layer::Residual { inner, skip } => {
                let s = match skip {
                    None => 1.0,
                    Some(s) => layer_norm(s.weight(), norm)?,
                };
                (s + product(inner, norm)?) * (1.0 + 2.0 * EPS)
            }
            act => activation_constant(act, norm),
        };
    }
    Ok(b * (1.0 + 2.0 * (layers.len() as f64 + 1.0) * EPS))
}

/// Product of layer norms (residual blocks contribute ||S|| + the bound of their inner layers, ||I|| = 1). With
/// `c`, bounds the scalar map x -> c^T f(x): for l2 the output is |.|; for l-inf the input norm is
/// l-inf and the output |.|, so the last factor is the l1 norm of c^T W_last.
pub fn naive_bound(net: &Network, norm: Norm, c: Option<&[f64]>) -> Result<f64> {
    let layers = net.layers();
    let Some(c) = c else { return product(layers, norm) };
    if c.len() != net.output_dim() {
        return Err(shape_err!("output vector c has length {} but the network has {} outputs", c.len(), net.output_dim()));
    }
    if let Some((Layer::Dense(d), rest)) = layers.split_last() {
        let w = d.weight();
        let row = Mat::from_fn(1, w.ncols(), |_, j| (0..w.nrows()).map(|i| c[i] * w[(i, j)]).sum::<f64>());
        let last = match norm {
            Norm::L2 => frobenius(row.as_ref()),
            Norm::Linf => (0..row.ncols()).map(|j| row[(0, j)].abs()).sum(),
        } * (1.0 + 2.0 * (w.nrows() + w.ncols() + 2) as f64 * EPS);
        let head = if rest.is_empty() { 1.0 } else { product(rest, norm)? };
        return Ok(head * last * (1.0 + 4.0 * EPS));
    }
    let cn = match norm {
        Norm::L2 => c.iter().map(|v| v * v).sum::<f64>().sqrt(),
        Norm::Linf => c.iter().map(|v| v.abs()).sum::<f64>(),
    } * (1.0 + 2.0 * (c.len() as f64 + 1.0) * EPS);
    Ok(product(layers, norm)? * cn * (1.0 + 4.0 * EPS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow2() {
        assert_eq!(pow2_at_least(1.0), 1.0);
        assert_eq!(pow2_at_least(1.5), 2.0);
        assert_eq!(pow2_at_least(0.3), 0.5);
        assert_eq!(pow2_at_least(0.0), 1.0);
    }

    #[test]
    fn spectral_of_diagonal() {
        let w = Mat::from_fn(3, 2, |i, j| if i == j { [3.0, -5.0][i] } else { 0.0 });
        let s = spectral_norm(w.as_ref()).unwrap();
        assert!(s >= 5.0 && s < 5.0 * (1.0 + 1e-12), "{s}");
        assert!((inf_norm(w.as_ref()) - 5.0).abs() < 1e-12);
    }
}
