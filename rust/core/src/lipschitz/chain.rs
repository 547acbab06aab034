//! The chain decomposition every SDP formulation reads.
//!
//! A network is read as stages z_{k+1} = act_k(W_k z_k) (plain) or z_{k+1} = S_k z_k + G_k act_k(W_k z_k)
//! (residual; S_k = I unless the block has a linear skip), then y = W_last z_L (optionally c^T y). Biases do not change a Lipschitz constant and are
//! dropped. Each plain stage's weight and the last weight are divided by a power of two s_k >= ||W_k||_2
//! (exact in floating point); the constant of the original network is prod(s_k) times that of the
//! rescaled one because every supported activation is positively homogeneous or, for slope-restricted
//! ones, keeps its sector under the rescaling phi(s u) / s.

use faer::Mat;

use super::norms::pow2_at_least;
use crate::error::{shape_err, Error, Result};
use crate::network::{Layer, Network};

/// The quadratic constraint family of a stage's activation.
#[derive(Clone, Debug)]
pub enum Act {
    /// No activation (a Dense layer followed by another Dense or a Residual block).
    Linear,
    /// Element-wise, slope-restricted in [alpha, beta].
    Sector { alpha: f64, beta: f64 },
    /// GroupSort / MaxMin / Householder: per group j, for the multiplier lambda_j I + gamma_j E,
    /// ||dv_j||^2 >= ||dw_j||^2 and dv_j^T E dv_j = dw_j^T E dw_j (E = 11^T, or I - vv^T for Householder).
    Groups { groups: Vec<Vec<usize>>, e: Mat<f64> },
    /// Implicit (equilibrium) stage z' = act(F z' + W z) (W: the stage's rescaled input weight U, F: the feedback
    /// weight, not rescaled); `inner` is the activation's family (Sector or Groups), whose multipliers the stage uses.
    /// `dir`: the direction the certificate's repair raises a sector multiplier T along (the layer's Lambda when
    /// it is well-posed only in that weighted metric, so that 2T - T F - F^T T grows positive definite; else 1).
    Implicit { f: Mat<f64>, inner: Box<Act>, dir: Vec<f64> },
}

impl Act {
    pub fn name(&self) -> &'static str {
        match self {
            Act::Linear => "linear",
            Act::Sector { .. } => "sector",
            Act::Groups { .. } => "groups",
            Act::Implicit { .. } => "implicit",
        }
    }

    /// The family whose multipliers the stage carries (the activation's, for implicit stages).
    pub fn family(&self) -> &Act {
        match self {
            Act::Implicit { inner, .. } => inner,
            a => a,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Stage {
    /// Rescaled weight (out, in).
    pub w: Mat<f64>,
    pub act: Act,
    pub residual: bool,
    /// Residual stages: the output map G of z' = S z + G act(W z) (identity for Residual([Dense, act])).
    pub g: Option<Mat<f64>>,
    /// Residual stages: the skip S of z' = S z + G act(W z) (`None`: the identity).
    pub skip: Option<Mat<f64>>,
    /// The power of two W was divided by (1 for residual stages, whose weight is not rescaled).
    pub scale: f64,
    /// The original layer's description, for error messages and reports.
    pub layer: String,
}

impl Stage {
    /// Width of the stage's output z_{k+1}.
    pub fn out_dim(&self) -> usize {
        if self.residual {
            self.w.ncols()
        } else {
            self.w.nrows()
        }
    }
}

#[derive(Clone, Debug)]
pub struct Chain {
    pub stages: Vec<Stage>,
    /// The rescaled last weight (m, n_L): identity when the network ends in an activation.
    pub last: Mat<f64>,
    /// The output functional c (length m), if the bound is for x -> c^T f(x).
    pub c: Option<Vec<f64>>,
    /// Product of all the powers of two the weights were divided by.
    pub scale: f64,
    pub input_dim: usize,
}

/// The activation's constraint family, or an error naming the layer.
pub fn act_of(layer: &Layer, width: usize, path: &str) -> Result<Act> {
    Ok(match *layer {
        Layer::Implicit(_) => return Err(Error::Unsupported(format!("{path}: Implicit is not an activation"))),
        Layer::ReLU | Layer::Tanh => Act::Sector { alpha: 0.0, beta: 1.0 },
        Layer::LeakyReLU { slope } => Act::Sector { alpha: slope.min(1.0), beta: slope.max(1.0) },
        Layer::Sigmoid => Act::Sector { alpha: 0.0, beta: 0.25 },
        Layer::GroupSort { group_size, pairing } => {
            Act::Groups { groups: pairing.groups(width, group_size), e: Mat::from_fn(group_size, group_size, |_, _| 1.0) }
        }
        Layer::Householder { theta, pairing } => {
            let v = [(theta / 2.0).sin(), -(theta / 2.0).cos()];
            Act::Groups {
                groups: pairing.groups(width, 2),
                e: Mat::from_fn(2, 2, |i, j| if i == j { 1.0 } else { 0.0 } - v[i] * v[j]),
            }
        }
        Layer::Dense(_) | Layer::Residual { .. } => {
            return Err(Error::Unsupported(format!("{path}: {} is not an activation", layer.kind())))
        }
    })
}

fn identity(n: usize) -> Mat<f64> {
    Mat::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.0 })
}

/// A power of two near ||W||_2 (any power of two keeps the bound exact; near 1 keeps the SDP well scaled).
fn pow2_near_norm(w: faer::MatRef<'_, f64>) -> Result<f64> {
    let s = w.singular_values().map_err(|e| Error::Solver(format!("SVD failed: {e:?}")))?;
    Ok(pow2_at_least(s.first().copied().unwrap_or(0.0) * (1.0 - 1e-9)))
}

fn rescale(w: &mut Mat<f64>) -> Result<f64> {
    let s = pow2_near_norm(w.as_ref())?;
    if s != 1.0 {
        let inv = 1.0 / s;
        for j in 0..w.ncols() {
            for i in 0..w.nrows() {
                w[(i, j)] *= inv;
            }
        }
    }
    Ok(s)
}

impl Chain {
    /// Reads `net` as a chain. Fails with `Unsupported` for residual blocks other than
    /// [Dense, activation] (the residual formulation of the NSR paper).
    pub fn new(net: &Network, c: Option<&[f64]>) -> Result<Self> {
        if let Some(c) = c {
            if c.len() != net.output_dim() {
                return Err(shape_err!("output vector c has length {} but the network has {} outputs", c.len(), net.output_dim()));
            }
            if let Some(i) = c.iter().position(|v| !v.is_finite()) {
                return Err(crate::error::invalid_err!("output vector c[{i}] is {} (must be finite)", c[i]));
            }
        }
        let mut stages = Vec::new();
        let mut pending: Option<(Mat<f64>, String)> = None;
        let mut width = net.input_dim();
        for (k, layer) in net.layers().iter().enumerate() {
            let path = format!("layer {k}");
            match layer {
                Layer::Dense(d) => {
                    if let Some((w, name)) = pending.take() {
                        stages.push(Stage { w, act: Act::Linear, residual: false, g: None, skip: None, scale: 1.0, layer: name });
                    }
                    pending = Some((d.weight().to_owned(), format!("{path} (Dense)")));
                    width = d.out_dim();
                }
                Layer::Residual { inner, skip } => {
                    if let Some((w, name)) = pending.take() {
                        stages.push(Stage { w, act: Act::Linear, residual: false, g: None, skip: None, scale: 1.0, layer: name });
                    }
                    let skip = skip.as_ref().map(|s| s.weight().to_owned());
                    let skipped = if skip.is_some() { ", skip" } else { "" };
                    let is_act = |a: &Layer| !matches!(a, Layer::Dense(_) | Layer::Residual { .. });
                    match inner.as_slice() {
                        [Layer::Dense(d), a] if is_act(a) => {
                            let act = act_of(a, d.out_dim(), &path)?;
                            stages.push(Stage {
                                w: d.weight().to_owned(),
                                act,
                                residual: true,
                                g: Some(identity(d.out_dim())),
                                skip,
                                scale: 1.0,
                                layer: format!("{path} (Residual[Dense, {}]{skipped})", a.kind()),
                            });
                        }
                        [Layer::Dense(d), a, Layer::Dense(g)] if is_act(a) => {
                            let act = act_of(a, d.out_dim(), &path)?;
                            stages.push(Stage {
                                w: d.weight().to_owned(),
                                act,
                                residual: true,
                                g: Some(g.weight().to_owned()),
                                skip,
                                scale: 1.0,
                                layer: format!("{path} (Residual[Dense, {}, Dense]{skipped})", a.kind()),
                            });
                        }
                        _ => {
                            let kinds: Vec<&str> = inner.iter().map(Layer::kind).collect();
                            return Err(Error::Unsupported(format!(
                                "{path}: Residual([{}]) is not supported by the SDP formulations; they handle \
                                 residual blocks S x + G act(W x), i.e. Residual([Dense, activation]) or \
                                 Residual([Dense, activation, Dense]), with or without a skip (use method='naive')",
                                kinds.join(", ")
                            )));
                        }
                    }
                }
                Layer::Implicit(imp) => {
                    // A Dense layer right before folds into U (its bias does not change a Lipschitz constant).
                    let here = format!("{path} (Implicit[{}])", imp.activation().kind());
                    let (w, name) = match pending.take() {
                        Some((wd, name)) => {
                            (super::certify::matmul_new(imp.input_weight(), wd.as_ref()), format!("{name} + {here}"))
                        }
                        None => (imp.input_weight().to_owned(), here),
                    };
                    let inner = act_of(imp.activation(), imp.out_dim(), &path)?;
                    stages.push(Stage {
                        w,
                        act: Act::Implicit {
                            f: imp.weight().to_owned(),
                            inner: Box::new(inner),
                            dir: imp.lambda().unwrap_or_else(|| vec![1.0; imp.out_dim()]),
                        },
                        residual: false,
                        g: None,
                        skip: None,
                        scale: 1.0,
                        layer: name,
                    });
                    width = imp.out_dim();
                }
                act => {
                    let (w, name) = pending.take().unwrap_or_else(|| (identity(width), format!("{path} (identity)")));
                    stages.push(Stage {
                        w,
                        act: act_of(act, width, &path)?,
                        residual: false,
                        g: None,
                        skip: None,
                        scale: 1.0,
                        layer: format!("{name} + {}", act.kind()),
                    });
                }
            }
        }
        let mut last = pending.map(|p| p.0).unwrap_or_else(|| identity(width));
        let mut scale = 1.0;
        for st in stages.iter_mut().filter(|s| !s.residual) {
            st.scale = rescale(&mut st.w)?;
            scale *= st.scale;
        }
        // The last factor: s >= ||c^T W|| (or ||W||); any power of two is exact.
        let s_last = match c {
            Some(c) => {
                let row = Mat::from_fn(1, last.ncols(), |_, j| (0..last.nrows()).map(|i| c[i] * last[(i, j)]).sum::<f64>());
                pow2_near_norm(row.as_ref())?
            }
            None => pow2_near_norm(last.as_ref())?,
        };
        if s_last != 1.0 {
            let inv = 1.0 / s_last;
            for j in 0..last.ncols() {
                for i in 0..last.nrows() {
                    last[(i, j)] *= inv;
                }
            }
        }
        scale *= s_last;
        if !scale.is_finite() {
            return Err(Error::Unsupported("the product of the layer scales overflows float64".into()));
        }
        Ok(Self { stages, last, c: c.map(|c| c.to_vec()), scale, input_dim: net.input_dim() })
    }

    /// The row (or rows) of the final map as the formulations see it: c^T W_last (1, n) or W_last.
    pub fn final_rows(&self) -> Mat<f64> {
        match &self.c {
            Some(c) => Mat::from_fn(1, self.last.ncols(), |_, j| {
                (0..self.last.nrows()).map(|i| c[i] * self.last[(i, j)]).sum::<f64>()
            }),
            None => self.last.clone(),
        }
    }

    /// Width of the interface X_k (k = 0: the input; k = L: the last state).
    pub fn width(&self, k: usize) -> usize {
        if k == 0 {
            self.input_dim
        } else {
            self.stages[k - 1].out_dim()
        }
    }

    /// Whether X_k is the stage k-1 group multiplier itself (a plain group stage; the decoupled NSR chain).
    pub fn x_is_q(&self, k: usize) -> bool {
        k >= 1 && {
            let s = &self.stages[k - 1];
            !s.residual && matches!(s.act, Act::Groups { .. })
        }
    }
}
