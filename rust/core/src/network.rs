//! The one network representation every analysis reads.
//!
//! A [`Network`] is a validated sequence of [`Layer`]s with known input and output widths. Weights are
//! stored in float64 (the analyses' precision) with a float32 copy made once at construction, so the
//! forward pass runs in whichever precision the caller's data has.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use faer::reborrow::ReborrowMut;

use crate::error::{invalid_err, shape_err, Error, Result};
pub use crate::implicit::{Implicit, WellPosed};
use crate::scalar::Real;

/// How the units of a grouped activation (GroupSort, MaxMin, Householder) are gathered into groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pairing {
    /// Group j holds units j*g .. j*g + g - 1.
    Adjacent,
    /// Group j holds units j, j + n/g, j + 2n/g, ... (for g = 2: unit i with unit i + n/2).
    Halves,
}

impl Pairing {
    pub fn name(self) -> &'static str {
        match self {
            Pairing::Adjacent => "adjacent",
            Pairing::Halves => "halves",
        }
    }

    /// Index of member `k` of group `j` in a layer of width `n` with groups of size `g`.
    #[inline(always)]
    pub fn member(self, j: usize, k: usize, n: usize, g: usize) -> usize {
        match self {
            Pairing::Adjacent => j * g + k,
            Pairing::Halves => j + k * (n / g),
        }
    }

    /// The groups of a layer of width `n`: `n / g` lists of `g` unit indices.
    pub fn groups(self, n: usize, g: usize) -> Vec<Vec<usize>> {
        (0..n / g).map(|j| (0..g).map(|k| self.member(j, k, n, g)).collect()).collect()
    }
}

/// An affine layer y = W x + b with W of shape (out, in).
#[derive(Clone, Debug)]
pub struct Dense {
    weight: Mat<f64>,
    bias: Vec<f64>,
    weight32: Mat<f32>,
    bias32: Vec<f32>,
}

impl Dense {
    /// `weight` is (out, in); `bias` has length out (zeros when `None`).
    pub fn new(weight: Mat<f64>, bias: Option<Vec<f64>>) -> Result<Self> {
        let (m, n) = (weight.nrows(), weight.ncols());
        if m == 0 || n == 0 {
            return Err(shape_err!("Dense: weight must be non-empty, got shape ({m}, {n})"));
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; m]);
        if bias.len() != m {
            return Err(shape_err!(
                "Dense: bias has length {} but weight has {m} rows (weight shape ({m}, {n}))",
                bias.len()
            ));
        }
        for j in 0..n {
            for i in 0..m {
                let w = weight[(i, j)];
                if !w.is_finite() {
                    return Err(invalid_err!("Dense: weight[{i}, {j}] is {w} (weights must be finite)"));
                }
            }
        }
        if let Some(i) = bias.iter().position(|b| !b.is_finite()) {
            return Err(invalid_err!("Dense: bias[{i}] is {} (biases must be finite)", bias[i]));
        }
        let weight32 = Mat::from_fn(m, n, |i, j| weight[(i, j)] as f32);
        let bias32 = bias.iter().map(|&b| b as f32).collect();
        Ok(Self { weight, bias, weight32, bias32 })
    }

    pub fn weight(&self) -> MatRef<'_, f64> {
        self.weight.as_ref()
    }
    pub fn bias(&self) -> &[f64] {
        &self.bias
    }
    pub fn in_dim(&self) -> usize {
        self.weight.ncols()
    }
    pub fn out_dim(&self) -> usize {
        self.weight.nrows()
    }
}

/// One layer of a [`Network`].
#[derive(Clone, Debug)]
pub enum Layer {
    /// The equilibrium z of z = act(W z + U x + b), certified well-posed when built (see [`Implicit`]).
    Implicit(Box<Implicit>),
    Dense(Dense),
    ReLU,
    LeakyReLU { slope: f64 },
    Tanh,
    Sigmoid,
    /// Sorts each group in descending order. `MaxMin` is `GroupSort { group_size: 2, .. }`.
    GroupSort { group_size: usize, pairing: Pairing },
    /// Order-1 Householder activation on pairs: z if v.z > 0 else (I - 2 v v^T) z with
    /// v = (sin(theta/2), -cos(theta/2)).
    Householder { theta: f64, pairing: Pairing },
    /// y = S x + f(x), with f the inner layers (which must map width d to width d) and S the linear skip
    /// (a d x d Dense with zero bias; `None` is the identity, y = x + f(x)). Build it with
    /// [`Layer::residual`], which checks S and stores an exact identity as `None`.
    Residual { inner: Vec<Layer>, skip: Option<Dense> },
}

impl Layer {
    pub fn dense(weight: Mat<f64>, bias: Option<Vec<f64>>) -> Result<Self> {
        Ok(Layer::Dense(Dense::new(weight, bias)?))
    }

    /// A residual block y = S x + f(x); `skip` = None (or an exact identity) is y = x + f(x). S must be a
    /// non-empty, square, finite matrix; its width is checked against the block's when the network is built.
    pub fn residual(inner: Vec<Layer>, skip: Option<Mat<f64>>) -> Result<Self> {
        let skip = match skip {
            None => None,
            Some(s) => {
                let (m, n) = (s.nrows(), s.ncols());
                if m == 0 || m != n {
                    return Err(shape_err!("Residual: skip matrix must be square and non-empty, got shape ({m}, {n})"));
                }
                for j in 0..n {
                    for i in 0..n {
                        let v = s[(i, j)];
                        if !v.is_finite() {
                            return Err(invalid_err!("Residual: skip[{i}, {j}] is {v} (the skip matrix must be finite)"));
                        }
                    }
                }
                let identity = (0..n).all(|j| (0..n).all(|i| s[(i, j)] == if i == j { 1.0 } else { 0.0 }));
                if identity {
                    None
                } else {
                    Some(Dense::new(s, None)?)
                }
            }
        };
        Ok(Layer::Residual { inner, skip })
    }

    pub fn maxmin(pairing: Pairing) -> Self {
        Layer::GroupSort { group_size: 2, pairing }
    }

    /// A short name for summaries and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Implicit(_) => "Implicit",
            Layer::Dense(_) => "Dense",
            Layer::ReLU => "ReLU",
            Layer::LeakyReLU { .. } => "LeakyReLU",
            Layer::Tanh => "Tanh",
            Layer::Sigmoid => "Sigmoid",
            Layer::GroupSort { group_size: 2, .. } => "MaxMin",
            Layer::GroupSort { .. } => "GroupSort",
            Layer::Householder { .. } => "Householder",
            Layer::Residual { .. } => "Residual",
        }
    }

    /// Number of trainable parameters (weights and biases), counting nested layers.
    pub fn num_params(&self) -> usize {
        match self {
            Layer::Implicit(l) => l.out_dim() * (l.out_dim() + l.in_dim() + 1),
            Layer::Dense(d) => d.out_dim() * d.in_dim() + d.out_dim(),
            Layer::Residual { inner, skip } => {
                inner.iter().map(Layer::num_params).sum::<usize>() + skip.as_ref().map_or(0, |s| s.in_dim() * s.in_dim())
            }
            _ => 0,
        }
    }

    /// The output width for an input of width `dim` (`None`: unknown until a Dense fixes it), checking
    /// that the layer accepts that width. `path` names the layer in error messages.
    pub(crate) fn out_dim(&self, dim: Option<usize>, path: &str) -> Result<Option<usize>> {
        match self {
            Layer::Dense(d) => match dim {
                Some(n) if n != d.in_dim() => Err(shape_err!(
                    "{path} (Dense): expects input width {} but receives width {n} (weight shape ({}, {}))",
                    d.in_dim(),
                    d.out_dim(),
                    d.in_dim()
                )),
                _ => Ok(Some(d.out_dim())),
            },
            Layer::LeakyReLU { slope } => {
                if !slope.is_finite() {
                    return Err(invalid_err!("{path} (LeakyReLU): slope is {slope}, must be finite"));
                }
                Ok(dim)
            }
            Layer::GroupSort { group_size, .. } => {
                if *group_size < 2 {
                    return Err(invalid_err!("{path} ({}): group_size must be >= 2, got {group_size}", self.kind()));
                }
                match dim {
                    Some(n) if n % group_size != 0 => Err(shape_err!(
                        "{path} ({}): width {n} is not a multiple of the group size {group_size}",
                        self.kind()
                    )),
                    _ => Ok(dim),
                }
            }
            Layer::Householder { theta, .. } => {
                if !theta.is_finite() {
                    return Err(invalid_err!("{path} (Householder): theta is {theta}, must be finite"));
                }
                match dim {
                    Some(n) if n % 2 != 0 => Err(shape_err!("{path} (Householder): width {n} is odd; it acts on pairs")),
                    _ => Ok(dim),
                }
            }
            Layer::Residual { inner, skip } => {
                if inner.is_empty() {
                    return Err(shape_err!("{path} (Residual): has no inner layers"));
                }
                let dim = match (dim, skip) {
                    (Some(n), Some(s)) if n != s.in_dim() => {
                        return Err(shape_err!(
                            "{path} (Residual): skip matrix is ({0}, {0}) but the block receives width {n}",
                            s.in_dim()
                        ))
                    }
                    (None, Some(s)) => Some(s.in_dim()),
                    _ => dim,
                };
                let mut d = dim;
                for (k, l) in inner.iter().enumerate() {
                    d = l.out_dim(d, &format!("{path}.{k}"))?;
                }
                match (dim, d) {
                    (Some(a), Some(b)) if a != b => Err(shape_err!(
                        "{path} (Residual): inner layers map width {a} to width {b}; y = S x + f(x) needs equal widths"
                    )),
                    (None, Some(_)) => Ok(d),
                    _ => Ok(dim),
                }
            }
            Layer::Implicit(l) => match dim {
                Some(n) if n != l.in_dim() => Err(shape_err!(
                    "{path} (Implicit): expects input width {} but receives width {n} (U shape ({}, {}))",
                    l.in_dim(),
                    l.out_dim(),
                    l.in_dim()
                )),
                _ => Ok(Some(l.out_dim())),
            },
            Layer::ReLU | Layer::Tanh | Layer::Sigmoid => Ok(dim),
        }
    }

    /// The input width this layer fixes, if any (the first Dense inside it).
    fn in_dim(&self) -> Option<usize> {
        match self {
            Layer::Implicit(l) => Some(l.in_dim()),
            Layer::Dense(d) => Some(d.in_dim()),
            Layer::Residual { inner, skip } => skip.as_ref().map(Dense::in_dim).or_else(|| inner.iter().find_map(Layer::in_dim)),
            _ => None,
        }
    }
}

/// A validated feed-forward network.
#[derive(Clone, Debug)]
pub struct Network {
    layers: Vec<Layer>,
    input_dim: usize,
    output_dim: usize,
}

/// Rows per task when the batch is split across threads.
const CHUNK_ROWS: usize = 1024;

impl Network {
    /// Builds a network, checking that consecutive widths agree. `input_dim` is needed only when no
    /// layer fixes it (a network with no Dense layer).
    pub fn new(layers: Vec<Layer>, input_dim: Option<usize>) -> Result<Self> {
        if layers.is_empty() {
            return Err(shape_err!("Network: needs at least one layer"));
        }
        let first = layers.iter().find_map(Layer::in_dim);
        let start = match (input_dim, first) {
            (Some(a), _) => Some(a),
            (None, f) => f,
        };
        let Some(start) = start else {
            return Err(shape_err!(
                "Network: no Dense layer fixes the input width; pass input_dim explicitly"
            ));
        };
        if start == 0 {
            return Err(shape_err!("Network: input width must be positive"));
        }
        let mut dim = Some(start);
        for (k, l) in layers.iter().enumerate() {
            dim = l.out_dim(dim, &format!("layer {k}"))?;
        }
        Ok(Self { layers, input_dim: start, output_dim: dim.expect("width known after the first layer") })
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }
    pub fn output_dim(&self) -> usize {
        self.output_dim
    }
    pub fn num_params(&self) -> usize {
        self.layers.iter().map(Layer::num_params).sum()
    }

    /// The Dense layers in order, including those inside Residual blocks.
    pub fn dense_layers(&self) -> Vec<&Dense> {
        fn walk<'a>(ls: &'a [Layer], out: &mut Vec<&'a Dense>) {
            for l in ls {
                match l {
                    Layer::Dense(d) => out.push(d),
                    Layer::Residual { inner, .. } => walk(inner, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.layers, &mut out);
        out
    }

    /// The Implicit layers with their paths ("layer 3", "layer 2.1" inside a Residual block), in order.
    pub fn implicit_layers(&self) -> Vec<(String, &Implicit)> {
        fn walk<'a>(ls: &'a [Layer], prefix: &str, out: &mut Vec<(String, &'a Implicit)>) {
            for (k, l) in ls.iter().enumerate() {
                let path = if prefix.is_empty() { format!("layer {k}") } else { format!("{prefix}.{k}") };
                match l {
                    Layer::Implicit(imp) => out.push((path, imp)),
                    Layer::Residual { inner, .. } => walk(inner, &path, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.layers, "", &mut out);
        out
    }

    /// `Unsupported` naming the first Implicit layer, for analyses that do not handle equilibrium layers.
    pub fn reject_implicit(&self, analysis: &str) -> Result<()> {
        match self.implicit_layers().first() {
            Some((path, imp)) => Err(Error::Unsupported(format!(
                "{analysis} does not support implicit (equilibrium) layers: {path} is Implicit ({} units, {})",
                imp.out_dim(),
                imp.activation().kind()
            ))),
            None => Ok(()),
        }
    }

    /// Forward pass of a batch `x` (batch, input_dim), written into `out` (batch, output_dim).
    /// Both may have any strides (C- or F-ordered numpy arrays are read in place). Large batches are
    /// split across the rayon pool. Fails on a shape mismatch or a non-finite input entry.
    pub fn forward_into<T: NetScalar>(&self, x: MatRef<'_, T>, out: MatMut<'_, T>) -> Result<()> {
        if x.ncols() != self.input_dim {
            return Err(shape_err!(
                "input has {} features per row but the network expects {}",
                x.ncols(),
                self.input_dim
            ));
        }
        if out.nrows() != x.nrows() || out.ncols() != self.output_dim {
            return Err(shape_err!(
                "output buffer has shape ({}, {}), expected ({}, {})",
                out.nrows(),
                out.ncols(),
                x.nrows(),
                self.output_dim
            ));
        }
        self.forward_split(x, out, 0)
    }

    /// Allocating forward pass; returns a (batch, output_dim) matrix.
    pub fn forward<T: NetScalar>(&self, x: MatRef<'_, T>) -> Result<Mat<T>> {
        let mut out = Mat::<T>::zeros(x.nrows(), self.output_dim);
        self.forward_into(x, out.as_mut())?;
        Ok(out)
    }

    /// Forward pass of one input vector, in float64.
    pub fn forward_one(&self, x: &[f64]) -> Result<Vec<f64>> {
        let xm = MatRef::from_row_major_slice(x, 1, x.len());
        let y = self.forward(xm)?;
        Ok((0..y.ncols()).map(|j| y[(0, j)]).collect())
    }

    fn forward_split<T: NetScalar>(&self, x: MatRef<'_, T>, mut out: MatMut<'_, T>, row0: usize) -> Result<()> {
        let b = x.nrows();
        if b <= 2 * CHUNK_ROWS {
            return self.forward_chunk(x, out, row0);
        }
        let half = (b / 2).div_ceil(CHUNK_ROWS) * CHUNK_ROWS;
        let (x_top, x_bot) = x.split_at_row(half);
        let (o_top, o_bot) = out.rb_mut().split_at_row_mut(half);
        let (r1, r2) = rayon::join(
            || self.forward_split(x_top, o_top, row0),
            || self.forward_split(x_bot, o_bot, row0 + half),
        );
        r1.and(r2)
    }

    fn forward_chunk<T: NetScalar>(&self, x: MatRef<'_, T>, mut out: MatMut<'_, T>, row0: usize) -> Result<()> {
        for j in 0..x.ncols() {
            for i in 0..x.nrows() {
                let v = x[(i, j)];
                if !v.finite() {
                    return Err(invalid_err!("input[{}, {j}] is {} (inputs must be finite)", row0 + i, v.to_f64()));
                }
            }
        }
        // A leading Dense layer reads the caller's (possibly strided) rows in place; no copy of x.
        let h = match self.layers.first() {
            Some(Layer::Dense(d)) => run_layers(&self.layers[1..], dense_forward(d, x), 1)?,
            _ => run_layers(&self.layers, x.to_owned(), 0)?,
        };
        out.copy_from(h.as_ref());
        Ok(())
    }
}

/// Runs `layers` (the first at top-level index `first`) on a column-major batch, consuming and returning the
/// activations. Fails only when an Implicit layer's equilibrium solve does not converge.
fn run_layers<T: NetScalar>(layers: &[Layer], mut h: Mat<T>, first: usize) -> Result<Mat<T>> {
    for (k, layer) in layers.iter().enumerate() {
        h = match layer {
            Layer::Dense(d) => dense_forward(d, h.as_ref()),
            Layer::Residual { inner, skip } => {
                let mut y = run_layers(inner, h.clone(), 0).map_err(|e| at_layer(e, first + k))?;
                match skip {
                    None => y += &h,
                    Some(s) => y += dense_forward(s, h.as_ref()),
                }
                y
            }
            Layer::Implicit(imp) => imp.forward(h.as_ref()).map_err(|e| at_layer(e, first + k))?,
            _ => {
                apply_activation(layer, h.as_mut());
                h
            }
        };
    }
    Ok(h)
}

/// The error with "layer k: " in front of its message (same kind).
fn at_layer(e: Error, k: usize) -> Error {
    match e {
        Error::Shape(m) => Error::Shape(format!("layer {k}: {m}")),
        Error::InvalidInput(m) => Error::InvalidInput(format!("layer {k}: {m}")),
        Error::Unsupported(m) => Error::Unsupported(format!("layer {k}: {m}")),
        Error::Solver(m) => Error::Solver(format!("layer {k}: {m}")),
        Error::TimeLimit(m) => Error::TimeLimit(format!("layer {k}: {m}")),
    }
}

fn dense_forward<T: NetScalar>(d: &Dense, x: MatRef<'_, T>) -> Mat<T> {
    let w = T::dense_weight(d);
    let b = T::dense_bias(d);
    let mut y = Mat::<T>::zeros(x.nrows(), d.out_dim());
    matmul(y.as_mut(), Accum::Replace, x, w.transpose(), T::one_(), Par::Seq);
    for (j, &bj) in b.iter().enumerate() {
        for v in y.col_mut(j).iter_mut() {
            *v += bj;
        }
    }
    y
}

/// Applies an element-wise or grouped activation in place on a (batch, width) column-major block.
pub fn apply_activation<T: Real>(layer: &Layer, mut h: MatMut<'_, T>) {
    let n = h.ncols();
    match *layer {
        Layer::Implicit(_) => unreachable!("not an activation"),
        Layer::ReLU => map_cols(h, |v| if v > T::zero_() { v } else { T::zero_() }),
        Layer::LeakyReLU { slope } => {
            let s = T::from_f64(slope);
            map_cols(h, move |v| if v > T::zero_() { v } else { s * v })
        }
        Layer::Tanh => map_cols(h, Real::tanh_),
        Layer::Sigmoid => map_cols(h, sigmoid),
        Layer::GroupSort { group_size, pairing } => {
            let mut buf = vec![T::zero_(); group_size];
            for j in 0..n / group_size {
                let cols: Vec<usize> = (0..group_size).map(|k| pairing.member(j, k, n, group_size)).collect();
                if group_size == 2 {
                    let (a, b) = (cols[0], cols[1]);
                    for i in 0..h.nrows() {
                        let (x, y) = (h[(i, a)], h[(i, b)]);
                        if y > x {
                            h[(i, a)] = y;
                            h[(i, b)] = x;
                        }
                    }
                } else {
                    for i in 0..h.nrows() {
                        for (k, &c) in cols.iter().enumerate() {
                            buf[k] = h[(i, c)];
                        }
                        buf.sort_unstable_by(|p, q| q.partial_cmp(p).unwrap_or(std::cmp::Ordering::Equal));
                        for (k, &c) in cols.iter().enumerate() {
                            h[(i, c)] = buf[k];
                        }
                    }
                }
            }
        }
        Layer::Householder { theta, pairing } => {
            let (v0, v1) = ((theta / 2.0).sin(), -(theta / 2.0).cos());
            // I - 2 v v^T
            let (r00, r01, r11) = (1.0 - 2.0 * v0 * v0, -2.0 * v0 * v1, 1.0 - 2.0 * v1 * v1);
            let (v0, v1, r00, r01, r11) =
                (T::from_f64(v0), T::from_f64(v1), T::from_f64(r00), T::from_f64(r01), T::from_f64(r11));
            for j in 0..n / 2 {
                let (a, b) = (pairing.member(j, 0, n, 2), pairing.member(j, 1, n, 2));
                for i in 0..h.nrows() {
                    let (x, y) = (h[(i, a)], h[(i, b)]);
                    if !(v0 * x + v1 * y > T::zero_()) {
                        h[(i, a)] = r00 * x + r01 * y;
                        h[(i, b)] = r01 * x + r11 * y;
                    }
                }
            }
        }
        Layer::Dense(_) | Layer::Residual { .. } => unreachable!("not an activation"),
    }
}

/// The logistic function, split on the sign so exp never overflows.
#[inline(always)]
pub fn sigmoid<T: Real>(v: T) -> T {
    if v >= T::zero_() {
        T::one_() / (T::one_() + Real::exp_(-v))
    } else {
        let e = Real::exp_(v);
        e / (T::one_() + e)
    }
}

fn map_cols<T: Real>(mut h: MatMut<'_, T>, f: impl Fn(T) -> T) {
    for j in 0..h.ncols() {
        for v in h.rb_mut().col_mut(j).iter_mut() {
            *v = f(*v);
        }
    }
}

/// The precisions the forward pass runs in; each reads its own copy of the weights.
pub trait NetScalar: Real {
    fn dense_weight(d: &Dense) -> MatRef<'_, Self>;
    fn dense_bias(d: &Dense) -> &[Self];
}

impl NetScalar for f64 {
    fn dense_weight(d: &Dense) -> MatRef<'_, f64> {
        d.weight.as_ref()
    }
    fn dense_bias(d: &Dense) -> &[f64] {
        &d.bias
    }
}

impl NetScalar for f32 {
    fn dense_weight(d: &Dense) -> MatRef<'_, f32> {
        d.weight32.as_ref()
    }
    fn dense_bias(d: &Dense) -> &[f32] {
        &d.bias32
    }
}
