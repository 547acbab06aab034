//! Input gradients of a network: vector-Jacobian products and full Jacobians, in float64.
//!
//! At a kink (ReLU at 0, a tie in GroupSort, v.z = 0 in Householder) the derivative of the branch the
//! forward pass took is used, which is an element of the Clarke generalised gradient.

use faer::Mat;
use rayon::prelude::*;

use crate::error::{invalid_err, shape_err, Result};
use crate::network::{Dense, Layer, Network, Pairing};

/// What the backward pass needs to remember about one layer's forward evaluation.
enum Tape {
    Dense,
    /// Element-wise activation: the derivative at each unit.
    Diag(Vec<f64>),
    /// GroupSort: `src[k]` is the input unit whose value landed at output unit k.
    Perm(Vec<usize>),
    /// Householder: for each pair, whether the reflection was applied.
    Reflect { flags: Vec<bool>, r: [f64; 3], pairing: Pairing },
    Residual(Vec<Tape>),
    /// Implicit layer: its local Jacobian dz/dx = (I - J W)^{-1} J U (m, n), J the activation's Jacobian at v*.
    Implicit(Mat<f64>),
}

/// W x + b of one vector.
fn dense_apply(d: &Dense, h: &[f64]) -> Vec<f64> {
    let w = d.weight();
    let mut y = d.bias().to_vec();
    for (j, &xj) in h.iter().enumerate() {
        if xj != 0.0 {
            for (i, yi) in y.iter_mut().enumerate() {
                *yi += w[(i, j)] * xj;
            }
        }
    }
    y
}

/// W^T g of one vector.
fn dense_apply_t(d: &Dense, g: &[f64]) -> Vec<f64> {
    let w = d.weight();
    (0..w.ncols()).map(|j| (0..w.nrows()).map(|i| w[(i, j)] * g[i]).sum()).collect()
}

fn forward_tape(layers: &[Layer], mut h: Vec<f64>, tape: &mut Vec<Tape>) -> Result<Vec<f64>> {
    for layer in layers {
        h = match layer {
            Layer::Dense(d) => {
                tape.push(Tape::Dense);
                dense_apply(d, &h)
            }
            Layer::ReLU => {
                tape.push(Tape::Diag(h.iter().map(|&v| if v > 0.0 { 1.0 } else { 0.0 }).collect()));
                h.into_iter().map(|v| v.max(0.0)).collect()
            }
            Layer::LeakyReLU { slope } => {
                tape.push(Tape::Diag(h.iter().map(|&v| if v > 0.0 { 1.0 } else { *slope }).collect()));
                h.into_iter().map(|v| if v > 0.0 { v } else { slope * v }).collect()
            }
            Layer::Tanh => {
                let y: Vec<f64> = h.iter().map(|v| v.tanh()).collect();
                tape.push(Tape::Diag(y.iter().map(|t| 1.0 - t * t).collect()));
                y
            }
            Layer::Sigmoid => {
                let y: Vec<f64> = h.iter().map(|&v| crate::network::sigmoid(v)).collect();
                tape.push(Tape::Diag(y.iter().map(|s| s * (1.0 - s)).collect()));
                y
            }
            Layer::GroupSort { group_size, pairing } => {
                let n = h.len();
                let g = *group_size;
                let mut src = vec![0usize; n];
                let mut y = h.clone();
                let mut idx: Vec<usize> = Vec::with_capacity(g);
                for j in 0..n / g {
                    idx.clear();
                    idx.extend((0..g).map(|k| pairing.member(j, k, n, g)));
                    let mut order = idx.clone();
                    // Stable descending sort: ties keep the input order, as the forward pass does.
                    order.sort_by(|&a, &b| h[b].partial_cmp(&h[a]).unwrap_or(std::cmp::Ordering::Equal));
                    for (k, &dst) in idx.iter().enumerate() {
                        src[dst] = order[k];
                        y[dst] = h[order[k]];
                    }
                }
                tape.push(Tape::Perm(src));
                y
            }
            Layer::Householder { theta, pairing } => {
                let n = h.len();
                let (v0, v1) = ((theta / 2.0).sin(), -(theta / 2.0).cos());
                let r = [1.0 - 2.0 * v0 * v0, -2.0 * v0 * v1, 1.0 - 2.0 * v1 * v1];
                let mut flags = vec![false; n / 2];
                let mut y = h.clone();
                for (j, flag) in flags.iter_mut().enumerate() {
                    let (a, b) = (pairing.member(j, 0, n, 2), pairing.member(j, 1, n, 2));
                    if !(v0 * h[a] + v1 * h[b] > 0.0) {
                        *flag = true;
                        y[a] = r[0] * h[a] + r[1] * h[b];
                        y[b] = r[1] * h[a] + r[2] * h[b];
                    }
                }
                tape.push(Tape::Reflect { flags, r, pairing: *pairing });
                y
            }
            Layer::Residual { inner, skip } => {
                let mut sub = Vec::new();
                let f = forward_tape(inner, h.clone(), &mut sub)?;
                tape.push(Tape::Residual(sub));
                let sh = match skip {
                    None => h,
                    Some(s) => dense_apply(s, &h),
                };
                sh.iter().zip(f).map(|(a, b)| a + b).collect()
            }
            Layer::Implicit(imp) => {
                let (z, jac) = implicit_tape(imp, &h)?;
                tape.push(Tape::Implicit(jac));
                z
            }
        };
    }
    Ok(h)
}

/// The equilibrium z at input `x` and the layer's Jacobian by the implicit function theorem:
/// dz = J (W dz + U dx) with J the activation's Jacobian at v* = W z + U x + b (the branch the forward pass takes,
/// a Clarke generalised Jacobian at kinks), so dz/dx = (I - J W)^{-1} J U. I - J W is invertible under either
/// well-posedness certificate (contraction: ||J W|| < 1; monotone: J diagonal in [0, 1] and I - sym(W) > 0).
fn implicit_tape(imp: &crate::network::Implicit, x: &[f64]) -> Result<(Vec<f64>, Mat<f64>)> {
    use faer::prelude::*;
    let (m, n) = (imp.out_dim(), imp.in_dim());
    let xm = faer::MatRef::from_row_major_slice(x, 1, n);
    let zm = imp.solve(xm)?;
    let z: Vec<f64> = (0..m).map(|j| zm[(0, j)]).collect();
    let (w, u) = (imp.weight(), imp.input_weight());
    let v: Vec<f64> = (0..m)
        .map(|i| imp.bias()[i] + (0..m).map(|j| w[(i, j)] * z[j]).sum::<f64>() + (0..n).map(|j| u[(i, j)] * x[j]).sum::<f64>())
        .collect();
    let act = std::slice::from_ref(imp.activation());
    let mut at = Vec::new();
    forward_tape(act, v, &mut at)?;
    // rows of the activation's Jacobian: e_i^T J
    let rows: Vec<Vec<f64>> = (0..m)
        .map(|i| {
            let mut e = vec![0.0; m];
            e[i] = 1.0;
            backward(act, &at, e)
        })
        .collect();
    let jw = Mat::from_fn(m, m, |i, j| if i == j { 1.0 } else { 0.0 } - (0..m).map(|k| rows[i][k] * w[(k, j)]).sum::<f64>());
    let ju = Mat::from_fn(m, n, |i, j| (0..m).map(|k| rows[i][k] * u[(k, j)]).sum::<f64>());
    let jac = jw.partial_piv_lu().solve(ju.as_ref());
    if (0..n).any(|j| (0..m).any(|i| !jac[(i, j)].is_finite())) {
        return Err(crate::error::Error::Solver("Implicit: I - J W is singular at this point (Jacobian not finite)".into()));
    }
    Ok((z, jac))
}

fn backward(layers: &[Layer], tape: &[Tape], mut g: Vec<f64>) -> Vec<f64> {
    for (layer, t) in layers.iter().zip(tape).rev() {
        g = match (layer, t) {
            (Layer::Dense(d), Tape::Dense) => dense_apply_t(d, &g),
            (_, Tape::Diag(dv)) => g.iter().zip(dv).map(|(a, b)| a * b).collect(),
            (_, Tape::Perm(src)) => {
                let mut out = vec![0.0; g.len()];
                for (k, &s) in src.iter().enumerate() {
                    out[s] += g[k];
                }
                out
            }
            (_, Tape::Reflect { flags, r, pairing }) => {
                let n = g.len();
                let mut out = g.clone();
                for (j, &f) in flags.iter().enumerate() {
                    if f {
                        let (a, b) = (pairing.member(j, 0, n, 2), pairing.member(j, 1, n, 2));
                        // The reflection is symmetric, so its transpose is itself.
                        out[a] = r[0] * g[a] + r[1] * g[b];
                        out[b] = r[1] * g[a] + r[2] * g[b];
                    }
                }
                out
            }
            (Layer::Residual { inner, skip }, Tape::Residual(sub)) => {
                let gi = backward(inner, sub, g.clone());
                let sg = match skip {
                    None => g,
                    Some(s) => dense_apply_t(s, &g),
                };
                sg.iter().zip(gi).map(|(a, b)| a + b).collect()
            }
            (Layer::Implicit(_), Tape::Implicit(jac)) => {
                (0..jac.ncols()).map(|j| (0..jac.nrows()).map(|i| jac[(i, j)] * g[i]).sum()).collect()
            }
            _ => unreachable!("tape does not match the layers"),
        };
    }
    g
}

impl Network {
    fn check_point(&self, x: &[f64]) -> Result<()> {
        if x.len() != self.input_dim() {
            return Err(shape_err!("x has length {} but the network expects {}", x.len(), self.input_dim()));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(invalid_err!("x[{i}] is {} (inputs must be finite)", x[i]));
        }
        Ok(())
    }

    /// f(x) and the vector-Jacobian product c^T J_f(x) (the gradient of x -> c^T f(x)).
    pub fn vjp(&self, x: &[f64], c: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
        self.check_point(x)?;
        if c.len() != self.output_dim() {
            return Err(shape_err!("c has length {} but the network has {} outputs", c.len(), self.output_dim()));
        }
        let mut tape = Vec::with_capacity(self.layers().len());
        let y = forward_tape(self.layers(), x.to_vec(), &mut tape)?;
        Ok((y, backward(self.layers(), &tape, c.to_vec())))
    }

    /// The Jacobian J_f(x), shape (output_dim, input_dim).
    pub fn jacobian(&self, x: &[f64]) -> Result<Mat<f64>> {
        self.check_point(x)?;
        let mut tape = Vec::with_capacity(self.layers().len());
        forward_tape(self.layers(), x.to_vec(), &mut tape)?;
        let m = self.output_dim();
        let rows: Vec<Vec<f64>> = (0..m)
            .map(|i| {
                let mut e = vec![0.0; m];
                e[i] = 1.0;
                backward(self.layers(), &tape, e)
            })
            .collect();
        Ok(Mat::from_fn(m, self.input_dim(), |i, j| rows[i][j]))
    }

    /// Gradients of x -> c_i^T f(x) at each row x_i of `xs` (batch, input_dim), in parallel.
    /// `cs` is (batch, output_dim), or (1, output_dim) to use the same c for every row.
    pub fn vjp_batch(&self, xs: &Mat<f64>, cs: &Mat<f64>) -> Result<(Mat<f64>, Mat<f64>)> {
        let b = xs.nrows();
        if cs.nrows() != b && cs.nrows() != 1 {
            return Err(shape_err!("c has {} rows; expected 1 or {b}", cs.nrows()));
        }
        let out: Result<Vec<(Vec<f64>, Vec<f64>)>> = (0..b)
            .into_par_iter()
            .map(|i| {
                let x: Vec<f64> = (0..xs.ncols()).map(|j| xs[(i, j)]).collect();
                let ci = if cs.nrows() == 1 { 0 } else { i };
                let c: Vec<f64> = (0..cs.ncols()).map(|j| cs[(ci, j)]).collect();
                self.vjp(&x, &c)
            })
            .collect();
        let out = out?;
        let ys = Mat::from_fn(b, self.output_dim(), |i, j| out[i].0[j]);
        let gs = Mat::from_fn(b, self.input_dim(), |i, j| out[i].1[j]);
        Ok((ys, gs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Pairing;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    fn net(seed: &mut u64) -> Network {
        let d = |m: usize, n: usize, s: &mut u64| {
            Layer::dense(Mat::from_fn(m, n, |_, _| lcg(s)), Some((0..m).map(|_| lcg(s)).collect())).unwrap()
        };
        let layers = vec![
            d(6, 3, seed),
            Layer::Tanh,
            d(6, 6, seed),
            Layer::GroupSort { group_size: 3, pairing: Pairing::Halves },
            Layer::residual(vec![d(6, 6, seed), Layer::Sigmoid], None).unwrap(),
            Layer::residual(vec![d(6, 6, seed), Layer::Tanh], Some(Mat::from_fn(6, 6, |_, _| lcg(seed)))).unwrap(),
            Layer::Householder { theta: 0.7, pairing: Pairing::Adjacent },
            d(6, 6, seed),
            Layer::LeakyReLU { slope: 0.1 },
            d(2, 6, seed),
        ];
        Network::new(layers, None).unwrap()
    }

    #[test]
    fn jacobian_matches_central_differences() {
        let mut seed = 7;
        for _ in 0..20 {
            let n = net(&mut seed);
            let x: Vec<f64> = (0..3).map(|_| lcg(&mut seed) * 4.0).collect();
            let j = n.jacobian(&x).unwrap();
            let h = 1e-6;
            for k in 0..3 {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[k] += h;
                xm[k] -= h;
                let (yp, ym) = (n.forward_one(&xp).unwrap(), n.forward_one(&xm).unwrap());
                for i in 0..2 {
                    let fd = (yp[i] - ym[i]) / (2.0 * h);
                    assert!((fd - j[(i, k)]).abs() < 1e-5 * (1.0 + fd.abs()), "J[{i},{k}] = {} vs fd {fd}", j[(i, k)]);
                }
            }
        }
    }

    #[test]
    fn vjp_value_is_the_forward_pass() {
        let mut seed = 11;
        let n = net(&mut seed);
        let x = [0.3, -0.2, 0.9];
        let (y, _) = n.vjp(&x, &[1.0, 0.0]).unwrap();
        let f = n.forward_one(&x).unwrap();
        for (a, b) in y.iter().zip(&f) {
            assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
