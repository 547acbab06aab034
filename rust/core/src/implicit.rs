//! Implicit (equilibrium) layers: the output is the equilibrium z of z = act(W z + U x + b).
//!
//! Well-posedness (one equilibrium for every x) is certified when the layer is built, by one of
//! - contraction: beta ||W||_2 < 1 (beta: the activation's l2 Lipschitz constant; grouped activations are
//!   1-Lipschitz). z -> act(W z + c) is then a contraction; the forward pass is Picard iteration.
//! - monotone (Winston & Kolter 2020): act element-wise, nondecreasing with slope in [0, 1] (ReLU, LeakyReLU with
//!   slope in [0, 1], Tanh, Sigmoid), so act = prox_f of a convex f, and I - (W + W^T)/2 >= m I with m > 0. The
//!   equilibrium is then the zero of the strongly monotone inclusion 0 in (I - W) z - c + df(z); the forward pass is
//!   Peaceman-Rachford splitting with step 1 (whose second resolvent is act itself):
//!   z_A = (2I - W)^{-1} (u + c), v = 2 z_A - u, z_B = act(v), u <- 2 z_B - v, and z_B -> z.
//!   Its contraction factor is at most sqrt(1 - 4m / (1 + 2m + ||I - W||^2)) (the reflected resolvent of the
//!   linear part: |(I - A) y|^2 / |(I + A) y|^2 = 1 - 4 t / (1 + 2t + s), t = y.Ay/|y|^2 >= m, s <= ||A||^2).
//! - weighted monotone (Revay, Wang & Manchester 2020), with a diagonal Lambda > 0 given by the caller (LBEN models
//!   carry one): the same activations and 2 Lambda - Lambda W - W^T Lambda > 0. With D = Lambda^{1/2} and
//!   z~ = D z the layer is z~ = act~(W~ z~ + D c), W~ = D W D^{-1}, act~_i(v) = d_i act(v / d_i) (still monotone
//!   with slope in [0, 1]), and I - (W~ + W~^T)/2 = D^{-1} (Lambda - (Lambda W + W^T Lambda)/2) D^{-1} > 0: the
//!   monotone case in the scaled variables, solved there by the same splitting.
//! Both numbers are bounds with floating-point guards (a rounded-up spectral norm, a smallest eigenvalue minus its
//! rounding margin), so a layer accepted here is well-posed in exact arithmetic.
//!
//! Every solve stops on the fixed-point residual ||z - act(W z + U x + b)||_inf <= 8 (m + n + 2) eps * scale
//! (scale = ||W||_inf ||z||_inf + ||U||_inf ||x||_inf + ||b||_inf + ||z||_inf, per row), checked on the returned z,
//! with an iteration cap derived from the guaranteed rate; a solve that does not converge is an error. The solve
//! runs in float64 whatever the caller's precision (float32 inputs are widened and the result rounded back).

use faer::linalg::matmul::matmul;
use faer::prelude::*;
use faer::{Accum, Mat, MatRef, Par};

use crate::error::{invalid_err, shape_err, Error, Result};
use crate::lipschitz::certify::{min_eig, rounding_margin};
use crate::lipschitz::norms::{activation_constant, inf_norm, spectral_norm};
use crate::lipschitz::Norm;
use crate::network::{apply_activation, Layer};
use crate::scalar::Real;

const EPS: f64 = f64::EPSILON;
/// No solve runs more iterations than this, whatever its rate bound.
pub const MAX_ITERS: usize = 200_000;

/// Which certificate proved the layer well-posed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WellPosed {
    /// beta ||W||_2 <= q < 1.
    Contraction,
    /// lambda_min(I - (W + W^T)/2) >= m > 0 with a monotone activation of slope <= 1 (and no contraction).
    Monotone,
    /// The same in the metric of a given diagonal Lambda: 2 Lambda - Lambda W - W^T Lambda > 0.
    WeightedMonotone,
}

impl WellPosed {
    pub fn name(self) -> &'static str {
        match self {
            WellPosed::Contraction => "contraction",
            WellPosed::Monotone => "monotone",
            WellPosed::WeightedMonotone => "weighted-monotone",
        }
    }
}

/// z = act(W z + U x + b) at equilibrium; W (m, m), U (m, n), b (m).
#[derive(Clone, Debug)]
pub struct Implicit {
    w: Mat<f64>,
    u: Mat<f64>,
    b: Vec<f64>,
    act: Box<Layer>,
    /// beta ||W||_2, rounded up.
    contraction: f64,
    /// lambda_min(I - (W + W^T)/2) minus its rounding margin, when the activation admits the monotone certificate.
    monotone: Option<f64>,
    cert: WellPosed,
    /// The forward pass runs Peaceman-Rachford splitting (else Picard iteration).
    splitting: bool,
    /// (2I - W~)^{-1} (splitting only; W~ = D W D^{-1} with the weights, else W).
    resolvent: Option<Mat<f64>>,
    /// D = Lambda^{1/2} of a weighted-monotone certificate (the splitting runs in z~ = D z).
    scale: Option<Vec<f64>>,
    /// The Lambda the layer was given.
    lambda: Option<Vec<f64>>,
    /// The guaranteed contraction factor of the iteration the forward pass runs.
    rate: f64,
    /// ||W||_inf, ||U||_inf, ||b||_inf for the residual tolerance.
    norms: [f64; 3],
}

/// Whether the monotone certificate applies to `act`: element-wise, nondecreasing, slope in [0, 1].
fn monotone_act(act: &Layer) -> bool {
    match *act {
        Layer::ReLU | Layer::Tanh | Layer::Sigmoid => true,
        Layer::LeakyReLU { slope } => (0.0..=1.0).contains(&slope),
        _ => false,
    }
}

impl Implicit {
    /// Validates shapes and values and certifies well-posedness (`Unsupported` when neither certificate holds,
    /// with both numbers in the message).
    pub fn new(w: Mat<f64>, u: Mat<f64>, b: Option<Vec<f64>>, act: Layer) -> Result<Self> {
        Self::with_weights(w, u, b, act, None)
    }

    /// As [`Implicit::new`], with the diagonal `lambda` (> 0, length m) of the weighted monotone condition
    /// 2 Lambda - Lambda W - W^T Lambda > 0 (tried when the layer is not a contraction).
    pub fn with_weights(w: Mat<f64>, u: Mat<f64>, b: Option<Vec<f64>>, act: Layer, lambda: Option<Vec<f64>>) -> Result<Self> {
        let (m, n) = (u.nrows(), u.ncols());
        if m == 0 || n == 0 {
            return Err(shape_err!("Implicit: U must be non-empty, got shape ({m}, {n})"));
        }
        if w.nrows() != m || w.ncols() != m {
            return Err(shape_err!(
                "Implicit: W must be square with one row per unit ({m} x {m}, from U of shape ({m}, {n})), got ({}, {})",
                w.nrows(),
                w.ncols()
            ));
        }
        let b = b.unwrap_or_else(|| vec![0.0; m]);
        if b.len() != m {
            return Err(shape_err!("Implicit: b has length {} but the layer has {m} units", b.len()));
        }
        for (name, a) in [("W", &w), ("U", &u)] {
            for j in 0..a.ncols() {
                for i in 0..a.nrows() {
                    if !a[(i, j)].is_finite() {
                        return Err(invalid_err!("Implicit: {name}[{i}, {j}] is {} (weights must be finite)", a[(i, j)]));
                    }
                }
            }
        }
        if let Some(i) = b.iter().position(|v| !v.is_finite()) {
            return Err(invalid_err!("Implicit: b[{i}] is {} (biases must be finite)", b[i]));
        }
        if matches!(act, Layer::Dense(_) | Layer::Residual { .. } | Layer::Implicit(_)) {
            return Err(invalid_err!("Implicit: activation must be ReLU, LeakyReLU, Tanh, Sigmoid, MaxMin, GroupSort or Householder, got {}", act.kind()));
        }
        act.out_dim(Some(m), "Implicit activation")?;
        if let Some(l) = &lambda {
            if l.len() != m {
                return Err(shape_err!("Implicit: lam has length {} but the layer has {m} units", l.len()));
            }
            if let Some(i) = l.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(invalid_err!("Implicit: lam[{i}] is {} (the diagonal Lambda must be positive and finite)", l[i]));
            }
            if !monotone_act(&act) {
                return Err(invalid_err!(
                    "Implicit: lam (the weighted monotone condition) needs an element-wise activation with slope in [0, 1], got {}",
                    act.kind()
                ));
            }
        }
        let scale: Option<Vec<f64>> = lambda.as_ref().map(|l| l.iter().map(|v| v.sqrt()).collect());
        // W~ = D W D^{-1} (W itself without weights): the matrix of the monotone test and of the splitting
        let ws = match &scale {
            Some(d) => Mat::from_fn(m, m, |i, j| d[i] * w[(i, j)] / d[j]),
            None => w.clone(),
        };

        let beta = activation_constant(&act, Norm::L2);
        let wn = spectral_norm(w.as_ref())?;
        let contraction = beta * wn * (1.0 + 2.0 * EPS);
        let monotone = if monotone_act(&act) {
            let s = Mat::from_fn(m, m, |i, j| if i == j { 1.0 } else { 0.0 } - 0.5 * (ws[(i, j)] + ws[(j, i)]));
            let sa = Mat::from_fn(m, m, |i, j| if i == j { 1.0 } else { 0.0 } + 0.5 * (ws[(i, j)].abs() + ws[(j, i)].abs()));
            // p = 6 also covers forming W~ (a product and a quotient per entry)
            Some(min_eig(s.as_ref())? - rounding_margin(s.as_ref(), sa.as_ref(), 6))
        } else {
            None
        };
        let contracts = contraction < 1.0;
        let mono_ok = monotone.is_some_and(|v| v > 0.0);
        if !contracts && !mono_ok {
            let b_msg = match monotone {
                Some(v) if scale.is_some() => format!(
                    "(b) weighted monotone operator needs 2 Lambda - Lambda W - W^T Lambda > 0, i.e. lambda_min(I - (W~ + \
                     W~^T)/2) > 0 with W~ = Lambda^(1/2) W Lambda^(-1/2), got {v:.6e}"
                ),
                Some(v) => format!("(b) monotone operator needs lambda_min(I - (W + W^T)/2) > 0, got {v:.6e}"),
                None => format!(
                    "(b) the monotone certificate does not apply: {} is not an element-wise activation with slope in [0, 1]",
                    act.kind()
                ),
            };
            return Err(Error::Unsupported(format!(
                "Implicit ({m} units, {}): no well-posedness certificate: (a) contraction needs beta*||W||_2 < 1, got \
                 {beta:.6} * {wn:.6} = {contraction:.6}; {b_msg}",
                act.kind()
            )));
        }
        // The certificate: contraction when it holds, else monotone; the iteration: the better guaranteed rate.
        let cert = match (contracts, scale.is_some()) {
            (true, _) => WellPosed::Contraction,
            (false, false) => WellPosed::Monotone,
            (false, true) => WellPosed::WeightedMonotone,
        };
        let pr_rate = monotone.filter(|&v| v > 0.0).map(|mm| {
            let imw = Mat::from_fn(m, m, |i, j| if i == j { 1.0 } else { 0.0 } - ws[(i, j)]);
            let l = spectral_norm(imw.as_ref()).unwrap_or(f64::INFINITY);
            let r2 = 1.0 - 4.0 * mm / (1.0 + 2.0 * mm + l * l);
            (r2.max(0.0).sqrt() * (1.0 + 1e-12)).min(1.0)
        });
        let (splitting, rate) = match pr_rate {
            Some(r) if !contracts || r < contraction => (true, r),
            _ => (false, contraction),
        };
        let resolvent = if splitting {
            let a = Mat::from_fn(m, m, |i, j| if i == j { 2.0 } else { 0.0 } - ws[(i, j)]);
            let eye = Mat::<f64>::identity(m, m);
            Some(a.partial_piv_lu().solve(eye.as_ref()))
        } else {
            None
        };
        let bn = b.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let norms = [inf_norm(w.as_ref()), inf_norm(u.as_ref()), bn];
        let scale = if splitting { scale } else { None };
        Ok(Self { w, u, b, act: Box::new(act), contraction, monotone, cert, splitting, resolvent, scale, lambda, rate, norms })
    }

    pub fn weight(&self) -> MatRef<'_, f64> {
        self.w.as_ref()
    }
    pub fn input_weight(&self) -> MatRef<'_, f64> {
        self.u.as_ref()
    }
    pub fn bias(&self) -> &[f64] {
        &self.b
    }
    pub fn activation(&self) -> &Layer {
        &self.act
    }
    pub fn in_dim(&self) -> usize {
        self.u.ncols()
    }
    pub fn out_dim(&self) -> usize {
        self.u.nrows()
    }
    /// The certificate the layer was accepted by (contraction when it holds).
    pub fn certificate(&self) -> WellPosed {
        self.cert
    }
    /// The forward iteration: "peaceman-rachford" (monotone certificate, when its guaranteed rate is the better
    /// one) or "picard".
    pub fn iteration(&self) -> &'static str {
        if self.splitting {
            "peaceman-rachford"
        } else {
            "picard"
        }
    }
    /// beta ||W||_2 (rounded up): < 1 means the contraction certificate holds.
    pub fn contraction(&self) -> f64 {
        self.contraction
    }
    /// lambda_min(I - (W + W^T)/2) (rounded down; with weights, of W~ = Lambda^{1/2} W Lambda^{-1/2}), when the
    /// activation admits the monotone certificate.
    pub fn monotone_margin(&self) -> Option<f64> {
        self.monotone
    }
    /// The diagonal Lambda of a weighted-monotone certificate (None otherwise).
    pub fn lambda(&self) -> Option<Vec<f64>> {
        match self.cert {
            WellPosed::WeightedMonotone => self.lambda.clone(),
            _ => None,
        }
    }
    /// The guaranteed contraction factor of the forward iteration.
    pub fn rate(&self) -> f64 {
        self.rate
    }
    /// The iteration cap: enough iterations of the guaranteed rate to shrink the error by 1e-17, twice over.
    pub fn max_iters(&self) -> usize {
        if self.rate <= 0.0 {
            return 100;
        }
        let k = (1e-17f64).ln() / self.rate.ln();
        if !k.is_finite() {
            return MAX_ITERS;
        }
        ((2.0 * k).ceil() as usize + 100).min(MAX_ITERS)
    }

    /// The equilibrium for each row of `x` (batch, n), computed in float64.
    pub fn forward<T: Real>(&self, x: MatRef<'_, T>) -> Result<Mat<T>> {
        let x64 = Mat::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, j)].to_f64());
        let z = self.solve(x64.as_ref())?;
        Ok(Mat::from_fn(z.nrows(), z.ncols(), |i, j| T::from_f64(z[(i, j)])))
    }

    /// The equilibrium z (batch, m) for inputs x (batch, n), float64.
    pub fn solve(&self, x: MatRef<'_, f64>) -> Result<Mat<f64>> {
        let (bsz, m) = (x.nrows(), self.out_dim());
        if x.ncols() != self.in_dim() {
            return Err(shape_err!("Implicit: input has width {} but U has {} columns", x.ncols(), self.in_dim()));
        }
        // c = U x + b, one row per input
        let mut c = Mat::<f64>::zeros(bsz, m);
        matmul(c.as_mut(), Accum::Replace, x, self.u.transpose(), 1.0, Par::Seq);
        for (j, &bj) in self.b.iter().enumerate() {
            for v in c.col_mut(j).iter_mut() {
                *v += bj;
            }
        }
        let xinf: Vec<f64> = (0..bsz).map(|i| (0..x.ncols()).fold(0.0f64, |a, j| a.max(x[(i, j)].abs()))).collect();
        let tolf = 8.0 * (m + self.in_dim() + 2) as f64 * EPS;
        let tol = |z: MatRef<'_, f64>, i: usize| -> f64 {
            let zi = (0..m).fold(0.0f64, |a, j| a.max(z[(i, j)].abs()));
            tolf * (self.norms[0] * zi + self.norms[1] * xinf[i] + self.norms[2] + zi) + f64::MIN_POSITIVE
        };
        let cap = self.max_iters();
        // image: act(z W^T + c)
        let image = |z: MatRef<'_, f64>| -> Mat<f64> {
            let mut v = c.clone();
            matmul(v.as_mut(), Accum::Add, z, self.w.transpose(), 1.0, Par::Seq);
            apply_activation(&self.act, v.as_mut());
            v
        };
        // worst residual relative to its tolerance (<= 1: converged), and the worst absolute residual
        let check = |z: MatRef<'_, f64>, fz: MatRef<'_, f64>| -> (bool, f64) {
            let mut ok = true;
            let mut worst = 0.0f64;
            for i in 0..bsz {
                let r = (0..m).fold(0.0f64, |a, j| a.max((z[(i, j)] - fz[(i, j)]).abs()));
                if !(r <= tol(z, i)) {
                    ok = false;
                }
                worst = if r.is_nan() { f64::NAN } else { worst.max(r) };
            }
            (ok, worst)
        };
        let mut last = f64::NAN;
        match self.splitting {
            false => {
                let mut z = Mat::<f64>::zeros(bsz, m);
                for _ in 0..cap {
                    let fz = image(z.as_ref());
                    let (ok, worst) = check(z.as_ref(), fz.as_ref());
                    if ok {
                        return Ok(z);
                    }
                    last = worst;
                    z = fz;
                }
            }
            true => {
                let r = self.resolvent.as_ref().expect("splitting layers keep their resolvent");
                // in the scaled variables z~ = D z (D = I without weights): c~ = D c, act~(v) = D act(D^{-1} v)
                let d: Vec<f64> = self.scale.clone().unwrap_or_else(|| vec![1.0; m]);
                let ct = Mat::from_fn(bsz, m, |i, j| d[j] * c[(i, j)]);
                let mut u = Mat::<f64>::zeros(bsz, m);
                let mut za = Mat::<f64>::zeros(bsz, m);
                for it in 0..cap {
                    let t = &u + &ct;
                    matmul(za.as_mut(), Accum::Replace, t.as_ref(), r.transpose(), 1.0, Par::Seq);
                    let v = Mat::from_fn(bsz, m, |i, j| 2.0 * za[(i, j)] - u[(i, j)]);
                    let mut zb = if self.scale.is_some() { Mat::from_fn(bsz, m, |i, j| v[(i, j)] / d[j]) } else { v.clone() };
                    apply_activation(&self.act, zb.as_mut()); // zb = act(D^{-1} v) = D^{-1} z~: the original z
                    if it % 4 == 3 || it + 1 == cap {
                        let fz = image(zb.as_ref());
                        let (ok, worst) = check(zb.as_ref(), fz.as_ref());
                        if ok {
                            return Ok(zb);
                        }
                        last = worst;
                    }
                    if self.scale.is_some() {
                        for j in 0..m {
                            for i in 0..bsz {
                                zb[(i, j)] *= d[j];
                            }
                        }
                    }
                    u = Mat::from_fn(bsz, m, |i, j| 2.0 * zb[(i, j)] - v[(i, j)]);
                }
            }
        }
        Err(Error::Solver(format!(
            "Implicit ({m} units, {}): the {} iteration did not converge in {cap} iterations (largest residual \
             ||z - act(Wz + Ux + b)||_inf = {last:.3e}; guaranteed rate {:.6}, beta*||W||_2 = {:.6})",
            self.act.kind(),
            if self.splitting { "Peaceman-Rachford" } else { "fixed-point" },
            self.rate,
            self.contraction
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Network;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    fn rand(m: usize, n: usize, seed: &mut u64) -> Mat<f64> {
        Mat::from_fn(m, n, |_, _| lcg(seed))
    }

    fn scaled(mut w: Mat<f64>, to: f64) -> Mat<f64> {
        let s = w.singular_values().unwrap()[0];
        for j in 0..w.ncols() {
            for i in 0..w.nrows() {
                w[(i, j)] *= to / s;
            }
        }
        w
    }

    fn residual(imp: &Implicit, x: &[f64], z: &[f64]) -> f64 {
        let (m, n) = (imp.out_dim(), imp.in_dim());
        let mut v = Mat::from_fn(1, m, |_, i| {
            imp.bias()[i]
                + (0..m).map(|j| imp.weight()[(i, j)] * z[j]).sum::<f64>()
                + (0..n).map(|j| imp.input_weight()[(i, j)] * x[j]).sum::<f64>()
        });
        apply_activation(imp.activation(), v.as_mut());
        (0..m).fold(0.0f64, |a, i| a.max((v[(0, i)] - z[i]).abs()))
    }

    #[test]
    fn scalar_relu_case_by_hand() {
        // z = relu(w z + u x): z = u x / (1 - w) for u x > 0, else 0 (w < 1), by either certificate
        for w in [0.5, -2.0, 0.9] {
            let imp = Implicit::new(Mat::from_fn(1, 1, |_, _| w), Mat::from_fn(1, 1, |_, _| 3.0), None, Layer::ReLU).unwrap();
            let want = if w.abs() < 1.0 { WellPosed::Contraction } else { WellPosed::Monotone };
            assert_eq!(imp.certificate(), want, "w = {w}");
            let net = Network::new(vec![Layer::Implicit(Box::new(imp))], None).unwrap();
            for x in [1.0, -1.0, 0.25] {
                let z = net.forward_one(&[x]).unwrap()[0];
                let exact = (3.0 * x / (1.0 - w)).max(0.0);
                // the stopping rule bounds the residual; the error is at most residual / (1 - w) here
                assert!((z - exact).abs() <= 1e-12 * (1.0 + exact.abs()), "w {w} x {x}: {z} vs {exact}");
            }
        }
    }

    #[test]
    fn zero_feedback_is_dense_then_activation() {
        let mut seed = 3;
        let (m, n) = (6, 4);
        let u = rand(m, n, &mut seed);
        let b: Vec<f64> = (0..m).map(|_| lcg(&mut seed)).collect();
        for act in [Layer::Tanh, Layer::maxmin(crate::network::Pairing::Halves), Layer::Sigmoid] {
            let imp = Implicit::new(Mat::zeros(m, m), u.clone(), Some(b.clone()), act.clone()).unwrap();
            let a = Network::new(vec![Layer::Implicit(Box::new(imp))], None).unwrap();
            let d = Network::new(vec![Layer::dense(u.clone(), Some(b.clone())).unwrap(), act], None).unwrap();
            let x = rand(7, n, &mut seed);
            let (ya, yd) = (a.forward(x.as_ref()).unwrap(), d.forward(x.as_ref()).unwrap());
            for i in 0..7 {
                for j in 0..m {
                    assert!((ya[(i, j)] - yd[(i, j)]).abs() < 1e-15);
                }
            }
        }
    }

    #[test]
    fn equilibria_have_tiny_residuals_and_jacobians_match_differences() {
        let mut seed = 17;
        let (m, n) = (8, 3);
        for trial in 0..12 {
            let (w, act) = match trial % 4 {
                0 => (scaled(rand(m, m, &mut seed), 0.9), Layer::maxmin(crate::network::Pairing::Adjacent)),
                1 => (scaled(rand(m, m, &mut seed), 0.95), Layer::Householder { theta: 0.8, pairing: crate::network::Pairing::Halves }),
                // monotone only: ||W|| > 1 but I - sym(W) > 0
                2 => {
                    let a = rand(m, m, &mut seed);
                    (Mat::from_fn(m, m, |i, j| if i == j { -1.5 } else { 0.0 } + 2.0 * (a[(i, j)] - a[(j, i)])), Layer::ReLU)
                }
                _ => {
                    let a = rand(m, m, &mut seed);
                    (Mat::from_fn(m, m, |i, j| if i == j { -1.0 } else { 0.0 } + 3.0 * (a[(i, j)] - a[(j, i)])), Layer::Tanh)
                }
            };
            let imp = Implicit::new(w, rand(m, n, &mut seed), Some((0..m).map(|_| lcg(&mut seed)).collect()), act).unwrap();
            if trial % 4 >= 2 {
                assert_eq!(imp.certificate(), WellPosed::Monotone);
                assert!(imp.contraction() > 1.0);
            }
            let net = Network::new(vec![Layer::Implicit(Box::new(imp.clone())), Layer::dense(rand(2, m, &mut seed), None).unwrap()], None).unwrap();
            let x: Vec<f64> = (0..n).map(|_| 3.0 * lcg(&mut seed)).collect();
            let z = imp.solve(MatRef::from_row_major_slice(&x, 1, n)).unwrap();
            let z: Vec<f64> = (0..m).map(|j| z[(0, j)]).collect();
            assert!(residual(&imp, &x, &z) < 1e-12, "trial {trial}: residual {}", residual(&imp, &x, &z));
            let j = net.jacobian(&x).unwrap();
            let h = 1e-6;
            for k in 0..n {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[k] += h;
                xm[k] -= h;
                let (yp, ym) = (net.forward_one(&xp).unwrap(), net.forward_one(&xm).unwrap());
                for i in 0..2 {
                    let fd = (yp[i] - ym[i]) / (2.0 * h);
                    assert!((fd - j[(i, k)]).abs() < 1e-5 * (1.0 + fd.abs()), "trial {trial}: J[{i},{k}] = {} vs {fd}", j[(i, k)]);
                }
            }
            // float32 forward: the float64 equilibrium rounded
            let x32 = Mat::from_fn(1, n, |_, k| x[k] as f32);
            let y32 = net.forward(x32.as_ref()).unwrap();
            let y64 = net.forward_one(&(0..n).map(|k| x[k] as f32 as f64).collect::<Vec<_>>()).unwrap();
            for i in 0..2 {
                assert!((y32[(0, i)] as f64 - y64[i]).abs() < 1e-5 * (1.0 + y64[i].abs()));
            }
        }
    }

    #[test]
    fn rejects_layers_without_a_certificate_and_bad_shapes() {
        let u = Mat::from_fn(2, 1, |_, _| 1.0);
        let w = Mat::from_fn(2, 2, |i, j| if i == j { 1.5 } else { 0.0 });
        let e = Implicit::new(w.clone(), u.clone(), None, Layer::ReLU).unwrap_err();
        assert!(matches!(&e, Error::Unsupported(m) if m.contains("1.5") && m.contains("-5.0")), "{e:?}");
        let e = Implicit::new(w, u.clone(), None, Layer::LeakyReLU { slope: 2.0 }).unwrap_err();
        assert!(matches!(&e, Error::Unsupported(m) if m.contains("does not apply")), "{e:?}");
        assert!(matches!(Implicit::new(Mat::zeros(3, 3), u.clone(), None, Layer::ReLU), Err(Error::Shape(_))));
        assert!(matches!(Implicit::new(Mat::zeros(2, 2), u.clone(), Some(vec![0.0]), Layer::ReLU), Err(Error::Shape(_))));
        assert!(matches!(Implicit::new(Mat::zeros(2, 2), u.clone(), None, Layer::dense(Mat::zeros(2, 2), None).unwrap()), Err(Error::InvalidInput(_))));
        let odd = Mat::from_fn(3, 1, |_, _| 1.0);
        assert!(matches!(Implicit::new(Mat::zeros(3, 3), odd, None, Layer::maxmin(crate::network::Pairing::Adjacent)), Err(Error::Shape(_))));
        let nan = Mat::from_fn(2, 2, |_, _| f64::NAN);
        assert!(matches!(Implicit::new(nan, u, None, Layer::ReLU), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn weighted_monotone_layer_is_solved_in_the_scaled_metric() {
        // W = D^{-1} W~ D, I - sym(W~) = 1.25 I: accepted with Lambda = D^2, refused without
        let mut seed = 23;
        let m = 5;
        let d = [1.0, 6.0, 0.25, 3.0, 0.5];
        let a = rand(m, m, &mut seed);
        let w = Mat::from_fn(m, m, |i, j| (if i == j { -0.25 } else { 0.0 } + 2.0 * (a[(i, j)] - a[(j, i)])) * d[j] / d[i]);
        let u = rand(m, 2, &mut seed);
        for act in [Layer::Tanh, Layer::ReLU] {
            assert!(Implicit::new(w.clone(), u.clone(), None, act.clone()).is_err());
            let lam: Vec<f64> = d.iter().map(|v| v * v).collect();
            let imp = Implicit::with_weights(w.clone(), u.clone(), None, act, Some(lam)).unwrap();
            assert_eq!(imp.certificate(), WellPosed::WeightedMonotone);
            assert!((imp.monotone_margin().unwrap() - 1.25).abs() < 1e-9);
            for x in [[1.0, -2.0], [0.3, 0.7]] {
                let z = imp.solve(MatRef::from_row_major_slice(&x, 1, 2)).unwrap();
                let z: Vec<f64> = (0..m).map(|j| z[(0, j)]).collect();
                assert!(residual(&imp, &x, &z) < 1e-11, "{}", residual(&imp, &x, &z));
            }
        }
    }

    #[test]
    fn verification_rejects_implicit_layers() {
        let imp = Implicit::new(Mat::zeros(2, 2), Mat::from_fn(2, 1, |_, _| 1.0), None, Layer::ReLU).unwrap();
        let net = Network::new(vec![Layer::Implicit(Box::new(imp))], None).unwrap();
        let opts = crate::bounds::propagate::PropOptions::default();
        let e = crate::bounds::propagate::propagate(&net, &[0.0], &[1.0], opts, &[], None).err().unwrap();
        assert!(matches!(&e, Error::Unsupported(m) if m.contains("layer 0 is Implicit")), "{e:?}");
    }
}
