//! Interval (IBP) and linear (CROWN/DeepPoly-style back-substitution) bound propagation.
//!
//! The network is walked once, front to back. Before each activation the pre-activation box is
//! computed by interval arithmetic and, when `crown` is on, tightened by back-substituting the
//! identity through the relaxations built so far down to the input box. Residual blocks are kept as
//! nested lists so back-substitution sends the coefficients through both the skip path and f.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

use super::relax::{act_interval, relax, Relax, Slopes};
use crate::error::{shape_err, Result};
use crate::network::{Dense, Layer, Network};

/// One layer of the network as back-substitution sees it.
pub enum Relaxed<'a> {
    Dense(&'a Dense),
    Act(Relax),
    /// A residual block: the inner ops and the skip S (`None`: the identity).
    Residual(Vec<Relaxed<'a>>, Option<&'a Dense>),
}

/// A ReLU/LeakyReLU split: the pre-activation of unit `unit` of activation layer `act` (depth-first
/// order over activation layers, Residual blocks included) is >= 0 (`active`) or <= 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Split {
    pub act: usize,
    pub unit: usize,
    pub active: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct PropOptions {
    /// Back-substitution on (true) or interval arithmetic only (false).
    pub crown: bool,
    pub slopes: Slopes,
}

impl Default for PropOptions {
    fn default() -> Self {
        Self { crown: true, slopes: Slopes::Adaptive }
    }
}

pub type Interval = (Vec<f64>, Vec<f64>);

/// The relaxed network over one input box.
pub struct Propagation<'a> {
    pub ops: Vec<Relaxed<'a>>,
    /// Pre-activation bounds of every activation layer, depth-first order.
    pub pre: Vec<Interval>,
    /// Interval bounds of the output.
    pub out: Interval,
    /// The splits contradict the bounds: the sub-domain is empty.
    pub infeasible: bool,
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
}

/// Activation layers in depth-first order.
pub fn activation_layers(net: &Network) -> Vec<&Layer> {
    fn walk<'a>(ls: &'a [Layer], out: &mut Vec<&'a Layer>) {
        for l in ls {
            match l {
                Layer::Dense(_) => {}
                Layer::Residual { inner, .. } => walk(inner, out),
                _ => out.push(l),
            }
        }
    }
    let mut out = Vec::new();
    walk(net.layers(), &mut out);
    out
}

struct State<'b> {
    lo: &'b [f64],
    hi: &'b [f64],
    opts: PropOptions,
    splits: &'b [Split],
    prior: Option<&'b [Interval]>,
    settled: usize,
    pre: Vec<Interval>,
    infeasible: bool,
}

fn check_box(net: &Network, lo: &[f64], hi: &[f64]) -> Result<()> {
    let n = net.input_dim();
    if lo.len() != n || hi.len() != n {
        return Err(shape_err!(
            "input box has {} lower and {} upper bounds but the network has {n} inputs",
            lo.len(),
            hi.len()
        ));
    }
    for j in 0..n {
        if !lo[j].is_finite() || !hi[j].is_finite() {
            return Err(crate::error::invalid_err!(
                "input box is unbounded or not finite in dimension {j}: [{}, {}]",
                lo[j],
                hi[j]
            ));
        }
        if lo[j] > hi[j] {
            return Err(crate::error::invalid_err!("input box is empty in dimension {j}: lo {} > hi {}", lo[j], hi[j]));
        }
    }
    Ok(())
}

/// Bounds of every layer of `net` over the box [lo, hi] restricted by `splits`; `prior` (bounds
/// valid on a superset, e.g. the parent node's) are intersected in.
pub fn propagate<'a>(
    net: &'a Network,
    lo: &[f64],
    hi: &[f64],
    opts: PropOptions,
    splits: &[Split],
    prior: Option<&[Interval]>,
) -> Result<Propagation<'a>> {
    propagate_settled(net, lo, hi, opts, splits, prior, 0)
}

/// [`propagate`] where the `prior` of the first `settled` activation layers is known to be what the
/// back-substitution would give there: the bounds of a node's parent on the same box with the same splits
/// before those layers (a ReLU split's child, `settled` = the split layer + 1). Those layers keep their
/// prior (and the splits) without the back-substitution, whose result the prior already contains; the
/// bounds are the same, bit for bit, as with `settled` = 0.
pub fn propagate_settled<'a>(
    net: &'a Network,
    lo: &[f64],
    hi: &[f64],
    opts: PropOptions,
    splits: &[Split],
    prior: Option<&[Interval]>,
    settled: usize,
) -> Result<Propagation<'a>> {
    check_box(net, lo, hi)?;
    net.reject_implicit("bound propagation (verification)")?;
    let settled = if prior.is_some() { settled } else { 0 };
    let mut st = State { lo, hi, opts, splits, prior, settled, pre: Vec::new(), infeasible: false };
    let mut ctx: Vec<Vec<Relaxed<'a>>> = vec![Vec::new()];
    let out = walk(net.layers(), &mut ctx, (lo.to_vec(), hi.to_vec()), &mut st)?;
    let ops = ctx.pop().expect("root context");
    Ok(Propagation { ops, pre: st.pre, out, infeasible: st.infeasible, lo: lo.to_vec(), hi: hi.to_vec() })
}

fn ibp_dense(d: &Dense, (l, u): &Interval) -> Interval {
    let w = d.weight();
    let mut lo = d.bias().to_vec();
    let mut hi = lo.clone();
    for j in 0..w.ncols() {
        let (lj, uj) = (l[j], u[j]);
        for i in 0..w.nrows() {
            let v = w[(i, j)];
            if v >= 0.0 {
                lo[i] += v * lj;
                hi[i] += v * uj;
            } else {
                lo[i] += v * uj;
                hi[i] += v * lj;
            }
        }
    }
    (lo, hi)
}

fn walk<'a>(layers: &'a [Layer], ctx: &mut Vec<Vec<Relaxed<'a>>>, mut cur: Interval, st: &mut State) -> Result<Interval> {
    for layer in layers {
        if st.infeasible {
            return Ok(cur);
        }
        match layer {
            Layer::Dense(d) => {
                cur = ibp_dense(d, &cur);
                ctx.last_mut().unwrap().push(Relaxed::Dense(d));
            }
            Layer::Residual { inner, skip } => {
                ctx.push(Vec::new());
                let f = walk(inner, ctx, cur.clone(), st)?;
                let ops = ctx.pop().unwrap();
                ctx.last_mut().unwrap().push(Relaxed::Residual(ops, skip.as_ref()));
                if let Some(s) = skip {
                    cur = ibp_dense(s, &cur);
                }
                for k in 0..cur.0.len() {
                    cur.0[k] += f.0[k];
                    cur.1[k] += f.1[k];
                }
            }
            act => {
                let idx = st.pre.len();
                let n = cur.0.len();
                // Right after the first Dense, interval arithmetic is already exact: skip the back-substitution.
                let only_first_dense = ctx.len() == 1 && ctx[0].len() == 1 && matches!(ctx[0][0], Relaxed::Dense(_));
                let has_ops = ctx.iter().any(|c| !c.is_empty());
                // The prior and the splits first: they decide which units still need linear bounds.
                if let Some(p) = st.prior.and_then(|p| p.get(idx)) {
                    if p.0.len() == n {
                        for k in 0..n {
                            cur.0[k] = cur.0[k].max(p.0[k]);
                            cur.1[k] = cur.1[k].min(p.1[k]);
                        }
                    }
                }
                for s in st.splits.iter().filter(|s| s.act == idx) {
                    if s.unit >= n {
                        return Err(crate::error::invalid_err!(
                            "split on unit {} of activation layer {idx}, which has {n} units",
                            s.unit
                        ));
                    }
                    if s.active {
                        cur.0[s.unit] = cur.0[s.unit].max(0.0);
                    } else {
                        cur.1[s.unit] = cur.1[s.unit].min(0.0);
                    }
                }
                if st.opts.crown && has_ops && !only_first_dense && idx >= st.settled {
                    // A (Leaky)ReLU unit whose interval is already one-signed is relaxed exactly
                    // whatever its bounds, and the later layers' linear bounds do not read them: only
                    // the unstable units get back-substituted rows (most of them deep in a search).
                    let piecewise = matches!(act, Layer::ReLU | Layer::LeakyReLU { .. });
                    let rows: Vec<usize> =
                        (0..n).filter(|&k| !piecewise || (cur.0[k] < 0.0 && cur.1[k] > 0.0)).collect();
                    let r = rows.len();
                    if r > 0 {
                        let mut lam = Mat::<f64>::zeros(2 * r, n);
                        for (i, &k) in rows.iter().enumerate() {
                            lam[(i, k)] = 1.0;
                            lam[(r + i, k)] = -1.0;
                        }
                        let (lam_in, c) = back_substitute(ctx, lam);
                        let lb = concretize(&lam_in, &c, st.lo, st.hi);
                        for (i, &k) in rows.iter().enumerate() {
                            cur.0[k] = cur.0[k].max(lb[i]);
                            cur.1[k] = cur.1[k].min(-lb[r + i]);
                        }
                    }
                }
                // An empty interval proves the sub-domain empty only by a clear gap; a crossing within
                // rounding (e.g. a unit whose value is constant) is widened back instead.
                for k in 0..n {
                    let (l, u) = (cur.0[k], cur.1[k]);
                    if l > u {
                        if l - u > 1e-9 * (1.0 + l.abs() + u.abs()) {
                            st.infeasible = true;
                            st.pre.push(cur.clone());
                            return Ok(cur);
                        }
                        cur.0[k] = u;
                        cur.1[k] = l;
                    }
                }
                let r = relax(act, &cur.0, &cur.1, st.opts.slopes)?;
                st.pre.push(cur.clone());
                ctx.last_mut().unwrap().push(Relaxed::Act(r));
                cur = act_interval(act, &cur.0, &cur.1);
            }
        }
    }
    Ok(cur)
}

/// Sends the rows of `lam` (coefficients on the current layer) back through every level of `ctx`
/// to the input; returns the input coefficients and the constant of each row's lower bound.
pub fn back_substitute(ctx: &[Vec<Relaxed<'_>>], lam: Mat<f64>) -> (Mat<f64>, Vec<f64>) {
    let mut c = vec![0.0; lam.nrows()];
    // Internally one column per row: the relaxation step then runs over contiguous unit slices.
    let mut lt = lam.transpose().to_owned();
    for level in ctx.iter().rev() {
        lt = back_list(level, lt, &mut c);
    }
    (lt.transpose().to_owned(), c)
}

/// `lt`: (units, rows), the transposed coefficients.
fn back_list(ops: &[Relaxed<'_>], mut lt: Mat<f64>, c: &mut [f64]) -> Mat<f64> {
    for op in ops.iter().rev() {
        lt = match op {
            Relaxed::Dense(d) => {
                let b = faer::ColRef::from_slice(d.bias());
                matmul(faer::ColMut::from_slice_mut(c), Accum::Add, lt.transpose(), b, 1.0, Par::Seq);
                let mut out = Mat::<f64>::zeros(d.in_dim(), lt.ncols());
                matmul(out.as_mut(), Accum::Replace, d.weight().transpose(), lt.as_ref(), 1.0, Par::Seq);
                out
            }
            Relaxed::Act(r) => back_act(r, lt, c),
            Relaxed::Residual(inner, skip) => {
                let f = back_list(inner, lt.clone(), c);
                match skip {
                    None => lt + f,
                    Some(s) => {
                        // transposed: (lam S)^T = S^T lam^T (the skip has no bias)
                        let mut out = f;
                        matmul(out.as_mut(), Accum::Add, s.weight().transpose(), lt.as_ref(), 1.0, Par::Seq);
                        out
                    }
                }
            }
        };
    }
    lt
}

fn back_act(r: &Relax, mut lt: Mat<f64>, c: &mut [f64]) -> Mat<f64> {
    match r {
        Relax::Diag { ls, li, us, ui } => {
            for (i, ci) in c.iter_mut().enumerate() {
                let col = lt.col_as_slice_mut(i);
                let mut acc = 0.0;
                for (j, v) in col.iter_mut().enumerate() {
                    // n = v - p (not v.min(0)) so that a NaN coefficient stays NaN.
                    let p = v.max(0.0);
                    let n = *v - p;
                    *v = p * ls[j] + n * us[j];
                    acc += p * li[j] + n * ui[j];
                }
                *ci += acc;
            }
            lt
        }
        Relax::Pairs { pairs } => {
            let mut out = Mat::<f64>::zeros(lt.nrows(), lt.ncols());
            for (i, ci) in c.iter_mut().enumerate() {
                let col = lt.col_as_slice(i);
                let o = out.col_as_slice_mut(i);
                for p in pairs {
                    let (va, vb) = (col[p.a], col[p.b]);
                    let ca = if va >= 0.0 { p.lo_a } else { p.up_a };
                    let cb = if vb >= 0.0 { p.lo_b } else { p.up_b };
                    o[p.a] += va * ca[0] + vb * cb[0];
                    o[p.b] += va * ca[1] + vb * cb[1];
                    *ci += va * ca[2] + vb * cb[2];
                }
            }
            out
        }
    }
}

/// Lower bound of each row of `lam x + c` over the box [lo, hi].
pub fn concretize(lam: &Mat<f64>, c: &[f64], lo: &[f64], hi: &[f64]) -> Vec<f64> {
    let mut lb = c.to_vec();
    for j in 0..lam.ncols() {
        let (l, h) = (lo[j], hi[j]);
        for (v, &a) in lb.iter_mut().zip(lam.col_as_slice(j)) {
            let p = a.max(0.0);
            *v += p * l + (a - p) * h;
        }
    }
    lb
}

/// The box vertex minimising row `i` of `lam x`.
pub fn minimising_vertex(lam: &Mat<f64>, i: usize, lo: &[f64], hi: &[f64]) -> Vec<f64> {
    (0..lam.ncols()).map(|j| if lam[(i, j)] >= 0.0 { lo[j] } else { hi[j] }).collect()
}

impl<'a> Propagation<'a> {
    /// Lower bounds of `a_y f(x) + a_x x` (rows of `a_y`: (k, out), `a_x`: (k, in)) over the box, with
    /// the input coefficients of each row's linear lower bound (for split heuristics and vertices).
    pub fn objective(&self, a_y: &Mat<f64>, a_x: &Mat<f64>, crown: bool) -> (Vec<f64>, Mat<f64>) {
        let k = a_y.nrows();
        // interval bound
        let mut ib = vec![0.0; k];
        for i in 0..k {
            for j in 0..a_y.ncols() {
                let a = a_y[(i, j)];
                ib[i] += if a >= 0.0 { a * self.out.0[j] } else { a * self.out.1[j] };
            }
            for j in 0..a_x.ncols() {
                let a = a_x[(i, j)];
                ib[i] += if a >= 0.0 { a * self.lo[j] } else { a * self.hi[j] };
            }
        }
        if !crown {
            return (ib, a_x.clone());
        }
        let ctx = std::slice::from_ref(&self.ops);
        let (mut lam, c) = back_substitute(ctx, a_y.clone());
        lam += a_x;
        let lb = concretize(&lam, &c, &self.lo, &self.hi);
        (lb.iter().zip(&ib).map(|(a, b)| a.max(*b)).collect(), lam)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Pairing;

    #[test]
    fn nan_coefficients_stay_nan_through_a_relaxation_and_concretisation() {
        // An overflowed coefficient must never turn into 0 (that would be a silently unsound bound).
        let r = Relax::Diag { ls: vec![0.5, 1.0], li: vec![0.0, 0.0], us: vec![0.5, 1.0], ui: vec![1.0, 0.0] };
        let mut lt = Mat::<f64>::zeros(2, 1);
        lt[(0, 0)] = f64::NAN;
        lt[(1, 0)] = -2.0;
        let mut c = vec![0.0];
        let out = back_act(&r, lt, &mut c);
        assert!(out[(0, 0)].is_nan() && c[0].is_nan());
        assert_eq!(out[(1, 0)], -2.0);
        let mut lam = Mat::<f64>::zeros(1, 2);
        lam[(0, 0)] = f64::NAN;
        assert!(concretize(&lam, &[0.0], &[-1.0, -1.0], &[1.0, 1.0])[0].is_nan());
        lam[(0, 0)] = -3.0;
        lam[(0, 1)] = 2.0;
        assert_eq!(concretize(&lam, &[1.0], &[-1.0, -1.0], &[1.0, 2.0])[0], 1.0 - 3.0 - 2.0);
    }

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// A random square skip matrix (`skip`), or the identity.
    fn skip_of(seed: &mut u64, skip: bool) -> Option<Mat<f64>> {
        skip.then(|| Mat::from_fn(4, 4, |_, _| 0.8 * lcg(seed)))
    }

    fn random_net(seed: &mut u64, act: Layer, widths: &[usize], residual: bool, skip: bool) -> Network {
        let mut layers = Vec::new();
        for w in 0..widths.len() - 1 {
            let (n, m) = (widths[w], widths[w + 1]);
            let wm = Mat::from_fn(m, n, |_, _| lcg(seed));
            let b: Vec<f64> = (0..m).map(|_| lcg(seed) * 0.5).collect();
            layers.push(Layer::dense(wm, Some(b)).unwrap());
            if w + 2 < widths.len() {
                layers.push(act.clone());
                if residual && m == 4 {
                    let wr = Mat::from_fn(4, 4, |_, _| 0.5 * lcg(seed));
                    let skip = skip_of(seed, skip);
                    layers.push(Layer::residual(vec![Layer::dense(wr, None).unwrap(), act.clone()], skip).unwrap());
                }
            }
        }
        Network::new(layers, None).unwrap()
    }

    #[test]
    fn bounds_enclose_samples() {
        let mut seed = 7u64;
        let acts = [
            Layer::ReLU,
            Layer::LeakyReLU { slope: 0.2 },
            Layer::Tanh,
            Layer::Sigmoid,
            Layer::maxmin(Pairing::Adjacent),
            Layer::maxmin(Pairing::Halves),
            Layer::GroupSort { group_size: 4, pairing: Pairing::Adjacent },
        ];
        for act in acts {
            for (residual, skip) in [(false, false), (true, false), (true, true)] {
                let net = random_net(&mut seed, act.clone(), &[3, 4, 4, 2], residual, skip);
                let lo = vec![-0.5, -1.0, 0.2];
                let hi = vec![0.5, 0.3, 0.9];
                let a_y = Mat::from_fn(3, 2, |i, j| [[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]][i][j]);
                let a_x = Mat::from_fn(3, 3, |i, j| if i == 2 && j == 0 { 0.7 } else { 0.0 });
                for crown in [false, true] {
                    let p = propagate(&net, &lo, &hi, PropOptions { crown, ..Default::default() }, &[], None).unwrap();
                    let (lb, _) = p.objective(&a_y, &a_x, crown);
                    let mut s2 = 99u64;
                    for _ in 0..2000 {
                        let x: Vec<f64> = (0..3).map(|j| lo[j] + (hi[j] - lo[j]) * (lcg(&mut s2) + 1.0) / 2.0).collect();
                        let y = net.forward_one(&x).unwrap();
                        for i in 0..3 {
                            let v = a_y[(i, 0)] * y[0] + a_y[(i, 1)] * y[1] + a_x[(i, 0)] * x[0];
                            assert!(v >= lb[i] - 1e-9, "{} crown={crown} res={residual} skip={skip}: {v} < {}", act.kind(), lb[i]);
                        }
                        for k in 0..2 {
                            assert!(y[k] >= p.out.0[k] - 1e-9 && y[k] <= p.out.1[k] + 1e-9);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_split_child_with_settled_layers_has_the_bounds_of_the_full_pass() {
        // Each child of a ReLU split (the parent's bounds as prior, one more split at layer a) bounded with the
        // layers up to a settled equals, bit for bit, the full pass: the search's trees do not change.
        let mut seed = 11u64;
        for (residual, skip) in [(false, false), (true, false), (true, true)] {
            let net = random_net(&mut seed, Layer::ReLU, &[4, 12, 12, 12, 2], residual, skip);
            let (lo, hi) = (vec![-1.0; 4], vec![1.0; 4]);
            let mut parent = propagate(&net, &lo, &hi, PropOptions::default(), &[], None).unwrap();
            let mut splits: Vec<Split> = Vec::new();
            let mut checked = 0;
            for step in 0..6 {
                // the first unstable unit of the layer this step picks (deep and shallow splits in turn)
                let layers = parent.pre.len();
                let Some((a, k)) = (0..layers).map(|i| (i + step) % layers).find_map(|a| {
                    let (l, u) = &parent.pre[a];
                    (0..l.len()).find(|&k| l[k] < 0.0 && u[k] > 0.0).map(|k| (a, k))
                }) else { break };
                splits.push(Split { act: a, unit: k, active: step % 2 == 0 });
                let full = propagate(&net, &lo, &hi, PropOptions::default(), &splits, Some(&parent.pre)).unwrap();
                let fast = propagate_settled(&net, &lo, &hi, PropOptions::default(), &splits, Some(&parent.pre), a + 1).unwrap();
                assert_eq!(full.infeasible, fast.infeasible);
                if full.infeasible {
                    break;
                }
                assert_eq!(full.pre, fast.pre, "residual={residual} step={step}");
                assert_eq!(full.out, fast.out);
                checked += 1;
                parent = full;
            }
            assert!(checked >= 3, "{checked}");
        }
    }

    #[test]
    fn crown_is_tighter_than_intervals_on_relu() {
        let mut seed = 3u64;
        let net = random_net(&mut seed, Layer::ReLU, &[4, 16, 16, 1], false, false);
        let (lo, hi) = (vec![-1.0; 4], vec![1.0; 4]);
        let a_y = Mat::from_fn(1, 1, |_, _| 1.0);
        let a_x = Mat::zeros(1, 4);
        let ib = propagate(&net, &lo, &hi, PropOptions { crown: false, ..Default::default() }, &[], None).unwrap();
        let cr = propagate(&net, &lo, &hi, PropOptions::default(), &[], None).unwrap();
        assert!(cr.objective(&a_y, &a_x, true).0[0] > ib.objective(&a_y, &a_x, false).0[0]);
    }

    #[test]
    fn constant_units_are_not_mistaken_for_empty_domains() {
        // The second hidden unit has zero weights: its pre-activation is the constant 0.3 exactly.
        let w1 = Mat::from_fn(2, 2, |i, j| if i == 0 { [0.7, -0.2][j] } else { 0.0 });
        let w2 = Mat::from_fn(2, 2, |i, j| [[1.0, 0.5], [-0.3, 2.0]][i][j]);
        let net = Network::new(
            vec![
                Layer::dense(w1, Some(vec![0.1, 0.3])).unwrap(),
                Layer::ReLU,
                Layer::dense(w2, None).unwrap(),
                Layer::ReLU,
                Layer::dense(Mat::from_fn(1, 2, |_, _| 1.0), None).unwrap(),
            ],
            None,
        )
        .unwrap();
        let p = propagate(&net, &[-1.0, -1.0], &[1.0, 1.0], PropOptions::default(), &[], None).unwrap();
        assert!(!p.infeasible);
        let (l, u) = &p.pre[0];
        assert!(l[1] <= 0.3 && u[1] >= 0.3);
    }
}
