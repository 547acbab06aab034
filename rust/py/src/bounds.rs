//! Bindings for bound propagation and branch and bound.

use nncert_core::bounds::{self, BabOptions, OptOptions, Outcome, PropOptions, Slopes, Split, SplitMode};
use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::numpy_to_mat;
use crate::errors::run_detached;
use crate::network::PyNetwork;

fn slopes(s: &str) -> PyResult<Slopes> {
    match s {
        "adaptive" => Ok(Slopes::Adaptive),
        "zero" => Ok(Slopes::Fixed(0.0)),
        "one" => Ok(Slopes::Fixed(1.0)),
        other => Err(PyValueError::new_err(format!("slopes must be 'adaptive', 'zero' or 'one', got {other:?}"))),
    }
}

fn intervals<'py>(py: Python<'py>, pre: &[(Vec<f64>, Vec<f64>)]) -> PyResult<Bound<'py, PyList>> {
    let items: Vec<_> = pre
        .iter()
        .map(|(l, u)| (PyArray1::from_slice(py, l), PyArray1::from_slice(py, u)))
        .collect();
    PyList::new(py, items)
}

fn opt_options(iters: Option<usize>) -> OptOptions {
    let d = OptOptions::default();
    OptOptions { iters: iters.unwrap_or(d.iters), ..d }
}

/// Lower bounds of the rows of a_y f(x) + a_x x over the box [lo, hi], with the output box and the
/// pre-activation boxes of every activation layer. method: "crown" or "interval". opt_iters > 0
/// (crown only) optimises the lower slopes (alpha-CROWN) and, with `splits` ((act, unit, active)
/// ReLU phases restricting the box), the split multipliers (beta-CROWN) of each row.
#[pyfunction]
#[pyo3(signature = (net, lo, hi, a_y, a_x, method="crown", slopes_="adaptive", opt_iters=0, splits=None))]
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn output_bounds<'py>(
    py: Python<'py>,
    net: &PyNetwork,
    lo: PyReadonlyArray1<'py, f64>,
    hi: PyReadonlyArray1<'py, f64>,
    a_y: PyReadonlyArray2<'py, f64>,
    a_x: PyReadonlyArray2<'py, f64>,
    method: &str,
    slopes_: &str,
    opt_iters: usize,
    splits: Option<Vec<(usize, usize, bool)>>,
) -> PyResult<Bound<'py, PyDict>> {
    let splits: Vec<Split> =
        splits.unwrap_or_default().into_iter().map(|(act, unit, active)| Split { act, unit, active }).collect();
    let crown = match method {
        "crown" => true,
        "interval" => false,
        other => return Err(PyValueError::new_err(format!("method must be 'crown' or 'interval', got {other:?}"))),
    };
    let opts = PropOptions { crown, slopes: slopes(slopes_)? };
    let (lo, hi) = (lo.as_array().to_vec(), hi.as_array().to_vec());
    let (a_y, a_x) = (numpy_to_mat(&a_y), numpy_to_mat(&a_x));
    let n = &net.inner;
    let (lb, out, pre) = run_detached(py, move || {
        if a_y.ncols() != n.output_dim() || a_x.ncols() != n.input_dim() || a_y.nrows() != a_x.nrows() {
            return Err(nncert_core::Error::Shape(format!(
                "a_y must be (k, {}) and a_x (k, {}), got ({}, {}) and ({}, {})",
                n.output_dim(),
                n.input_dim(),
                a_y.nrows(),
                a_y.ncols(),
                a_x.nrows(),
                a_x.ncols()
            )));
        }
        let acts = bounds::activation_layers(n);
        if let Some(s) = splits.iter().find(|s| s.act >= acts.len()) {
            return Err(nncert_core::Error::InvalidInput(format!(
                "split on activation layer {} but the network has {}",
                s.act,
                acts.len()
            )));
        }
        let p = bounds::propagate(n, &lo, &hi, opts, &splits, None)?;
        if p.infeasible {
            // The splits contradict the bounds: the sub-domain is empty.
            return Ok((vec![f64::INFINITY; a_y.nrows()], p.out, p.pre));
        }
        let mut lb = p.objective(&a_y, &a_x, crown);
        if crown && opt_iters > 0 {
            let o = OptOptions { iters: opt_iters, ..OptOptions::default() };
            let targets = vec![f64::INFINITY; a_y.nrows()];
            let (l, lam, _) = bounds::optimise_rows(&p, &acts, &splits, &a_y, &a_x, lb, &targets, None, &o);
            lb = (l, lam);
        }
        Ok((lb.0, p.out, p.pre))
    })?;
    let d = PyDict::new(py);
    d.set_item("lower", PyArray1::from_vec(py, lb))?;
    d.set_item("out_lo", PyArray1::from_vec(py, out.0))?;
    d.set_item("out_hi", PyArray1::from_vec(py, out.1))?;
    d.set_item("pre", intervals(py, &pre)?)?;
    Ok(d)
}

/// Branch and bound over `problems` (a list of (lo, hi, a_y, a_x, c), optionally with a sixth item: the
/// side lengths input splitting measures the box against, e.g. the original root's when resuming). Returns a dict with
/// outcome ("holds" | "candidate" | "undecided" | "timeout" | "node_limit"), x / problem for a
/// candidate, leaves (problem, lo, hi, splits, pre) and stats. opt_iters: gradient steps of the
/// optimised slopes / split multipliers per objective row and node (None: the default, 20; 0: off);
/// opt_gate: optimise a node only when its gap is at most opt_gate times the gain of the last
/// optimisation on its path (None: the mode's default, 1 for input splits, always for ReLU splits);
/// lookahead: input splitting picks the side by bounding both halves along every side. keep_open:
/// after a timeout or node limit, "open" lists the nodes left (problem, lo, hi, splits, score),
/// most undecided first. relu_share: input splitting hands nodes whose unstable ReLUs are at most
/// this share of the root box's to ReLU splitting (None: the default, 0.2; 0: never); relu_below: that
/// count given directly (e.g. when resuming from sub-boxes).
#[pyfunction]
#[pyo3(signature = (net, problems, mode="input", time_limit=60.0, max_nodes=None, margin=1e-8,
                    method="crown", slopes_="adaptive", batch=0, min_width=1e-7, max_leaves=10000, opt_iters=None,
                    opt_gate=None, lookahead=true, keep_open=false, relu_share=None, relu_below=None))]
#[allow(clippy::too_many_arguments)]
fn branch_and_bound<'py>(
    py: Python<'py>,
    net: &PyNetwork,
    problems: &Bound<'py, PyList>,
    mode: &str,
    time_limit: f64,
    max_nodes: Option<usize>,
    margin: f64,
    method: &str,
    slopes_: &str,
    batch: usize,
    min_width: f64,
    max_leaves: usize,
    opt_iters: Option<usize>,
    opt_gate: Option<f64>,
    lookahead: bool,
    keep_open: bool,
    relu_share: Option<f64>,
    relu_below: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let mode = match mode {
        "input" => SplitMode::Input,
        "relu" => SplitMode::Relu,
        other => return Err(PyValueError::new_err(format!("mode must be 'input' or 'relu', got {other:?}"))),
    };
    let crown = method == "crown";
    let mut probs = Vec::with_capacity(problems.len());
    for item in problems.iter() {
        // (lo, hi, a_y, a_x, c) or (lo, hi, a_y, a_x, c, scale)
        let scale: Option<Vec<f64>> = if item.len()? == 6 {
            let s: PyReadonlyArray1<f64> = item.get_item(5)?.extract()?;
            Some(s.as_array().to_vec())
        } else {
            None
        };
        let (lo, hi, a_y, a_x, c): (
            PyReadonlyArray1<f64>,
            PyReadonlyArray1<f64>,
            PyReadonlyArray2<f64>,
            PyReadonlyArray2<f64>,
            PyReadonlyArray1<f64>,
        ) = (item.get_item(0)?.extract()?, item.get_item(1)?.extract()?, item.get_item(2)?.extract()?,
             item.get_item(3)?.extract()?, item.get_item(4)?.extract()?);
        probs.push(bounds::Problem {
            lo: lo.as_array().to_vec(),
            hi: hi.as_array().to_vec(),
            a_y: numpy_to_mat(&a_y),
            a_x: numpy_to_mat(&a_x),
            c: c.as_array().to_vec(),
            scale,
        });
    }
    let opts = BabOptions {
        mode,
        time_limit,
        max_nodes: max_nodes.unwrap_or(usize::MAX),
        margin,
        prop: PropOptions { crown, slopes: slopes(slopes_)? },
        batch,
        min_width,
        max_leaves,
        lookahead,
        keep_open,
        relu_share: relu_share.unwrap_or(BabOptions::default().relu_share),
        relu_below,
        opt: OptOptions {
            gate: opt_gate.unwrap_or_else(|| bounds::default_gate(mode)),
            ..opt_options(opt_iters)
        },
    };
    let n = &net.inner;
    let r = run_detached(py, move || bounds::bab(n, &probs, &opts))?;
    let d = PyDict::new(py);
    let word = match &r.outcome {
        Outcome::Holds => "holds",
        Outcome::Candidate { .. } => "candidate",
        Outcome::Undecided => "undecided",
        Outcome::Timeout => "timeout",
        Outcome::NodeLimit => "node_limit",
    };
    d.set_item("outcome", word)?;
    if let Outcome::Candidate { x, problem } = &r.outcome {
        d.set_item("x", PyArray1::from_slice(py, x))?;
        d.set_item("problem", *problem)?;
    }
    let leaves = PyList::empty(py);
    for l in &r.leaves {
        let splits: Vec<(usize, usize, bool)> = l.splits.iter().map(|s: &Split| (s.act, s.unit, s.active)).collect();
        leaves.append((
            l.problem,
            PyArray1::from_slice(py, &l.lo),
            PyArray1::from_slice(py, &l.hi),
            splits,
            intervals(py, &l.pre)?,
        ))?;
    }
    d.set_item("leaves", leaves)?;
    if keep_open {
        let open = PyList::empty(py);
        for o in &r.open {
            let splits: Vec<(usize, usize, bool)> = o.splits.iter().map(|s: &Split| (s.act, s.unit, s.active)).collect();
            open.append((o.problem, PyArray1::from_slice(py, &o.lo), PyArray1::from_slice(py, &o.hi), splits, o.score))?;
        }
        d.set_item("open", open)?;
    }
    let s = &r.stats;
    let st = PyDict::new(py);
    st.set_item("nodes", s.nodes)?;
    st.set_item("pruned", s.pruned)?;
    st.set_item("infeasible", s.infeasible)?;
    st.set_item("leaves", s.leaves)?;
    st.set_item("max_depth", s.max_depth)?;
    st.set_item("max_queue", s.max_queue)?;
    st.set_item("stable", s.root_stable)?;
    st.set_item("unstable", s.root_unstable)?;
    st.set_item("seconds", s.seconds)?;
    st.set_item("proved_volume", s.proved_volume)?;
    st.set_item("relu_below", s.relu_below)?;
    d.set_item("stats", st)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(output_bounds, m)?)?;
    m.add_function(wrap_pyfunction!(branch_and_bound, m)?)?;
    Ok(())
}
