//! Sampled lower bound on the Lipschitz constant: the largest local Jacobian norm found by a
//! multi-start local search on the input (random restarts at several scales, then accept-if-better
//! perturbation steps with a shrinking radius). Piecewise-linear networks have piecewise-constant
//! Jacobians, so the search moves between linear regions rather than following a gradient.

use faer::Mat;
use rayon::prelude::*;

use super::Norm;
use crate::error::{shape_err, Error, Result};
use crate::network::Network;

/// The local operator norm of the Jacobian at x: l2 -> top singular value (or ||c^T J||_2);
/// l-inf -> largest row l1 norm (or ||c^T J||_1).
pub fn local_norm(net: &Network, x: &[f64], norm: Norm, c: Option<&[f64]>) -> Result<f64> {
    if let Some(c) = c {
        let (_, g) = net.vjp(x, c)?;
        return Ok(match norm {
            Norm::L2 => g.iter().map(|v| v * v).sum::<f64>().sqrt(),
            Norm::Linf => g.iter().map(|v| v.abs()).sum(),
        });
    }
    let j: Mat<f64> = net.jacobian(x)?;
    Ok(match norm {
        Norm::L2 => j.singular_values().map_err(|e| Error::Solver(format!("SVD failed: {e:?}")))?[0],
        Norm::Linf => (0..j.nrows()).map(|i| (0..j.ncols()).map(|k| j[(i, k)].abs()).sum::<f64>()).fold(0.0, f64::max),
    })
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next(), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Multi-start search; returns the best local norm and the point where it was found.
pub fn lower_bound(
    net: &Network,
    norm: Norm,
    c: Option<&[f64]>,
    starts: usize,
    steps: usize,
    seed: u64,
) -> Result<(f64, Vec<f64>)> {
    if let Some(c) = c {
        if c.len() != net.output_dim() {
            return Err(shape_err!("output vector c has length {} but the network has {} outputs", c.len(), net.output_dim()));
        }
    }
    let n = net.input_dim();
    let results: Result<Vec<(f64, Vec<f64>)>> = (0..starts.max(1))
        .into_par_iter()
        .map(|s| {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(s as u64 * 7919 + 1) | 1);
            let sigma = [1.0, 0.1, 10.0][s % 3];
            let mut x: Vec<f64> = (0..n).map(|_| sigma * rng.normal()).collect();
            let mut best = local_norm(net, &x, norm, c)?;
            let mut radius = 0.5 * sigma;
            for _ in 0..steps {
                let y: Vec<f64> = x.iter().map(|v| v + radius * rng.normal()).collect();
                let val = local_norm(net, &y, norm, c)?;
                if val > best {
                    best = val;
                    x = y;
                } else {
                    radius *= 0.97;
                    if radius < 1e-3 * sigma {
                        radius = 0.5 * sigma;
                    }
                }
            }
            Ok((best, x))
        })
        .collect();
    Ok(results?.into_iter().fold((0.0, vec![0.0; n]), |a, b| if b.0 > a.0 { b } else { a }))
}
