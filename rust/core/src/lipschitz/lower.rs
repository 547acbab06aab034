//! Sampled lower bound on the Lipschitz constant: the largest local Jacobian norm found by a multi-start
//! search on the input. Every value it reports is a local Jacobian norm at a point (for piecewise-linear
//! networks, the Jacobian of one of the linear pieces that meet there, so a limit of Jacobians), computed as
//! before; the difference quotients below only steer the search (in floating point a quotient over a tiny
//! step can exceed the true constant by rounding, so it is never reported).
//!
//! Two kinds of starts, run side by side:
//! - gradient ascent on the difference quotient q(x, d) = |f(x + d) - f(x)|_out / |d|_in (`ascend`). For
//!   piecewise-linear networks the Jacobian, and so the local norm, is piecewise constant and has no useful
//!   gradient; q does: with u the output direction of the change (c's sign for a scalar output, the unit
//!   change for l2, the largest coordinate for l-inf), grad_x q = J(x + d)^T u - J(x)^T u over |d| (non-zero
//!   exactly when x and x + d lie in regions with different Jacobians, so x moves towards the region where
//!   the norm is larger) and grad_d q = J(x + d)^T u / |d| - q grad |d| / |d| (d turns towards the top
//!   singular direction of the region at x + d). For smooth activations both are true gradients, and as |d|
//!   shrinks (|d| decays geometrically over the run) q tends to the directional derivative, so the ascent
//!   climbs the local norm itself. Steps are normalised (l2: along the gradient; l-inf: the sign of the
//!   gradient, steepest ascent for that norm), with a step size that decays and restarts from a fresh scale
//!   when the search stalls. The local norm is evaluated at x + d along the way (free for a scalar output:
//!   it is the |J^T c| already computed).
//! - the random accept-if-better search (`random_search`): random restarts at several scales, then
//!   perturbation steps with a shrinking radius.
//! Each start index s runs both: the random search with the seed it had before (so it finds what it found
//! before and the reported value can only grow) and an ascent from an independent seed.

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

fn norm_in(v: &[f64], norm: Norm) -> f64 {
    match norm {
        Norm::L2 => v.iter().map(|a| a * a).sum::<f64>().sqrt(),
        Norm::Linf => v.iter().fold(0.0, |m, a| m.max(a.abs())),
    }
}

/// The output direction u with u^T delta = |delta|_out (|.|_2 for l2; l-inf: the largest |coordinate|; a scalar
/// output c: u = sign(c^T delta) c, and |delta|_out = |c^T delta|).
fn out_dir(delta: &[f64], norm: Norm, c: Option<&[f64]>) -> (f64, Vec<f64>) {
    if let Some(c) = c {
        let v: f64 = c.iter().zip(delta).map(|(a, b)| a * b).sum();
        let s = if v >= 0.0 { 1.0 } else { -1.0 };
        return (v.abs(), c.iter().map(|a| s * a).collect());
    }
    match norm {
        Norm::L2 => {
            let n = norm_in(delta, Norm::L2);
            if n == 0.0 {
                let mut u = vec![0.0; delta.len()];
                u[0] = 1.0;
                return (0.0, u);
            }
            (n, delta.iter().map(|a| a / n).collect())
        }
        Norm::Linf => {
            let (k, v) = delta.iter().enumerate().fold((0, 0.0f64), |b, (i, a)| if a.abs() > b.1.abs() { (i, *a) } else { b });
            let mut u = vec![0.0; delta.len()];
            u[k] = if v >= 0.0 { 1.0 } else { -1.0 };
            (v.abs(), u)
        }
    }
}

/// A normalised ascent step of length `len` along `g` (l2: g / |g|_2; l-inf: sign(g)). None when g = 0.
fn step_along(g: &[f64], norm: Norm, len: f64) -> Option<Vec<f64>> {
    match norm {
        Norm::L2 => {
            let n = norm_in(g, Norm::L2);
            (n > 0.0 && n.is_finite()).then(|| g.iter().map(|a| len * a / n).collect())
        }
        Norm::Linf => g.iter().any(|a| *a != 0.0).then(|| g.iter().map(|a| len * a.signum()).collect()),
    }
}

/// One gradient-ascent start on the difference quotient (see the module docs). Returns the best local norm
/// seen and the point where it was found.
fn ascend(net: &Network, norm: Norm, c: Option<&[f64]>, steps: usize, rng: &mut Rng, sigma: f64) -> Result<(f64, Vec<f64>)> {
    let n = net.input_dim();
    let mut x: Vec<f64> = (0..n).map(|_| sigma * rng.normal()).collect();
    let mut best = local_norm(net, &x, norm, c)?;
    let mut best_x = x.clone();
    let r0 = 0.5 * sigma;
    let dir: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let mut d = step_along(&dir, norm, r0).unwrap_or_else(|| vec![r0; n]);
    let mut eta = 0.1 * sigma;
    let mut stall = 0usize;
    for _ in 0..steps {
        let xd: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a + b).collect();
        let dn = norm_in(&d, norm);
        if !(dn > 0.0) || xd.iter().any(|v| !v.is_finite()) {
            break;
        }
        let fx = net.forward_one(&x)?;
        let fxd = net.forward_one(&xd)?;
        let delta: Vec<f64> = fxd.iter().zip(&fx).map(|(a, b)| a - b).collect();
        let (dout, u) = out_dir(&delta, norm, c);
        let q = dout / dn;
        let (_, gx) = net.vjp(&x, &u)?;
        let (_, gxd) = net.vjp(&xd, &u)?;
        // the local norm at x + d: for a scalar output it is |J^T c| = |gxd| (u = +-c)
        let local = if c.is_some() {
            match norm {
                Norm::L2 => norm_in(&gxd, Norm::L2),
                Norm::Linf => gxd.iter().map(|a| a.abs()).sum(),
            }
        } else {
            local_norm(net, &xd, norm, c)?
        };
        let before = best;
        if local > best {
            best = local;
            best_x = xd.clone();
        }
        // grad_x q and grad_d q
        let gxq: Vec<f64> = gxd.iter().zip(&gx).map(|(a, b)| (a - b) / dn).collect();
        let dnorm_grad: Vec<f64> = match norm {
            Norm::L2 => d.iter().map(|a| a / dn).collect(),
            Norm::Linf => {
                let k = d.iter().enumerate().fold(0, |k, (i, a)| if a.abs() > d[k].abs() { i } else { k });
                let mut g = vec![0.0; n];
                g[k] = d[k].signum();
                g
            }
        };
        let gdq: Vec<f64> = gxd.iter().zip(&dnorm_grad).map(|(a, b)| a / dn - q * b / dn).collect();
        match step_along(&gxq, norm, eta) {
            Some(s) => x.iter_mut().zip(&s).for_each(|(a, b)| *a += b),
            None => x.iter_mut().for_each(|a| *a += 0.1 * eta * rng.normal()), // same region: explore
        }
        if let Some(s) = step_along(&gdq, norm, 0.2 * dn) {
            d.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
        }
        // shrink |d| so that q tends to the local directional derivative
        d.iter_mut().for_each(|a| *a *= 0.97);
        eta *= 0.97;
        stall = if best > before { 0 } else { stall + 1 };
        if stall > 25 || norm_in(&d, norm) < 1e-7 * sigma {
            // restart the step sizes around the best point found so far
            x = best_x.clone();
            let dir: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            d = step_along(&dir, norm, r0).unwrap_or_else(|| vec![r0; n]);
            eta = 0.1 * sigma * (0.5 + rng.next());
            stall = 0;
        }
    }
    Ok((best, best_x))
}

/// The random accept-if-better search of one start.
fn random_search(net: &Network, norm: Norm, c: Option<&[f64]>, steps: usize, rng: &mut Rng, sigma: f64) -> Result<(f64, Vec<f64>)> {
    let n = net.input_dim();
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
}

/// Multi-start search; returns the best local norm found and the point where it was found.
/// `starts` random-search starts (as before) plus `starts` gradient-ascent starts, `steps` steps each.
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
    let starts = starts.max(1);
    let results: Result<Vec<(f64, Vec<f64>)>> = (0..2 * starts)
        .into_par_iter()
        .map(|k| {
            let s = k / 2;
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(s as u64 * 7919 + 1) | 1);
            let sigma = [1.0, 0.1, 10.0][s % 3];
            if k % 2 == 0 {
                random_search(net, norm, c, steps, &mut rng, sigma)
            } else {
                rng.0 = (rng.0 ^ 0xA5A5_5A5A_DEAD_BEEF) | 1;
                ascend(net, norm, c, steps, &mut rng, sigma)
            }
        })
        .collect();
    Ok(results?.into_iter().fold((0.0, vec![0.0; n]), |a, b| if b.0 > a.0 { b } else { a }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Layer;

    /// f(x) = sum_i relu(x_i - 1) + 0.1 x_0 on R^n: the gradient is 1 on each active coordinate, so its l2 norm is
    /// largest (sqrt(n - 1 + 1.1^2)) only where every coordinate exceeds 1, and the l-inf constant of the scalar
    /// output is n + 0.1 there.
    fn orthant_net(n: usize) -> Network {
        let w = Mat::<f64>::identity(n, n);
        let mut v = Mat::<f64>::from_fn(1, n + 1, |_, _| 1.0);
        v[(0, n)] = 0.1;
        let mut first = Mat::<f64>::zeros(n + 1, n);
        for i in 0..n {
            first[(i, i)] = w[(i, i)];
        }
        first[(n, 0)] = 1.0;
        let mut bias = vec![-1.0; n + 1];
        bias[n] = 1e3; // keeps the linear term's unit active on the whole search region
        let layers = vec![Layer::dense(first, Some(bias)).unwrap(), Layer::ReLU, Layer::dense(v, None).unwrap()];
        Network::new(layers, None).unwrap()
    }

    #[test]
    fn combined_search_is_sound_and_never_below_the_random_search() {
        let n = 12;
        let net = orthant_net(n);
        let truth_l2 = ((n - 1) as f64 + 1.1f64 * 1.1).sqrt();
        let c = [1.0];
        // the combined search never exceeds the truth and is at least the random search alone
        let (v, x) = lower_bound(&net, Norm::L2, Some(&c), 4, 300, 7).unwrap();
        assert!(v <= truth_l2 * (1.0 + 1e-12) && (local_norm(&net, &x, Norm::L2, Some(&c)).unwrap() - v).abs() < 1e-12);
        let random_only = (0..4usize)
            .map(|s| {
                let mut rng = Rng(7u64.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(s as u64 * 7919 + 1) | 1);
                random_search(&net, Norm::L2, Some(&c), 300, &mut rng, [1.0, 0.1, 10.0][s % 3]).unwrap().0
            })
            .fold(0.0, f64::max);
        assert!(v >= random_only);
    }

    #[test]
    fn ascent_on_full_outputs_and_smooth_activations_stays_below_the_truth() {
        // tanh network with orthogonal-ish weights: every local norm is <= the product of spectral norms
        let w1 = Mat::from_fn(3, 3, |i, j| [[0.6, -0.8, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]][i][j]);
        let w2 = Mat::from_fn(2, 3, |i, j| [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]][i][j]);
        let net = Network::new(vec![Layer::dense(w1, None).unwrap(), Layer::Tanh, Layer::dense(w2, None).unwrap()], None).unwrap();
        let (v, _) = lower_bound(&net, Norm::L2, None, 4, 200, 3).unwrap();
        // sup = 2 (at the origin tanh' = 1)
        assert!(v <= 2.0 * (1.0 + 1e-12) && v > 2.0 * (1.0 - 1e-4), "{v}");
        // the ascent alone, from far out (|x| ~ 10, where tanh' ~ 1e-8), climbs the smooth local norm to it
        let mut rng = Rng(0x2468_ace1);
        let (a, _) = ascend(&net, Norm::L2, None, 400, &mut rng, 10.0).unwrap();
        assert!(a <= 2.0 * (1.0 + 1e-12) && a > 2.0 * (1.0 - 1e-5), "{a}");
    }
}
