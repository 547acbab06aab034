//! Optimised lower bounds of objective rows: alpha-CROWN slopes and beta-CROWN split multipliers.
//!
//! For one row r of the objective `a_y f(x) + a_x x`, back-substitution through the relaxed network
//! gives `g(x) = lam x + c` with `g <= r` on the (split-restricted) box, and the bound is
//! `L = min_x g(x)` over the box. Two families of free parameters keep `g` a valid lower bound:
//!
//! * alpha: the lower line of an unstable ReLU-like unit `f(z) = max(z, a z)` (a <= 1) may be
//!   `alpha z` for any alpha in [a, 1] (the unit's function is convex, and alpha z is below both pieces);
//! * beta: for a split `s z_j <= 0` (s = -1: active, z_j >= 0; s = +1: inactive, z_j <= 0) and beta >= 0,
//!   `beta s z_j <= 0` on the sub-domain, so `r >= r + beta s z_j` there and the term can be added to the
//!   coefficient that reaches `z_j` during back-substitution.
//!
//! With the sign pattern of every back-substituted coefficient fixed, `g(x)` equals the forward
//! evaluation of the relaxed network from x (each unit using the line its coefficient selected) plus
//! `a_x x + sum beta s z(x)`. By the envelope theorem the gradient of `L` is that of `g` at the
//! minimising vertex x*: `dL/dalpha_j = v_j z_j(x*)` (v_j >= 0: the coefficient on unit j's output)
//! and `dL/dbeta = s z_j(x*)`. [`optimise_rows`] runs projected Adam ascent on these and keeps the
//! best iterate; every iterate is a sound bound, so only the projection matters for soundness.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

use super::propagate::{Propagation, Relaxed, Split};
use super::relax::Relax;
use crate::network::{Dense, Layer};

/// Parameters of one objective row: alpha per activation layer and unit, beta per split.
#[derive(Clone, Debug, Default)]
pub struct RowParams {
    pub alpha: Vec<Vec<f64>>,
    pub beta: Vec<f64>,
}

#[derive(Clone, Copy, Debug)]
pub struct OptOptions {
    /// Gradient steps per row (0: no optimisation).
    pub iters: usize,
    pub lr_alpha: f64,
    pub lr_beta: f64,
    /// Optimise a node only when its fixed-slope gap (c - lower bound of the closest row) is at most
    /// `gate` times the gain the last optimisation on its path achieved: far from proof, a tighter
    /// bound prunes nothing. Infinite: optimise every node.
    pub gate: f64,
}

impl Default for OptOptions {
    fn default() -> Self {
        Self { iters: 20, lr_alpha: 0.1, lr_beta: 0.05, gate: f64::INFINITY }
    }
}

/// The slope range [lo, hi] of an optimisable unit, or None.
fn alpha_range(layer: &Layer) -> Option<(f64, f64)> {
    match *layer {
        Layer::ReLU => Some((0.0, 1.0)),
        Layer::LeakyReLU { slope } if slope <= 1.0 => Some((slope, 1.0)),
        _ => None,
    }
}

/// What is fixed for a node: the relaxed network, which units are optimisable, and the splits.
pub struct Optimiser<'p, 'a> {
    prop: &'p Propagation<'a>,
    /// Per activation layer: the unit's alpha range where it is unstable and optimisable.
    ranges: Vec<Vec<Option<(f64, f64)>>>,
    /// (act, unit, s) per split.
    splits: Vec<(usize, usize, f64)>,
}

fn count_acts(ops: &[Relaxed<'_>]) -> usize {
    ops.iter()
        .map(|op| match op {
            Relaxed::Act(_) => 1,
            Relaxed::Residual(inner, _) => count_acts(inner),
            Relaxed::Dense(_) => 0,
        })
        .sum()
}

fn dense_t(d: &Dense, v: &[f64]) -> Vec<f64> {
    let vm = Mat::from_fn(v.len(), 1, |i, _| v[i]);
    let mut out = Mat::<f64>::zeros(d.in_dim(), 1);
    matmul(out.as_mut(), Accum::Replace, d.weight().transpose(), vm.as_ref(), 1.0, Par::Seq);
    (0..d.in_dim()).map(|j| out[(j, 0)]).collect()
}

fn dense_fwd(d: &Dense, h: &[f64]) -> Vec<f64> {
    let hm = Mat::from_fn(h.len(), 1, |i, _| h[i]);
    let mut out = Mat::<f64>::zeros(d.out_dim(), 1);
    matmul(out.as_mut(), Accum::Replace, d.weight(), hm.as_ref(), 1.0, Par::Seq);
    d.bias().iter().enumerate().map(|(i, b)| out[(i, 0)] + b).collect()
}

/// One evaluation of a row: its bound, input coefficients and the gradient.
pub struct RowEval {
    pub bound: f64,
    pub lam: Vec<f64>,
    pub g_alpha: Vec<Vec<f64>>,
    pub g_beta: Vec<f64>,
    /// Back-substituted coefficient on every activation output (per layer, per unit).
    pub vout: Vec<Vec<f64>>,
}

impl<'p, 'a> Optimiser<'p, 'a> {
    pub fn new(prop: &'p Propagation<'a>, acts: &[&Layer], splits: &[Split]) -> Self {
        let ranges = prop
            .pre
            .iter()
            .zip(acts)
            .map(|((l, u), layer)| {
                let r = alpha_range(layer);
                (0..l.len()).map(|k| if l[k] < 0.0 && u[k] > 0.0 { r } else { None }).collect()
            })
            .collect();
        let splits = splits.iter().map(|s| (s.act, s.unit, if s.active { -1.0 } else { 1.0 })).collect();
        Self { prop, ranges, splits }
    }

    /// Starting parameters: the relaxation's own lower slopes, beta = 0, overwritten by `warm`
    /// (projected) where it has values.
    pub fn init(&self, warm: Option<&RowParams>) -> RowParams {
        let mut alpha: Vec<Vec<f64>> = Vec::with_capacity(self.ranges.len());
        collect_ls(&self.prop.ops, &mut alpha);
        let mut beta = vec![0.0; self.splits.len()];
        if let Some(w) = warm {
            for (a, wa) in alpha.iter_mut().zip(&w.alpha) {
                if a.len() == wa.len() {
                    a.copy_from_slice(wa);
                }
            }
            for (b, wb) in beta.iter_mut().zip(&w.beta) {
                *b = *wb;
            }
        }
        let mut p = RowParams { alpha, beta };
        self.project(&mut p);
        p
    }

    fn project(&self, p: &mut RowParams) {
        for (a, r) in p.alpha.iter_mut().zip(&self.ranges) {
            for (v, rk) in a.iter_mut().zip(r) {
                if let Some((lo, hi)) = rk {
                    *v = v.clamp(*lo, *hi);
                }
            }
        }
        for b in p.beta.iter_mut() {
            *b = b.max(0.0);
        }
    }

    /// Bound, input coefficients and gradient of the row `ay . f(x) + ax . x` at parameters `p`.
    pub fn eval(&self, ay: &[f64], ax: &[f64], p: &RowParams) -> RowEval {
        let nacts = self.ranges.len();
        let mut bz: Vec<Vec<f64>> = self.ranges.iter().map(|r| vec![0.0; r.len()]).collect();
        for (&(a, u, s), b) in self.splits.iter().zip(&p.beta) {
            if a < nacts && u < bz[a].len() {
                bz[a][u] += b * s;
            }
        }
        let mut vout: Vec<Vec<f64>> = vec![Vec::new(); nacts];
        let mut c = 0.0;
        let ops = &self.prop.ops;
        let mut lam = self.back(ops, 0, ay.to_vec(), &mut c, p, &bz, &mut vout);
        let (lo, hi) = (&self.prop.lo, &self.prop.hi);
        let mut bound = c;
        let mut xs = vec![0.0; lam.len()];
        for j in 0..lam.len() {
            lam[j] += ax[j];
            xs[j] = if lam[j] >= 0.0 { lo[j] } else { hi[j] };
            bound += lam[j] * xs[j];
        }
        let mut zs: Vec<Vec<f64>> = vec![Vec::new(); nacts];
        self.fwd(ops, 0, xs.clone(), p, &vout, &mut zs);
        let mut g_alpha: Vec<Vec<f64>> = self.ranges.iter().map(|r| vec![0.0; r.len()]).collect();
        for (i, r) in self.ranges.iter().enumerate() {
            for (k, rk) in r.iter().enumerate() {
                if rk.is_some() && vout[i][k] >= 0.0 {
                    g_alpha[i][k] = vout[i][k] * zs[i][k];
                }
            }
        }
        let g_beta = self.splits.iter().map(|&(a, u, s)| s * zs.get(a).and_then(|z| z.get(u)).copied().unwrap_or(0.0)).collect();
        RowEval { bound, lam, g_alpha, g_beta, vout }
    }

    fn lower(&self, r: &Relax, idx: usize, k: usize, p: &RowParams) -> (f64, f64) {
        let Relax::Diag { ls, li, .. } = r else { unreachable!() };
        if self.ranges[idx][k].is_some() {
            (p.alpha[idx][k], 0.0)
        } else {
            (ls[k], li[k])
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn back(
        &self,
        ops: &[Relaxed<'_>],
        first: usize,
        mut v: Vec<f64>,
        c: &mut f64,
        p: &RowParams,
        bz: &[Vec<f64>],
        vout: &mut [Vec<f64>],
    ) -> Vec<f64> {
        let mut idx = first + count_acts(ops);
        for op in ops.iter().rev() {
            v = match op {
                Relaxed::Dense(d) => {
                    *c += d.bias().iter().zip(&v).map(|(b, x)| b * x).sum::<f64>();
                    dense_t(d, &v)
                }
                Relaxed::Residual(inner, skip) => {
                    idx -= count_acts(inner);
                    let f = self.back(inner, idx, v.clone(), c, p, bz, vout);
                    let sv = match skip {
                        None => v,
                        Some(s) => dense_t(s, &v),
                    };
                    sv.iter().zip(&f).map(|(a, b)| a + b).collect()
                }
                Relaxed::Act(r) => {
                    idx -= 1;
                    let mut nv = vec![0.0; v.len()];
                    match r {
                        Relax::Diag { us, ui, .. } => {
                            for k in 0..v.len() {
                                let vk = v[k];
                                let (s, i) = if vk >= 0.0 { self.lower(r, idx, k, p) } else { (us[k], ui[k]) };
                                nv[k] = vk * s;
                                *c += vk * i;
                            }
                        }
                        Relax::Pairs { pairs } => {
                            for q in pairs {
                                let (va, vb) = (v[q.a], v[q.b]);
                                let ca = if va >= 0.0 { q.lo_a } else { q.up_a };
                                let cb = if vb >= 0.0 { q.lo_b } else { q.up_b };
                                nv[q.a] += va * ca[0] + vb * cb[0];
                                nv[q.b] += va * ca[1] + vb * cb[1];
                                *c += va * ca[2] + vb * cb[2];
                            }
                        }
                    }
                    for (x, b) in nv.iter_mut().zip(&bz[idx]) {
                        *x += b;
                    }
                    vout[idx] = v;
                    nv
                }
            };
        }
        v
    }

    fn fwd(&self, ops: &[Relaxed<'_>], first: usize, mut h: Vec<f64>, p: &RowParams, vout: &[Vec<f64>], zs: &mut [Vec<f64>]) -> Vec<f64> {
        let mut idx = first;
        for op in ops {
            h = match op {
                Relaxed::Dense(d) => dense_fwd(d, &h),
                Relaxed::Residual(inner, skip) => {
                    let f = self.fwd(inner, idx, h.clone(), p, vout, zs);
                    idx += count_acts(inner);
                    let sh = match skip {
                        None => h,
                        Some(s) => dense_fwd(s, &h),
                    };
                    sh.iter().zip(&f).map(|(a, b)| a + b).collect()
                }
                Relaxed::Act(r) => {
                    let v = &vout[idx];
                    let mut out = vec![0.0; h.len()];
                    match r {
                        Relax::Diag { us, ui, .. } => {
                            for k in 0..h.len() {
                                let (s, i) = if v[k] >= 0.0 { self.lower(r, idx, k, p) } else { (us[k], ui[k]) };
                                out[k] = s * h[k] + i;
                            }
                        }
                        Relax::Pairs { pairs } => {
                            for q in pairs {
                                let ca = if v[q.a] >= 0.0 { q.lo_a } else { q.up_a };
                                let cb = if v[q.b] >= 0.0 { q.lo_b } else { q.up_b };
                                out[q.a] = ca[0] * h[q.a] + ca[1] * h[q.b] + ca[2];
                                out[q.b] = cb[0] * h[q.a] + cb[1] * h[q.b] + cb[2];
                            }
                        }
                    }
                    zs[idx] = h;
                    idx += 1;
                    out
                }
            };
        }
        h
    }

    /// Projected Adam ascent on one row from `start`, stopping early once the bound exceeds
    /// `target`; returns the best (bound, lam, params) seen.
    pub fn optimise(&self, ay: &[f64], ax: &[f64], start: RowParams, target: f64, opts: &OptOptions) -> (f64, Vec<f64>, RowParams) {
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        let mut p = start;
        let mut ma: Vec<Vec<f64>> = p.alpha.iter().map(|a| vec![0.0; a.len()]).collect();
        let mut va = ma.clone();
        let mut mb = vec![0.0; p.beta.len()];
        let mut vb = mb.clone();
        let mut best: Option<(f64, Vec<f64>, RowParams)> = None;
        for t in 0..=opts.iters {
            let e = self.eval(ay, ax, &p);
            if best.as_ref().is_none_or(|b| e.bound > b.0) {
                best = Some((e.bound, e.lam.clone(), p.clone()));
            }
            if t == opts.iters || best.as_ref().is_some_and(|b| b.0 > target) {
                break;
            }
            let step = |x: &mut f64, g: f64, m: &mut f64, v: &mut f64, lr: f64| {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let mh = *m / (1.0 - f64::powi(b1, t as i32 + 1));
                let vh = *v / (1.0 - f64::powi(b2, t as i32 + 1));
                *x += lr * mh / (vh.sqrt() + eps);
            };
            for i in 0..p.alpha.len() {
                for k in 0..p.alpha[i].len() {
                    if self.ranges[i][k].is_some() {
                        step(&mut p.alpha[i][k], e.g_alpha[i][k], &mut ma[i][k], &mut va[i][k], opts.lr_alpha);
                    }
                }
            }
            for j in 0..p.beta.len() {
                step(&mut p.beta[j], e.g_beta[j], &mut mb[j], &mut vb[j], opts.lr_beta);
            }
            self.project(&mut p);
        }
        best.expect("at least one evaluation")
    }
}

fn collect_ls(ops: &[Relaxed<'_>], out: &mut Vec<Vec<f64>>) {
    for op in ops {
        match op {
            Relaxed::Act(Relax::Diag { ls, .. }) => out.push(ls.clone()),
            Relaxed::Act(Relax::Pairs { pairs }) => out.push(vec![0.0; 2 * pairs.len()]),
            Relaxed::Residual(inner, _) => collect_ls(inner, out),
            Relaxed::Dense(_) => {}
        }
    }
}

/// Coefficients on every activation output of row `i` of `a_y f(x) + a_x x` back-substituted with
/// parameters `params` (or the fixed slopes): how much each unit's relaxation costs the bound
/// (branching scores).
pub fn output_coefficients(
    prop: &Propagation<'_>,
    acts: &[&Layer],
    splits: &[Split],
    a_y: &Mat<f64>,
    a_x: &Mat<f64>,
    i: usize,
    params: Option<&RowParams>,
) -> Vec<Vec<f64>> {
    let pb = Optimiser::new(prop, acts, splits);
    let p = pb.init(params);
    let ay: Vec<f64> = (0..a_y.ncols()).map(|j| a_y[(i, j)]).collect();
    let ax: Vec<f64> = (0..a_x.ncols()).map(|j| a_x[(i, j)]).collect();
    pb.eval(&ay, &ax, &p).vout
}

/// Optimised lower bounds of the rows of `a_y f(x) + a_x x` over a node's box, never looser than
/// `base` (the fixed-slope bound and its input coefficients, which are kept where they are better).
/// `warm` holds each row's starting parameters (e.g. the parent node's); the returned parameters are
/// each row's best. Rows are optimised most promising first (highest `lb - target`); once one row's
/// bound exceeds its `target` the rest are left at their starting parameters (the node is proved).
#[allow(clippy::too_many_arguments)]
pub fn optimise_rows(
    prop: &Propagation<'_>,
    acts: &[&Layer],
    splits: &[Split],
    a_y: &Mat<f64>,
    a_x: &Mat<f64>,
    base: (Vec<f64>, Mat<f64>),
    targets: &[f64],
    warm: Option<&[RowParams]>,
    opts: &OptOptions,
) -> (Vec<f64>, Mat<f64>, Vec<RowParams>) {
    let (mut lb, mut lam) = base;
    let pb = Optimiser::new(prop, acts, splits);
    let mut params: Vec<RowParams> = (0..lb.len()).map(|i| pb.init(warm.and_then(|w| w.get(i)))).collect();
    let mut order: Vec<usize> = (0..lb.len()).collect();
    let gap = |i: usize| lb[i] - targets.get(i).copied().unwrap_or(f64::INFINITY);
    order.sort_by(|&a, &b| gap(b).total_cmp(&gap(a)));
    for i in order {
        let ay: Vec<f64> = (0..a_y.ncols()).map(|j| a_y[(i, j)]).collect();
        let ax: Vec<f64> = (0..a_x.ncols()).map(|j| a_x[(i, j)]).collect();
        let target = targets.get(i).copied().unwrap_or(f64::INFINITY);
        let (b, l, p) = pb.optimise(&ay, &ax, params[i].clone(), target, opts);
        params[i] = p;
        if b > lb[i] {
            lb[i] = b;
            for (j, v) in l.iter().enumerate() {
                lam[(i, j)] = *v;
            }
        }
        if lb[i] > target {
            break;
        }
    }
    (lb, lam, params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::propagate::{propagate, PropOptions};
    use crate::bounds::activation_layers;
    use crate::network::Network;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn chain(seed: &mut u64, act: &Layer, widths: &[usize], residual: bool, skip: bool) -> Network {
        let mut layers = Vec::new();
        for w in 0..widths.len() - 1 {
            let (n, m) = (widths[w], widths[w + 1]);
            layers.push(Layer::dense(Mat::from_fn(m, n, |_, _| lcg(seed)), Some((0..m).map(|_| 0.3 * lcg(seed)).collect())).unwrap());
            if w + 2 < widths.len() {
                layers.push(act.clone());
                if residual {
                    let wr = Mat::from_fn(m, m, |_, _| 0.4 * lcg(seed));
                    let s = skip.then(|| Mat::from_fn(m, m, |_, _| 0.8 * lcg(seed)));
                    layers.push(Layer::residual(vec![Layer::dense(wr, None).unwrap(), act.clone()], s).unwrap());
                }
            }
        }
        Network::new(layers, None).unwrap()
    }

    /// Pre-activations of every activation layer at x (chains without residual blocks).
    fn pre_acts(net: &Network, x: &[f64]) -> Vec<Vec<f64>> {
        let mut h = x.to_vec();
        let mut out = Vec::new();
        for l in net.layers() {
            match l {
                Layer::Dense(d) => h = dense_fwd(d, &h),
                Layer::ReLU => {
                    out.push(h.clone());
                    h = h.iter().map(|v| v.max(0.0)).collect();
                }
                _ => unreachable!(),
            }
        }
        out
    }

    fn random_params(seed: &mut u64, o: &Optimiser<'_, '_>) -> RowParams {
        let mut p = o.init(None);
        for (a, r) in p.alpha.iter_mut().zip(&o.ranges) {
            for (v, rk) in a.iter_mut().zip(r) {
                if let Some((lo, hi)) = rk {
                    *v = lo + (hi - lo) * (0.1 + 0.4 * (lcg(seed) + 1.0));
                }
            }
        }
        for b in p.beta.iter_mut() {
            *b = 0.5 * (lcg(seed) + 1.0);
        }
        p
    }

    /// The gradient of the bound matches central finite differences wherever the bound is smooth.
    #[test]
    fn gradient_matches_finite_differences() {
        let mut seed = 11u64;
        let mut checked = 0;
        let mut total = 0;
        let cases = [
            (Layer::ReLU, false, false),
            (Layer::LeakyReLU { slope: 0.2 }, false, false),
            (Layer::ReLU, true, false),
            (Layer::ReLU, true, true),
        ];
        for (act, residual, skip) in cases {
            let net = chain(&mut seed, &act, &[3, 6, 6, 2], residual, skip);
            let acts = activation_layers(&net);
            let (lo, hi) = (vec![-1.0, -0.5, -0.8], vec![0.7, 1.0, 0.4]);
            let base = propagate(&net, &lo, &hi, PropOptions::default(), &[], None).unwrap();
            // split two unstable units of the first layer (one each way)
            let unst: Vec<usize> = (0..6).filter(|&k| base.pre[0].0[k] < 0.0 && base.pre[0].1[k] > 0.0).collect();
            assert!(unst.len() >= 3);
            let splits = [Split { act: 0, unit: unst[0], active: true }, Split { act: 0, unit: unst[1], active: false }];
            let prop = propagate(&net, &lo, &hi, PropOptions::default(), &splits, None).unwrap();
            assert!(!prop.infeasible);
            let o = Optimiser::new(&prop, &acts, &splits);
            let (ay, ax) = (vec![1.0, -0.7], vec![0.2, 0.0, -0.1]);
            let p = random_params(&mut seed, &o);
            let e = o.eval(&ay, &ax, &p);
            let h = 1e-6;
            let fd = |q: &RowParams| o.eval(&ay, &ax, q).bound;
            for i in 0..p.alpha.len() {
                for k in 0..p.alpha[i].len() {
                    if o.ranges[i][k].is_none() {
                        continue;
                    }
                    total += 1;
                    let (mut qp, mut qm) = (p.clone(), p.clone());
                    qp.alpha[i][k] += h;
                    qm.alpha[i][k] -= h;
                    let (fp, f0, fm) = (fd(&qp), e.bound, fd(&qm));
                    if ((fp - f0) - (f0 - fm)).abs() > 1e-9 {
                        continue; // a kink
                    }
                    checked += 1;
                    let g = (fp - fm) / (2.0 * h);
                    assert!((g - e.g_alpha[i][k]).abs() < 1e-5 * (1.0 + g.abs()), "alpha[{i}][{k}]: fd {g} vs {}", e.g_alpha[i][k]);
                }
            }
            for j in 0..p.beta.len() {
                total += 1;
                let (mut qp, mut qm) = (p.clone(), p.clone());
                qp.beta[j] += h;
                qm.beta[j] -= h;
                let (fp, fm) = (fd(&qp), fd(&qm));
                checked += 1;
                let g = (fp - fm) / (2.0 * h);
                assert!((g - e.g_beta[j]).abs() < 1e-5 * (1.0 + g.abs()), "beta[{j}]: fd {g} vs {}", e.g_beta[j]);
            }
        }
        assert!(total >= 10 && checked * 10 >= total * 8, "checked {checked} of {total}");
    }

    /// Optimised bounds with splits are never looser than the fixed-slope bound and never above the
    /// objective at sampled points of the split sub-domain; on these nets they are strictly tighter.
    #[test]
    fn optimised_bounds_are_sound_and_tighter() {
        let mut seed = 5u64;
        let (mut gain, mut nets) = (0.0, 0);
        for t in 0..12 {
            let net = chain(&mut seed, &Layer::ReLU, &[3, 8, 8, 2], false, false);
            let acts = activation_layers(&net);
            let (lo, hi) = (vec![-1.0; 3], vec![1.0; 3]);
            let root = propagate(&net, &lo, &hi, PropOptions::default(), &[], None).unwrap();
            let mut splits = vec![];
            for a in 0..2 {
                if let Some(k) = (0..8).find(|&k| root.pre[a].0[k] < 0.0 && root.pre[a].1[k] > 0.0) {
                    splits.push(Split { act: a, unit: k, active: (t + a) % 2 == 0 });
                }
            }
            let prop = propagate(&net, &lo, &hi, PropOptions::default(), &splits, None).unwrap();
            if prop.infeasible {
                continue;
            }
            let a_y = Mat::from_fn(2, 2, |i, j| [[1.0, -1.0], [-0.5, 1.0]][i][j]);
            let a_x = Mat::from_fn(2, 3, |i, j| if i == 1 && j == 2 { 0.3 } else { 0.0 });
            let base = prop.objective(&a_y, &a_x, true);
            let (lb, _, _) = optimise_rows(&prop, &acts, &splits, &a_y, &a_x, base.clone(), &[f64::INFINITY; 2], None,
                                           &OptOptions { iters: 40, ..Default::default() });
            // any parameters in the box give a sound bound too (large beta included)
            let o = Optimiser::new(&prop, &acts, &splits);
            let mut rnd = vec![];
            let mut s3 = 23u64 + t as u64;
            for i in 0..2 {
                let mut q = random_params(&mut s3, &o);
                q.beta.iter_mut().for_each(|b| *b *= 4.0);
                let ay = [a_y[(i, 0)], a_y[(i, 1)]];
                let ax = [a_x[(i, 0)], a_x[(i, 1)], a_x[(i, 2)]];
                rnd.push(o.eval(&ay, &ax, &q).bound);
            }
            let mut s2 = 17u64;
            let mut seen = 0;
            for _ in 0..4000 {
                let x: Vec<f64> = (0..3).map(|_| lcg(&mut s2)).collect();
                let z = pre_acts(&net, &x);
                if !splits.iter().all(|s| if s.active { z[s.act][s.unit] >= 0.0 } else { z[s.act][s.unit] <= 0.0 }) {
                    continue;
                }
                seen += 1;
                let y = net.forward_one(&x).unwrap();
                for i in 0..2 {
                    let v = a_y[(i, 0)] * y[0] + a_y[(i, 1)] * y[1] + a_x[(i, 2)] * x[2];
                    assert!(v >= lb[i] - 1e-9, "net {t} row {i}: {v} < {}", lb[i]);
                    assert!(v >= rnd[i] - 1e-9, "net {t} row {i}, random parameters: {v} < {}", rnd[i]);
                }
            }
            nets += (seen > 0) as usize;
            for i in 0..2 {
                assert!(lb[i] >= base.0[i]);
                gain += lb[i] - base.0[i];
            }
        }
        assert!(nets >= 6, "only {nets} sub-domains had sample points");
        assert!(gain > 0.1, "optimisation never tightened a bound (total gain {gain})");
    }
}
