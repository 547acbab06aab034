//! Branch and bound over input boxes or ReLU phases, best-first, evaluated in parallel with rayon.
//!
//! Each root [`Problem`] asks whether some x in a box satisfies every row of `a_y f(x) + a_x x <= c`
//! (one conjunction of the unsafe set). A node is pruned when a lower bound shows some row exceeds
//! its `c` by more than `margin`; it yields a candidate when a concrete point (box centre or the
//! vertices minimising the bounds) satisfies every row; otherwise it is split. Nodes that cannot be
//! split further are returned as [`Leaf`]s for an exact solver.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faer::Mat;
use rayon::prelude::*;

use super::optimize::{optimise_rows, output_coefficients, OptOptions, RowParams};
use super::propagate::{activation_layers, minimising_vertex, propagate, propagate_settled, Interval, PropOptions, Split};
use crate::error::{invalid_err, shape_err, Result};
use crate::network::{Layer, Network};

#[derive(Clone, Debug)]
pub struct Problem {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// (k, output_dim)
    pub a_y: Mat<f64>,
    /// (k, input_dim)
    pub a_x: Mat<f64>,
    pub c: Vec<f64>,
    /// The side lengths input splitting measures its boxes against (None: this box's). A search
    /// resumed from sub-boxes passes the original root's, so that it splits as the first one would
    /// (its guards against slicing compare sides relative to the root).
    pub scale: Option<Vec<f64>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitMode {
    Input,
    Relu,
}

#[derive(Clone, Copy, Debug)]
pub struct BabOptions {
    pub mode: SplitMode,
    pub time_limit: f64,
    pub max_nodes: usize,
    /// A row is proved only when its lower bound exceeds c by more than this (guards rounding).
    pub margin: f64,
    pub prop: PropOptions,
    /// Nodes evaluated per parallel batch.
    pub batch: usize,
    /// Input splitting stops (leaf) when the widest side is below this.
    pub min_width: f64,
    pub max_leaves: usize,
    /// Input splitting: choose the side by bounding both halves along every side (fixed slopes);
    /// off: the linear-coefficient heuristic alone.
    pub lookahead: bool,
    /// Optimised slopes (alpha-CROWN) and split multipliers (beta-CROWN, ReLU splits) for the
    /// objective rows; `iters: 0` keeps the fixed slopes of `prop`. Needs `prop.crown`.
    pub opt: OptOptions,
    /// Input splitting: a node whose unstable units are at most this share of its root box's (all
    /// activations ReLU or LeakyReLU) is split on ReLU phases instead, and so is everything below it
    /// (0: never). Small boxes deep in an input-split search keep a few units unstable whose
    /// relaxation the halving of sides removes only slowly; split multipliers remove it directly
    /// (ACAS Xu property 2 on 3_3 and 4_2: timeouts after 116 s and 240k-466k nodes before;
    /// bench/README.md). A share of all units instead switched too early on the small boxes of
    /// properties 3 and 4 (1_1 / property 4: 0.6 s -> 27 s).
    pub relu_share: f64,
    /// The unstable-unit count for the hybrid above, given directly instead of as `relu_share` of each
    /// root's (e.g. when a search resumes from sub-boxes of the original root); needs `relu_share > 0`.
    pub relu_below: Option<usize>,
    /// On a timeout or node limit, return the nodes still to search ([`BabResult::open`]), e.g. to
    /// look for counterexamples in them and resume the search from them.
    pub keep_open: bool,
}

impl Default for BabOptions {
    fn default() -> Self {
        Self {
            mode: SplitMode::Input,
            time_limit: 60.0,
            max_nodes: usize::MAX,
            margin: 1e-8,
            prop: PropOptions::default(),
            batch: 0,
            min_width: 1e-7,
            max_leaves: 10_000,
            lookahead: true,
            opt: OptOptions { gate: default_gate(SplitMode::Input), ..OptOptions::default() },
            keep_open: false,
            relu_share: 0.2,
            relu_below: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every root problem is infeasible.
    Holds,
    /// A point that satisfies every row of root problem `problem` (the caller replays it).
    Candidate { x: Vec<f64>, problem: usize },
    /// Search finished but some leaves were left undecided.
    Undecided,
    Timeout,
    /// `max_nodes` reached.
    NodeLimit,
}

#[derive(Clone, Debug)]
pub struct Leaf {
    pub problem: usize,
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    pub splits: Vec<Split>,
    /// Pre-activation bounds of every activation layer on this leaf.
    pub pre: Vec<Interval>,
}

#[derive(Clone, Debug, Default)]
pub struct BabStats {
    pub nodes: usize,
    pub pruned: usize,
    pub infeasible: usize,
    pub leaves: usize,
    pub max_depth: usize,
    pub max_queue: usize,
    pub root_stable: usize,
    pub root_unstable: usize,
    pub seconds: f64,
    /// Share of the root domains proved so far (each split halves a node's share; averaged over the
    /// problems): progress of an unfinished search. With input splitting alone it is the share of
    /// the boxes' volume.
    pub proved_volume: f64,
    /// The first problem's unstable-unit count below which the hybrid split on ReLU phases (0: off).
    pub relu_below: usize,
}

/// A node not yet searched when the search stopped early ([`BabOptions::keep_open`]).
#[derive(Clone, Debug)]
pub struct OpenNode {
    pub problem: usize,
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    pub splits: Vec<Split>,
    /// The lower bound of its parent's closest row minus its c (negative: undecided).
    pub score: f64,
}

#[derive(Clone, Debug)]
pub struct BabResult {
    pub outcome: Outcome,
    pub leaves: Vec<Leaf>,
    pub stats: BabStats,
    /// With [`BabOptions::keep_open`], after a timeout or node limit: the nodes left, most
    /// undecided (lowest score) first; together with `leaves` they cover what is not proved.
    pub open: Vec<OpenNode>,
}

struct Node {
    problem: usize,
    lo: Vec<f64>,
    hi: Vec<f64>,
    splits: Vec<Split>,
    prior: Option<Vec<Interval>>,
    /// Leading activation layers whose prior is final (see [`propagate_settled`]): a ReLU split's child.
    settled: usize,
    /// The parent's optimised parameters per objective row (warm start).
    warm: Option<Arc<Vec<RowParams>>>,
    /// How much the last optimisation on the path from the root closed the gap.
    gain: Option<f64>,
    /// Consecutive lookahead splits on the path that left the worse half no better.
    slices: u8,
    /// Its share of the root problem's domain (halved by every split).
    weight: f64,
    depth: usize,
    score: f64,
    seq: u64,
}

impl PartialEq for Node {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Node {}
impl PartialOrd for Node {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Node {
    // BinaryHeap is a max-heap: the node with the lowest score (closest to a violation) comes first.
    fn cmp(&self, o: &Self) -> Ordering {
        o.score.total_cmp(&self.score).then(o.seq.cmp(&self.seq))
    }
}

enum Eval {
    /// Not evaluated: the deadline passed first.
    Skipped(Node),
    Safe { infeasible: bool },
    Candidate(Vec<f64>),
    /// The children to search, and the share of the root box's volume in children the split's
    /// lookahead already proved (they are not searched again), with their number.
    Children { kids: Vec<Node>, proved: usize, proved_volume: f64 },
    Leaf(Leaf),
}

/// Counts (stable, unstable) piecewise-linear units: ReLU/LeakyReLU units and MaxMin pairs.
pub fn stability(acts: &[&Layer], pre: &[Interval]) -> (usize, usize) {
    let (mut s, mut u) = (0, 0);
    for (layer, (l, h)) in acts.iter().zip(pre) {
        match layer {
            Layer::ReLU | Layer::LeakyReLU { .. } => {
                for k in 0..l.len() {
                    if l[k] >= 0.0 || h[k] <= 0.0 {
                        s += 1
                    } else {
                        u += 1
                    }
                }
            }
            Layer::GroupSort { group_size: 2, pairing } => {
                let n = l.len();
                for j in 0..n / 2 {
                    let (a, b) = (pairing.member(j, 0, n, 2), pairing.member(j, 1, n, 2));
                    if l[a] >= h[b] || l[b] >= h[a] {
                        s += 1
                    } else {
                        u += 1
                    }
                }
            }
            _ => {}
        }
    }
    (s, u)
}

fn check_problem(net: &Network, p: &Problem, i: usize) -> Result<()> {
    let (n, m) = (net.input_dim(), net.output_dim());
    let k = p.c.len();
    if p.a_y.nrows() != k || p.a_x.nrows() != k || p.a_y.ncols() != m || p.a_x.ncols() != n {
        return Err(shape_err!(
            "problem {i}: constraint matrices have shapes ({}, {}) and ({}, {}) with {k} right-hand sides; \
             expected ({k}, {m}) over outputs and ({k}, {n}) over inputs",
            p.a_y.nrows(),
            p.a_y.ncols(),
            p.a_x.nrows(),
            p.a_x.ncols()
        ));
    }
    if k == 0 {
        return Err(invalid_err!("problem {i}: the unsafe conjunction has no constraints"));
    }
    if p.c.iter().any(|v| !v.is_finite()) {
        return Err(invalid_err!("problem {i}: non-finite right-hand side"));
    }
    Ok(())
}

fn satisfies(net: &Network, p: &Problem, x: &[f64]) -> bool {
    let Ok(y) = net.forward_one(x) else { return false };
    (0..p.c.len()).all(|i| {
        let v: f64 = (0..y.len()).map(|j| p.a_y[(i, j)] * y[j]).sum::<f64>()
            + (0..x.len()).map(|j| p.a_x[(i, j)] * x[j]).sum::<f64>();
        v <= p.c[i]
    })
}

/// The default optimisation gate ([`OptOptions::gate`]): input splitting optimises only nodes the
/// gain can close (same node count as always optimising on ACAS Xu, a quarter less time); ReLU
/// splitting needs the split multipliers on every node.
pub fn default_gate(mode: SplitMode) -> f64 {
    match mode {
        SplitMode::Input => 1.0,
        SplitMode::Relu => f64::INFINITY,
    }
}

/// Every activation layer is a ReLU or LeakyReLU (the units ReLU splitting branches on).
fn all_relu(acts: &[&Layer]) -> bool {
    acts.iter().all(|a| matches!(a, Layer::ReLU | Layer::LeakyReLU { .. }))
}

/// Input splitting chooses its side by lookahead only up to this many inputs.
const LOOKAHEAD_MAX_DIM: usize = 16;

/// Lookahead splits in a row that may leave the worse half no better than its parent.
const MAX_SLICES: u8 = 2;

/// The closest row's gap min_i (c_i + margin - lb_i) (positive: not proved).
fn gap(lb: &[f64], p: &Problem, margin: f64) -> f64 {
    lb.iter().zip(&p.c).map(|(l, c)| c + margin - l).fold(f64::INFINITY, f64::min)
}

/// `relu_below`: per problem, the unstable-unit count at or below which an input-split node is split
/// on ReLU phases instead (0: never).
fn evaluate(net: &Network, acts: &[&Layer], probs: &[Problem], relu_below: &[usize], node: Node, opts: &BabOptions,
            deadline: Instant) -> Result<Eval> {
    if Instant::now() >= deadline {
        return Ok(Eval::Skipped(node));
    }
    let p = &probs[node.problem];
    let prop = propagate_settled(net, &node.lo, &node.hi, opts.prop, &node.splits, node.prior.as_deref(), node.settled)?;
    if prop.infeasible {
        return Ok(Eval::Safe { infeasible: true });
    }
    // A node with ReLU splits (ReLU splitting, or the hybrid's below a node of input splitting) is
    // treated as in ReLU splitting: split multipliers optimised on every node, and the optimised
    // coefficients used.
    let node_relu = opts.mode == SplitMode::Relu || !node.splits.is_empty();
    let (mut lb, mut lam) = prop.objective(&p.a_y, &p.a_x, opts.prop.crown);
    let proved = lb.iter().zip(&p.c).any(|(l, c)| l - c > opts.margin);
    // Optimise only where the improvement the ancestors saw could close this node's gap.
    let close = match node.gain {
        Some(g) if opts.opt.gate.is_finite() && !node_relu => gap(&lb, p, opts.margin) <= opts.opt.gate * g,
        _ => true,
    };
    let mut gain = node.gain;
    let mut warm = node.warm.clone();
    if opts.prop.crown && opts.opt.iters > 0 && !proved && close {
        let targets: Vec<f64> = p.c.iter().map(|c| c + opts.margin).collect();
        let before = gap(&lb, p, opts.margin);
        let (l2, lam2, params) = optimise_rows(&prop, acts, &node.splits, &p.a_y, &p.a_x, (lb, lam.clone()), &targets,
                                              node.warm.as_deref().map(|w| w.as_slice()), &opts.opt);
        // Input splitting keeps the fixed-slope coefficients for its split choice and vertices: with
        // the optimised ones it took more nodes on ACAS Xu (bench/README.md).
        gain = Some(before - gap(&l2, p, opts.margin));
        lb = l2;
        if node_relu {
            lam = lam2;
        }
        warm = Some(Arc::new(params));
    }
    let margins: Vec<f64> = lb.iter().zip(&p.c).map(|(l, c)| l - c).collect();
    let (best, score) = margins
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |acc, (i, &m)| if m > acc.1 { (i, m) } else { acc });
    if score > opts.margin {
        return Ok(Eval::Safe { infeasible: false });
    }
    // Cheap concrete candidates.
    let centre: Vec<f64> = node.lo.iter().zip(&node.hi).map(|(a, b)| 0.5 * (a + b)).collect();
    let mut cands = vec![centre];
    for i in 0..lb.len() {
        cands.push(minimising_vertex(&lam, i, &node.lo, &node.hi));
    }
    for x in cands {
        if satisfies(net, p, &x) {
            return Ok(Eval::Candidate(x));
        }
    }
    let child = |lo: Vec<f64>, hi: Vec<f64>, splits: Vec<Split>, prior: Option<Vec<Interval>>, settled: usize| Node {
        problem: node.problem,
        lo,
        hi,
        splits,
        prior,
        settled,
        warm: warm.clone(),
        gain,
        slices: 0,
        depth: node.depth + 1,
        weight: 0.5 * node.weight,
        score,
        seq: 0,
    };
    let leaf = |pre: Vec<Interval>| {
        Eval::Leaf(Leaf { problem: node.problem, lo: node.lo.clone(), hi: node.hi.clone(), splits: node.splits.clone(), pre })
    };
    // Hybrid: input splitting hands a node with few unstable ReLUs left to ReLU splitting.
    // Once every unit of a hybrid node is fixed, its box is halved instead (keeping the splits): the
    // bound over the box then converges, where a leaf would go to the exact solver (ACAS Xu 1_1 /
    // property 5: 8.6 s -> 66 s with such leaves decided by Z3).
    let split_relu = opts.mode == SplitMode::Relu || {
        let unstable = if node_relu || relu_below[node.problem] > 0 { stability(acts, &prop.pre).1 } else { 0 };
        (node_relu || unstable <= relu_below[node.problem]) && unstable > 0
    };
    match if split_relu { SplitMode::Relu } else { SplitMode::Input } {
        SplitMode::Input => {
            let n = node.lo.len();
            let widths: Vec<f64> = (0..n).map(|j| node.hi[j] - node.lo[j]).collect();
            let wmax = widths.iter().cloned().fold(0.0, f64::max);
            if wmax < opts.min_width {
                return Ok(leaf(prop.pre));
            }
            // Split where the binding row's linear bound is most sensitive; fall back to the widest side.
            let mut dim = (0..n).max_by(|&a, &b| widths[a].total_cmp(&widths[b])).unwrap();
            let mut best_s = 0.0;
            for j in 0..n {
                let s = lam[(best, j)].abs() * widths[j];
                if s > best_s && widths[j] >= opts.min_width {
                    best_s = s;
                    dim = j;
                }
            }
            // Never let one side stay far wider (relative to the root box) than the chosen one: the
            // relaxation error depends on every side, not only on those with large coefficients.
            let rel = |j: usize| {
                let w0 = p.scale.as_ref().and_then(|s| s.get(j).copied()).unwrap_or(p.hi[j] - p.lo[j]);
                if w0 > 0.0 { widths[j] / w0 } else { 0.0 }
            };
            let widest = (0..n).max_by(|&a, &b| rel(a).total_cmp(&rel(b))).unwrap();
            if rel(widest) > 4.0 * rel(dim) {
                dim = widest;
            }
            let mut slices = 0;
            // Per side the lookahead bounded, per half: proved, and the half's own pre-activation bounds.
            type Halves = Vec<(bool, Vec<Interval>)>;
            let mut looked: Vec<Option<Halves>> = vec![None; n];
            // 2n extra bound passes per node: only for low-dimensional inputs.
            if opts.lookahead && n <= LOOKAHEAD_MAX_DIM {
                // Bound both halves along every side and keep the side that leaves the least total
                // gap in its two halves (a proved half counts as no gap, not as credit; maximising
                // the worse half alone stalled on ACAS Xu property 6): 2n extra bound passes per node,
                // but 10-400x fewer nodes than the coefficient heuristic alone (bench/README.md).
                let mut best_m = f64::NEG_INFINITY;
                let mut pick = (dim, true);
                // The heuristic's side first, so that it wins ties.
                let order: Vec<usize> = std::iter::once(dim).chain((0..n).filter(|&j| j != dim)).collect();
                for j in order.into_iter().filter(|&j| widths[j] >= opts.min_width) {
                    let mid = 0.5 * (node.lo[j] + node.hi[j]);
                    let (mut left, mut worse) = (0.0, f64::INFINITY);
                    let mut halves = Vec::with_capacity(2);
                    for half in 0..2 {
                        let (mut lo, mut hi) = (node.lo.clone(), node.hi.clone());
                        if half == 0 { hi[j] = mid } else { lo[j] = mid }
                        let q = propagate(net, &lo, &hi, opts.prop, &[], Some(&prop.pre))?;
                        let m = if q.infeasible {
                            0.0
                        } else {
                            let (l, _) = q.objective(&p.a_y, &p.a_x, opts.prop.crown);
                            -gap(&l, p, opts.margin)
                        };
                        left += m.min(0.0);
                        worse = worse.min(m);
                        // Proved exactly as `evaluate` would prove it: a row's bound beyond the margin.
                        halves.push((q.infeasible || m > 0.0, q.pre));
                    }
                    looked[j] = Some(halves);
                    if left > best_m {
                        best_m = left;
                        pick = (j, worse > score + 1e-12 * (1.0 + score.abs()));
                    }
                }
                // A side whose worse half is no better than this node only slices a sliver off; a
                // few such splits in a row are allowed (they help on ACAS Xu property 6), more
                // stall the search, so then the heuristic's side is split instead.
                if pick.1 {
                    dim = pick.0;
                } else if node.slices < MAX_SLICES {
                    dim = pick.0;
                    slices = node.slices + 1;
                }
            }
            // However good a side looks, slicing it while another stays far wider stalls on slivers
            // (measured on random MaxMin nets; 8 instead of 32 undoes most of the ACAS Xu gain).
            if rel(widest) > 32.0 * rel(dim) {
                dim = widest;
            }
            let mid = 0.5 * (node.lo[dim] + node.hi[dim]);
            let (mut hi1, mut lo2) = (node.hi.clone(), node.lo.clone());
            hi1[dim] = mid;
            lo2[dim] = mid;
            // The parent's bounds hold on both halves: intersected in, they mark the units already
            // stable, which then need no back-substitution. A half the lookahead bounded brings its
            // own (tighter) bounds instead, and is dropped when they proved it.
            let mut seen = looked.get_mut(dim).and_then(|l| l.take()).map(|h| h.into_iter());
            let (mut kids, mut proved, mut proved_volume) = (Vec::with_capacity(2), 0, 0.0);
            for (lo, hi) in [(node.lo.clone(), hi1), (lo2, node.hi.clone())] {
                let pre = match seen.as_mut().and_then(|h| h.next()) {
                    Some((true, _)) => {
                        proved += 1;
                        proved_volume += 0.5 * node.weight;
                        continue;
                    }
                    Some((false, pre)) => pre,
                    None => prop.pre.clone(),
                };
                let mut k = child(lo, hi, node.splits.clone(), Some(pre), 0);
                k.slices = slices;
                kids.push(k);
            }
            Ok(Eval::Children { kids, proved, proved_volume })
        }
        SplitMode::Relu => {
            // Branch on the unit whose upper (chord) relaxation costs the binding row's bound most:
            // |coefficient| x chord intercept where the coefficient is negative (BaBSR-style); ties and
            // all-zero scores fall back to the widest unstable unit (largest u (-l) / (u - l)).
            let coef = if opts.prop.crown {
                let params = warm.as_deref().and_then(|w| w.get(best));
                Some(output_coefficients(&prop, acts, &node.splits, &p.a_y, &p.a_x, best, params))
            } else {
                None
            };
            let mut pick: Option<(usize, usize, (f64, f64))> = None;
            for (a, (layer, (l, u))) in acts.iter().zip(&prop.pre).enumerate() {
                let slope = match layer {
                    Layer::ReLU => 0.0,
                    Layer::LeakyReLU { slope } => *slope,
                    _ => continue,
                };
                for k in 0..l.len() {
                    if l[k] < 0.0 && u[k] > 0.0 {
                        let width = u[k] * (-l[k]) / (u[k] - l[k]);
                        let v = coef.as_ref().and_then(|c| c.get(a)).and_then(|c| c.get(k)).copied().unwrap_or(0.0);
                        let s = ((-v).max(0.0) * width * (1.0 - slope).abs(), width);
                        if pick.is_none_or(|p| s.0 > p.2 .0 || (s.0 == p.2 .0 && s.1 > p.2 .1)) {
                            pick = Some((a, k, s));
                        }
                    }
                }
            }
            let Some((a, k, _)) = pick else { return Ok(leaf(prop.pre)) };
            let mut kids = Vec::with_capacity(2);
            for active in [true, false] {
                let mut s = node.splits.clone();
                s.push(Split { act: a, unit: k, active });
                // same box, one more split at layer a: the layers up to a keep the parent's bounds
                kids.push(child(node.lo.clone(), node.hi.clone(), s, Some(prop.pre.clone()), a + 1));
            }
            Ok(Eval::Children { kids, proved: 0, proved_volume: 0.0 })
        }
    }
}

/// Runs branch and bound on all `problems` together (the property holds iff every one is infeasible).
pub fn bab(net: &Network, problems: &[Problem], opts: &BabOptions) -> Result<BabResult> {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(opts.time_limit.max(0.0));
    net.reject_implicit("branch and bound (verification)")?;
    for (i, p) in problems.iter().enumerate() {
        check_problem(net, p, i)?;
    }
    let acts = activation_layers(net);
    let mut stats = BabStats::default();
    if let Some(p) = problems.first() {
        let root = propagate(net, &p.lo, &p.hi, opts.prop, &[], None)?;
        let (s, u) = stability(&acts, &root.pre);
        stats.root_stable = s;
        stats.root_unstable = u;
    }
    let hybrid = opts.mode == SplitMode::Input && opts.relu_share > 0.0 && all_relu(&acts);
    let relu_below: Vec<usize> = match opts.relu_below {
        _ if !hybrid => vec![0; problems.len()],
        Some(t) => vec![t; problems.len()],
        None => problems
            .iter()
            .map(|p| {
                let root = propagate(net, &p.lo, &p.hi, opts.prop, &[], None)?;
                Ok((opts.relu_share * stability(&acts, &root.pre).1 as f64) as usize)
            })
            .collect::<Result<_>>()?,
    };
    stats.relu_below = relu_below.first().copied().unwrap_or(0);
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    for (i, p) in problems.iter().enumerate() {
        heap.push(Node { problem: i, lo: p.lo.clone(), hi: p.hi.clone(), splits: vec![], prior: None, settled: 0, warm: None, gain: None, slices: 0, weight: 1.0, depth: 0, score: f64::NEG_INFINITY, seq });
        seq += 1;
    }
    // Small batches for the expensive ReLU-split nodes keep the deadline tight.
    let per_thread = if opts.mode == SplitMode::Relu { 2 } else { 8 };
    let batch = if opts.batch > 0 { opts.batch } else { per_thread * rayon::current_num_threads().max(1) };
    let mut leaves = Vec::new();
    let finish = |outcome, leaves, mut stats: BabStats, heap: BinaryHeap<Node>| {
        stats.seconds = t0.elapsed().as_secs_f64();
        let open = if opts.keep_open && matches!(outcome, Outcome::Timeout | Outcome::NodeLimit) {
            heap.into_sorted_vec()
                .into_iter()
                .rev()
                .map(|n| OpenNode { problem: n.problem, lo: n.lo, hi: n.hi, splits: n.splits, score: n.score })
                .collect()
        } else {
            Vec::new()
        };
        Ok(BabResult { outcome, leaves, stats, open })
    };
    while !heap.is_empty() {
        if Instant::now() >= deadline {
            return finish(Outcome::Timeout, leaves, stats, heap);
        }
        if stats.nodes >= opts.max_nodes {
            return finish(Outcome::NodeLimit, leaves, stats, heap);
        }
        let take = batch.min(heap.len()).min(opts.max_nodes - stats.nodes);
        let nodes: Vec<Node> = (0..take).map(|_| heap.pop().unwrap()).collect();
        stats.nodes += nodes.len();
        let results: Vec<(usize, usize, f64, Result<Eval>)> = nodes
            .into_par_iter()
            .map(|n| (n.problem, n.depth, n.weight, evaluate(net, &acts, problems, &relu_below, n, opts, deadline)))
            .collect();
        let mut timed_out = false;
        for (problem, depth, vol, r) in results {
            let r = r?;
            if !matches!(r, Eval::Skipped(_)) {
                stats.max_depth = stats.max_depth.max(depth);
            }
            match r {
                Eval::Skipped(n) => {
                    // Back to the queue (the rest of the batch is still recorded), then stop.
                    stats.nodes -= 1;
                    timed_out = true;
                    heap.push(n);
                }
                Eval::Safe { infeasible } => {
                    stats.pruned += 1;
                    stats.proved_volume += vol / problems.len() as f64;
                    stats.infeasible += infeasible as usize;
                }
                Eval::Candidate(x) => return finish(Outcome::Candidate { x, problem }, leaves, stats, heap),
                Eval::Leaf(l) => {
                    stats.leaves += 1;
                    leaves.push(l);
                    if leaves.len() >= opts.max_leaves {
                        return finish(Outcome::NodeLimit, leaves, stats, heap);
                    }
                }
                Eval::Children { kids, proved, proved_volume } => {
                    // Bounded (by the lookahead) and proved: counted as searched nodes.
                    stats.nodes += proved;
                    stats.pruned += proved;
                    stats.proved_volume += proved_volume / problems.len() as f64;
                    for mut k in kids {
                        k.seq = seq;
                        seq += 1;
                        heap.push(k);
                    }
                }
            }
        }
        stats.max_queue = stats.max_queue.max(heap.len());
        if timed_out {
            return finish(Outcome::Timeout, leaves, stats, heap);
        }
    }
    let outcome = if leaves.is_empty() { Outcome::Holds } else { Outcome::Undecided };
    finish(outcome, leaves, stats, heap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net_xor() -> Network {
        // y = relu(x0 - x1) + relu(x1 - x0) = |x0 - x1|
        let w1 = Mat::from_fn(2, 2, |i, j| [[1.0, -1.0], [-1.0, 1.0]][i][j]);
        let w2 = Mat::from_fn(1, 2, |_, _| 1.0);
        Network::new(vec![Layer::dense(w1, None).unwrap(), Layer::ReLU, Layer::dense(w2, None).unwrap()], None).unwrap()
    }

    fn problem(c: f64, lower: bool) -> Problem {
        // unsafe: y <= c (lower) or y >= c
        let s = if lower { 1.0 } else { -1.0 };
        Problem {
            lo: vec![-1.0, -1.0],
            hi: vec![1.0, 1.0],
            a_y: Mat::from_fn(1, 1, |_, _| s),
            a_x: Mat::zeros(1, 2),
            c: vec![s * c],
            scale: None,
        }
    }

    #[test]
    fn abs_difference_exact_cases() {
        let net = net_xor();
        for (mode, iters) in [(SplitMode::Input, 0), (SplitMode::Relu, 0), (SplitMode::Input, 20), (SplitMode::Relu, 20)] {
            let opt = OptOptions { iters, ..Default::default() };
            let opts = BabOptions { mode, time_limit: 10.0, opt, ..Default::default() };
            // |x0 - x1| <= 2 on the box: unsafe y >= 2.5 infeasible
            assert_eq!(bab(&net, &[problem(2.5, false)], &opts).unwrap().outcome, Outcome::Holds);
            // y >= 1.5 is reachable
            let r = bab(&net, &[problem(1.5, false)], &opts).unwrap();
            match r.outcome {
                Outcome::Candidate { x, .. } => assert!((x[0] - x[1]).abs() >= 1.5),
                o => panic!("{mode:?}: expected a candidate, got {o:?}"),
            }
            // y <= -0.1 is infeasible (y >= 0)
            assert_eq!(bab(&net, &[problem(-0.1, true)], &opts).unwrap().outcome, Outcome::Holds);
        }
    }

    #[test]
    fn hybrid_and_resumed_searches_decide_as_the_plain_one() {
        let net = net_xor();
        for (c, lower) in [(2.5, false), (1.5, false), (-0.1, true), (0.5, true)] {
            let plain = BabOptions { relu_share: 0.0, time_limit: 10.0, ..Default::default() };
            let want = bab(&net, &[problem(c, lower)], &plain).unwrap().outcome;
            let is_cand = |o: &Outcome| matches!(o, Outcome::Candidate { .. });
            // ReLU splitting from the root on (both units unstable there).
            let hybrid = BabOptions { relu_below: Some(2), ..plain };
            let got = bab(&net, &[problem(c, lower)], &hybrid).unwrap().outcome;
            assert!(got == want || (is_cand(&got) && is_cand(&want)), "{c}: {got:?} vs {want:?}");
            // Stopped after one node, then resumed from the open nodes' boxes.
            let first = bab(&net, &[problem(c, lower)], &BabOptions { max_nodes: 1, keep_open: true, ..plain }).unwrap();
            if first.outcome == Outcome::NodeLimit {
                assert!(!first.open.is_empty());
                let rest: Vec<Problem> =
                    first.open.iter().map(|o| Problem { lo: o.lo.clone(), hi: o.hi.clone(), ..problem(c, lower) }).collect();
                let got = bab(&net, &rest, &plain).unwrap().outcome;
                assert!(got == want || (is_cand(&got) && is_cand(&want)), "{c} resumed: {got:?} vs {want:?}");
            } else {
                assert!(first.open.is_empty());
            }
        }
    }

    #[test]
    fn rejects_bad_shapes_and_boxes() {
        let net = net_xor();
        let mut p = problem(1.0, false);
        p.a_x = Mat::zeros(1, 3);
        assert!(matches!(bab(&net, &[p], &BabOptions::default()), Err(crate::Error::Shape(_))));
        let mut p = problem(1.0, false);
        p.hi[0] = f64::INFINITY;
        assert!(matches!(bab(&net, &[p], &BabOptions::default()), Err(crate::Error::InvalidInput(_))));
    }
}
