//! The pieces of the l-inf adversarial convex program (Bai, Gautam & Sojoudi 2022, Section 4).
//!
//! With the activation patterns held over the ball ||delta_f||_inf <= eps (the intercept coordinate is not
//! perturbed), the network is linear on the ball of each training sample: its output is f_k + delta^T g_k with
//! g_k = sum_j D_kj (v_j - w_j)_f. Holding the pattern means (2D_j - I) X u_j >= eps ||u_j,f||_1 row-wise, and the
//! worst case of the loss over the ball is, per sample,
//!   squared:  0.5 (|f - y| + eps ||g||_1)^2,   hinge: max(0, 1 - (y f - eps ||g||_1)),
//!   logistic: log(1 + exp(-(y f - eps ||g||_1))).
//! This module holds the robust loss, its proximal map in (f, g) jointly, and the Euclidean projection onto the
//! cone {(s, t) : s_k >= eps ||t_f||_1 for all k}; [`super::robust_admm`] assembles them into an ADMM.
//! Each reduces to a scalar monotone equation solved by a safeguarded secant/bisection ([`root_increasing`]),
//! exact on the piecewise-linear pieces.

use super::admm::Loss;
use crate::network::sigmoid;

/// Soft threshold sign(v) max(|v| - t, 0).
#[inline]
pub(crate) fn soft(v: f64, t: f64) -> f64 {
    v.signum() * (v.abs() - t).max(0.0)
}

fn soft_l1(b: &[f64], t: f64) -> f64 {
    b.iter().map(|&v| (v.abs() - t).max(0.0)).sum()
}

/// The root of a continuous non-decreasing `h` on [lo, hi] with h(lo) <= 0 <= h(hi): secant steps inside the
/// bracket alternated with bisections (so the bracket at least halves every two steps); exact on a linear piece.
pub(crate) fn root_increasing(h: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64, scale: f64) -> f64 {
    let (mut hlo, mut hhi) = (h(lo), h(hi));
    if hlo >= 0.0 {
        return lo;
    }
    if hhi <= 0.0 {
        return hi;
    }
    let tol = 1e-15 * scale.max(f64::MIN_POSITIVE);
    for it in 0..300 {
        let sec = lo - hlo * (hi - lo) / (hhi - hlo);
        let x = if it % 2 == 0 && sec > lo && sec < hi { sec } else { 0.5 * (lo + hi) };
        if x <= lo || x >= hi {
            break;
        }
        let hx = h(x);
        if hx.abs() <= tol {
            return x;
        }
        if hx < 0.0 {
            lo = x;
            hlo = hx;
        } else {
            hi = x;
            hhi = hx;
        }
    }
    // Linear interpolation inside the final bracket.
    let x = lo - hlo * (hi - lo) / (hhi - hlo);
    if x.is_finite() { x.clamp(lo, hi) } else { 0.5 * (lo + hi) }
}

/// Worst-case loss over the ball of one sample with prediction f, label/target y and gradient l1 norm g1.
pub(crate) fn robust_loss(loss: Loss, f: f64, y: f64, eps_g1: f64) -> f64 {
    match loss {
        Loss::Squared => 0.5 * ((f - y).abs() + eps_g1).powi(2),
        Loss::Hinge => (1.0 - (y * f - eps_g1)).max(0.0),
        Loss::Logistic => {
            let z = -(y * f - eps_g1);
            if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() }
        }
    }
}

/// argmin over (q, r) of t * robust_loss(q, y, eps ||r||_1) + 0.5 (q - a)^2 + 0.5 ||r - b||^2. Writes r into `b`
/// (in place) and returns q.
pub(crate) fn robust_prox(loss: Loss, a: f64, b: &mut [f64], y: f64, t: f64, eps: f64) -> f64 {
    match loss {
        Loss::Squared => {
            // With lam = t (|e| + eps ||r||_1): e = soft(a - y, lam), r = soft(b, eps lam); lam is the root of
            // lam - t (|soft(a - y, lam)| + eps ||soft(b, eps lam)||_1), increasing in lam.
            let al = a - y;
            let hi = t * (al.abs() + eps * b.iter().map(|v| v.abs()).sum::<f64>());
            let h = |lam: f64| lam - t * ((al.abs() - lam).max(0.0) + eps * soft_l1(b, eps * lam));
            let lam = root_increasing(h, 0.0, hi, hi.max(1.0));
            b.iter_mut().for_each(|v| *v = soft(*v, eps * lam));
            y + soft(al, lam)
        }
        Loss::Hinge | Loss::Logistic => {
            // z = y q, al = y a. With psi = -phi'(margin) in [0, 1]: z = al + t psi, r = soft(b, eps t psi), and the
            // margin m(psi) = z - eps ||r||_1 is increasing in psi.
            let al = y * a;
            let m = |psi: f64| al + t * psi - eps * soft_l1(b, eps * t * psi);
            let psi = if loss == Loss::Hinge {
                if m(0.0) >= 1.0 {
                    0.0
                } else if m(1.0) <= 1.0 {
                    1.0
                } else {
                    root_increasing(|p| m(p) - 1.0, 0.0, 1.0, 1.0)
                }
            } else {
                root_increasing(|p| p - sigmoid(-m(p)), 0.0, 1.0, 1.0)
            };
            b.iter_mut().for_each(|v| *v = soft(*v, eps * t * psi));
            y * (al + t * psi)
        }
    }
}

/// Euclidean projection of (a, b) onto {(s, t) : s_k >= eps ||t||_1 for all k} (a: length n, b: the perturbable
/// coordinates), in place. For a level tau = eps ||t||_1 the best s is max(a, tau) and the best t the projection
/// of b onto the l1 ball of radius tau / eps, i.e. soft(b, lam); lam is the root of
/// lam - eps sum_k (eps ||soft(b, lam)||_1 - a_k)_+ (increasing). eps = 0 gives s = max(a, 0), t = b.
pub(crate) fn project_l1_cone(a: &mut [f64], b: &mut [f64], eps: f64) {
    let bmax = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let h = |lam: f64| {
        let tau = eps * soft_l1(b, lam);
        lam - eps * a.iter().map(|&ak| (tau - ak).max(0.0)).sum::<f64>()
    };
    let lam = if h(bmax) <= 0.0 {
        bmax
    } else {
        root_increasing(h, 0.0, bmax, bmax)
    };
    b.iter_mut().for_each(|v| *v = soft(*v, lam));
    let tau = eps * b.iter().map(|v| v.abs()).sum::<f64>();
    a.iter_mut().for_each(|v| *v = v.max(tau));
}
