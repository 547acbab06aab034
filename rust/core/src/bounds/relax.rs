//! Sound linear relaxations of each activation over an input box [l, u].
//!
//! For every output unit k a relaxation gives a lower and an upper affine function of the layer's
//! inputs that enclose the activation for every input in the box. Element-wise activations use one
//! input each ([`Relax::Diag`]); MaxMin pairs use the two inputs of the pair ([`Relax::Pairs`]).

use crate::error::Result;
use crate::network::{sigmoid, Layer, Pairing};

/// How lower ReLU-like slopes are chosen where the unit is unstable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Slopes {
    /// 1 when u >= -l, else 0 (CROWN's adaptive choice; DeepPoly's area heuristic).
    Adaptive,
    /// A fixed slope in [0, 1] for every unstable unit (0: DeepPoly-zero, 1: identity).
    Fixed(f64),
}

/// A relaxation of one activation layer.
#[derive(Clone, Debug)]
pub enum Relax {
    /// Output k lies in [ls[k] x_k + li[k], us[k] x_k + ui[k]].
    Diag { ls: Vec<f64>, li: Vec<f64>, us: Vec<f64>, ui: Vec<f64> },
    /// MaxMin: for each pair (a, b), output a = max, output b = min, each bounded by
    /// c0 x_a + c1 x_b + c2 from below (lo) and above (up).
    Pairs { pairs: Vec<PairRelax> },
}

#[derive(Clone, Copy, Debug)]
pub struct PairRelax {
    pub a: usize,
    pub b: usize,
    pub lo_a: [f64; 3],
    pub up_a: [f64; 3],
    pub lo_b: [f64; 3],
    pub up_b: [f64; 3],
}

fn relu_like(l: f64, u: f64, a: f64, slopes: Slopes) -> (f64, f64, f64, f64) {
    // f(x) = x for x > 0, a x otherwise; returns (ls, li, us, ui).
    if l >= 0.0 {
        return (1.0, 0.0, 1.0, 0.0);
    }
    if u <= 0.0 {
        return (a, 0.0, a, 0.0);
    }
    let s = (u - a * l) / (u - l);
    let chord_i = u - s * u;
    let (lo, hi) = (a.min(1.0), a.max(1.0));
    let alpha = match slopes {
        Slopes::Adaptive => {
            if u >= -l {
                hi
            } else {
                lo
            }
        }
        Slopes::Fixed(t) => lo + t.clamp(0.0, 1.0) * (hi - lo),
    };
    if a <= 1.0 {
        // convex: chord above, any line alpha x with alpha in [a, 1] below
        (alpha, 0.0, s, chord_i)
    } else {
        // concave: chord below, alpha x with alpha in [1, a] above
        (s, chord_i, alpha, 0.0)
    }
}

/// Lines of slope `s` enclosing a smooth sigmoid-shaped `f` on [l, u]: intercepts are the min and
/// max of f(x) - s x, attained at an end point or where f'(x) = s (`crit` lists those points).
fn smooth(l: f64, u: f64, f: impl Fn(f64) -> f64, crit: impl Fn(f64) -> Vec<f64>) -> (f64, f64, f64, f64) {
    let (fl, fu) = (f(l), f(u));
    if u - l <= 1e-9 || (u - l).is_nan() {
        let pad = 1e-12 * (1.0 + fl.abs().max(fu.abs()));
        return (0.0, fl.min(fu) - pad, 0.0, fl.max(fu) + pad);
    }
    let s = (fu - fl) / (u - l);
    let mut lo = (fl - s * l).min(fu - s * u);
    let mut hi = (fl - s * l).max(fu - s * u);
    for x in crit(s) {
        if x > l && x < u {
            let g = f(x) - s * x;
            lo = lo.min(g);
            hi = hi.max(g);
        }
    }
    let pad = 1e-12 * (1.0 + lo.abs().max(hi.abs()) + s.abs() * l.abs().max(u.abs()));
    (s, lo - pad, s, hi + pad)
}

fn tanh_crit(s: f64) -> Vec<f64> {
    if !(s > 0.0 && s < 1.0) {
        return vec![];
    }
    let t = (1.0 - s).sqrt().min(1.0 - 1e-16);
    let x = t.atanh();
    vec![x, -x]
}


fn sigmoid_crit(s: f64) -> Vec<f64> {
    if !(s > 0.0 && s < 0.25) {
        return vec![];
    }
    let r = (1.0 - 4.0 * s).max(0.0).sqrt();
    [(1.0 + r) / 2.0, (1.0 - r) / 2.0]
        .iter()
        .filter(|&&p| p > 0.0 && p < 1.0)
        .map(|&p| (p / (1.0 - p)).ln())
        .collect()
}

/// The relaxation of `layer` (an activation) for inputs in [l, u].
pub fn relax(layer: &Layer, l: &[f64], u: &[f64], slopes: Slopes) -> Result<Relax> {
    let n = l.len();
    let mut ls = vec![0.0; n];
    let mut li = vec![0.0; n];
    let mut us = vec![0.0; n];
    let mut ui = vec![0.0; n];
    let mut put = |k: usize, r: (f64, f64, f64, f64)| {
        ls[k] = r.0;
        li[k] = r.1;
        us[k] = r.2;
        ui[k] = r.3;
    };
    match *layer {
        Layer::Implicit(_) => unreachable!("not an activation"),
        Layer::ReLU => (0..n).for_each(|k| put(k, relu_like(l[k], u[k], 0.0, slopes))),
        Layer::LeakyReLU { slope } => (0..n).for_each(|k| put(k, relu_like(l[k], u[k], slope, slopes))),
        Layer::Tanh => (0..n).for_each(|k| put(k, smooth(l[k], u[k], f64::tanh, tanh_crit))),
        Layer::Sigmoid => (0..n).for_each(|k| put(k, smooth(l[k], u[k], sigmoid, sigmoid_crit))),
        Layer::GroupSort { group_size: 2, pairing } => return Ok(maxmin(l, u, pairing, slopes)),
        Layer::GroupSort { .. } | Layer::Householder { .. } => {
            // Constant bounds only: the interval enclosure of each output.
            let (lo, hi) = act_interval(layer, l, u);
            (0..n).for_each(|k| put(k, (0.0, lo[k], 0.0, hi[k])));
        }
        Layer::Dense(_) | Layer::Residual { .. } => unreachable!("not an activation"),
    }
    Ok(Relax::Diag { ls, li, us, ui })
}

fn maxmin(l: &[f64], u: &[f64], pairing: Pairing, slopes: Slopes) -> Relax {
    let n = l.len();
    let pairs = (0..n / 2)
        .map(|j| {
            let (a, b) = (pairing.member(j, 0, n, 2), pairing.member(j, 1, n, 2));
            let (la, ua, lb, ub) = (l[a], u[a], l[b], u[b]);
            let id_a = [1.0, 0.0, 0.0];
            let id_b = [0.0, 1.0, 0.0];
            if la >= ub {
                return PairRelax { a, b, lo_a: id_a, up_a: id_a, lo_b: id_b, up_b: id_b };
            }
            if lb >= ua {
                return PairRelax { a, b, lo_a: id_b, up_a: id_b, lo_b: id_a, up_b: id_a };
            }
            // max = b + relu(a - b) with a - b in [ld, ud], ld < 0 < ud
            let (ld, ud) = (la - ub, ua - lb);
            let k = ud / (ud - ld);
            let alpha = match slopes {
                Slopes::Adaptive => {
                    if ud >= -ld {
                        1.0
                    } else {
                        0.0
                    }
                }
                Slopes::Fixed(t) => t.clamp(0.0, 1.0),
            };
            let up_a = [k, 1.0 - k, -k * ld];
            let lo_a = [alpha, 1.0 - alpha, 0.0];
            // min = a + b - max
            let lo_b = [1.0 - k, k, k * ld];
            let up_b = [1.0 - alpha, alpha, 0.0];
            PairRelax { a, b, lo_a, up_a, lo_b, up_b }
        })
        .collect();
    Relax::Pairs { pairs }
}

/// The interval enclosure of an activation's output for inputs in [l, u].
pub fn act_interval(layer: &Layer, l: &[f64], u: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = l.len();
    match *layer {
        Layer::Implicit(_) => unreachable!("not an activation"),
        Layer::ReLU => (l.iter().map(|v| v.max(0.0)).collect(), u.iter().map(|v| v.max(0.0)).collect()),
        Layer::LeakyReLU { slope } => {
            let f = |v: f64| if v > 0.0 { v } else { slope * v };
            let (mut lo, mut hi) = (vec![0.0; n], vec![0.0; n]);
            for k in 0..n {
                let (a, b) = (f(l[k]), f(u[k]));
                lo[k] = a.min(b);
                hi[k] = a.max(b);
                if l[k] < 0.0 && u[k] > 0.0 {
                    lo[k] = lo[k].min(0.0);
                }
            }
            (lo, hi)
        }
        Layer::Tanh => (l.iter().map(|v| v.tanh()).collect(), u.iter().map(|v| v.tanh()).collect()),
        Layer::Sigmoid => (l.iter().map(|&v| sigmoid(v)).collect(), u.iter().map(|&v| sigmoid(v)).collect()),
        Layer::GroupSort { group_size: g, pairing } => {
            let (mut lo, mut hi) = (l.to_vec(), u.to_vec());
            for grp in pairing.groups(n, g) {
                let mut a: Vec<f64> = grp.iter().map(|&i| l[i]).collect();
                let mut b: Vec<f64> = grp.iter().map(|&i| u[i]).collect();
                a.sort_by(|p, q| q.total_cmp(p));
                b.sort_by(|p, q| q.total_cmp(p));
                for (k, &i) in grp.iter().enumerate() {
                    lo[i] = a[k];
                    hi[i] = b[k];
                }
            }
            (lo, hi)
        }
        Layer::Householder { theta, pairing } => {
            let (v0, v1) = ((theta / 2.0).sin(), -(theta / 2.0).cos());
            let r = [1.0 - 2.0 * v0 * v0, -2.0 * v0 * v1, 1.0 - 2.0 * v1 * v1];
            let (mut lo, mut hi) = (l.to_vec(), u.to_vec());
            let iv = |c0: f64, c1: f64, a: usize, b: usize| {
                let t0 = if c0 >= 0.0 { (c0 * l[a], c0 * u[a]) } else { (c0 * u[a], c0 * l[a]) };
                let t1 = if c1 >= 0.0 { (c1 * l[b], c1 * u[b]) } else { (c1 * u[b], c1 * l[b]) };
                (t0.0 + t1.0, t0.1 + t1.1)
            };
            for j in 0..n / 2 {
                let (a, b) = (pairing.member(j, 0, n, 2), pairing.member(j, 1, n, 2));
                let (ra, rb) = (iv(r[0], r[1], a, b), iv(r[1], r[2], a, b));
                lo[a] = l[a].min(ra.0);
                hi[a] = u[a].max(ra.1);
                lo[b] = l[b].min(rb.0);
                hi[b] = u[b].max(rb.1);
            }
            (lo, hi)
        }
        Layer::Dense(_) | Layer::Residual { .. } => unreachable!("not an activation"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_diag(layer: &Layer, f: impl Fn(f64) -> f64, l: f64, u: f64) {
        let r = relax(layer, &[l], &[u], Slopes::Adaptive).unwrap();
        let Relax::Diag { ls, li, us, ui } = r else { panic!() };
        for i in 0..=200 {
            let x = l + (u - l) * i as f64 / 200.0;
            let y = f(x);
            assert!(ls[0] * x + li[0] <= y + 1e-12, "{:?} lower fails at {x}", layer.kind());
            assert!(us[0] * x + ui[0] >= y - 1e-12, "{:?} upper fails at {x}", layer.kind());
        }
    }

    #[test]
    fn relaxations_enclose_activations() {
        for &(l, u) in &[(-2.0, 3.0), (-3.0, 1.0), (0.5, 2.0), (-4.0, -0.1), (-0.3, 0.2), (-8.0, 8.0), (1.0, 1.0)] {
            check_diag(&Layer::ReLU, |x| x.max(0.0), l, u);
            check_diag(&Layer::LeakyReLU { slope: 0.1 }, |x| if x > 0.0 { x } else { 0.1 * x }, l, u);
            check_diag(&Layer::LeakyReLU { slope: 2.0 }, |x| if x > 0.0 { x } else { 2.0 * x }, l, u);
            check_diag(&Layer::LeakyReLU { slope: -0.5 }, |x| if x > 0.0 { x } else { -0.5 * x }, l, u);
            check_diag(&Layer::Tanh, f64::tanh, l, u);
            check_diag(&Layer::Sigmoid, sigmoid, l, u);
        }
    }

    #[test]
    fn maxmin_relaxation_encloses() {
        let (l, u) = ([-1.0, -0.5], [2.0, 1.5]);
        let Relax::Pairs { pairs } = relax(&Layer::maxmin(Pairing::Adjacent), &l, &u, Slopes::Adaptive).unwrap() else {
            panic!()
        };
        let p = pairs[0];
        let ev = |c: [f64; 3], a: f64, b: f64| c[0] * a + c[1] * b + c[2];
        for i in 0..=40 {
            for j in 0..=40 {
                let a = l[0] + (u[0] - l[0]) * i as f64 / 40.0;
                let b = l[1] + (u[1] - l[1]) * j as f64 / 40.0;
                let (mx, mn) = (a.max(b), a.min(b));
                assert!(ev(p.lo_a, a, b) <= mx + 1e-12 && ev(p.up_a, a, b) >= mx - 1e-12);
                assert!(ev(p.lo_b, a, b) <= mn + 1e-12 && ev(p.up_b, a, b) >= mn - 1e-12);
            }
        }
    }
}
