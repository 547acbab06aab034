//! Bindings for convex training (ADMM, SCP). Thin: convert, release the GIL, call the core, convert back.

use std::sync::Mutex;

use nncert_core::convex::{AdmmProblem, AdmmResult, AdmmSettings, Loss, Record, RobustAdmmProblem, ScpProblem, ScpSettings,
                          USolve};
use numpy::{PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{mat_to_numpy, RawMat};
use crate::errors::run_detached;

/// Solves for each column of `y` in turn (the solver returns its result and whether it was interrupted);
/// an interruption stops before the next column.
fn per_output<R>(
    y: faer::MatRef<'_, f64>,
    mut solve: impl FnMut(usize, &[f64]) -> nncert_core::Result<(R, bool)>,
) -> nncert_core::Result<Vec<R>> {
    let mut out = Vec::with_capacity(y.ncols());
    for c in 0..y.ncols() {
        let target: Vec<f64> = (0..y.nrows()).map(|i| y[(i, c)]).collect();
        let (res, stop) = solve(c, &target)?;
        out.push(res);
        if stop {
            break;
        }
    }
    Ok(out)
}

/// Runs the ADMM for each column of `y` (n x C), sharing one factorisation of the u-step.
/// `callback(output, iter, objective, primal_residual, dual_residual)` is called with the first record past each
/// multiple of `callback_every` iterations (records are kept at convergence checks: every iteration, or every
/// `check_every`-th), with the GIL held; an exception (e.g. KeyboardInterrupt) stops the run. `pcg_decay`: inexact
/// PCG u-steps (see `AdmmSettings::pcg_decay`).
#[pyfunction]
#[pyo3(signature = (x, y, patterns, beta, loss="squared", rho=1.0, max_iter=10000, eps_abs=1e-7, eps_rel=1e-6,
                    u_solver="auto", pcg_tol=1e-10, memory_limit=4294967296.0, time_limit=f64::INFINITY,
                    callback=None, callback_every=50, adapt_every=25, relaxation=1.6, z_weight=1.0,
                    project=true, anderson=0, anderson_safeguard=1.0, check_every=1, pcg_decay=0.0))]
#[allow(clippy::too_many_arguments)]
fn convex_admm<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    patterns: PyReadonlyArray2<'py, f64>,
    beta: f64,
    loss: &str,
    rho: f64,
    max_iter: usize,
    eps_abs: f64,
    eps_rel: f64,
    u_solver: &str,
    pcg_tol: f64,
    memory_limit: f64,
    time_limit: f64,
    callback: Option<Py<PyAny>>,
    callback_every: usize,
    adapt_every: usize,
    relaxation: f64,
    z_weight: f64,
    project: bool,
    anderson: usize,
    anderson_safeguard: f64,
    check_every: usize,
    pcg_decay: f64,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let loss = run_detached(py, || Loss::parse(loss))?;
    let u_solver = run_detached(py, || USolve::parse(u_solver))?;
    let settings = AdmmSettings {
        rho, max_iter, eps_abs, eps_rel, u_solver, pcg_tol, memory_limit, time_limit, adapt_every, relaxation,
        z_weight, project, anderson, anderson_safeguard, check_every, pcg_decay,
        ..AdmmSettings::default()
    };
    admm_columns(py, &x, &y, &patterns, beta, loss, &settings, &callback, callback_every, |xv, pv| {
        AdmmProblem::new(xv, pv, loss, &settings).map(|p| Box::new(p) as Box<dyn ColumnProblem>)
    })
}

/// The two ADMM problems (standard and robust) as the per-column runner sees them.
trait ColumnProblem {
    fn solve_column(&self, y: &[f64], beta: f64, loss: Loss, settings: &AdmmSettings,
                    progress: &mut dyn FnMut(&Record) -> bool) -> nncert_core::Result<AdmmResult>;
}

impl ColumnProblem for AdmmProblem<'_> {
    fn solve_column(&self, y: &[f64], beta: f64, loss: Loss, settings: &AdmmSettings,
                    progress: &mut dyn FnMut(&Record) -> bool) -> nncert_core::Result<AdmmResult> {
        self.solve(y, beta, loss, settings, progress)
    }
}

impl ColumnProblem for RobustAdmmProblem<'_> {
    fn solve_column(&self, y: &[f64], beta: f64, loss: Loss, settings: &AdmmSettings,
                    progress: &mut dyn FnMut(&Record) -> bool) -> nncert_core::Result<AdmmResult> {
        self.solve(y, beta, loss, settings, progress)
    }
}

/// Builds the problem from (X, patterns) once (GIL released) and solves it for each column of `y`, reporting
/// progress to `callback`; the returned dicts as described in `convex_admm`.
#[allow(clippy::too_many_arguments)]
fn admm_columns<'py, B>(
    py: Python<'py>,
    x: &PyReadonlyArray2<'py, f64>,
    y: &PyReadonlyArray2<'py, f64>,
    patterns: &PyReadonlyArray2<'py, f64>,
    beta: f64,
    loss: Loss,
    settings: &AdmmSettings,
    callback: &Option<Py<PyAny>>,
    callback_every: usize,
    build: B,
) -> PyResult<Vec<Bound<'py, PyDict>>>
where
    B: for<'a> FnOnce(faer::MatRef<'a, f64>, faer::MatRef<'a, f64>) -> nncert_core::Result<Box<dyn ColumnProblem + 'a>>
        + Send,
{
    let (xr, yr, pr) = (RawMat::of(x), RawMat::of(y), RawMat::of(patterns));
    let cb_error: Mutex<Option<PyErr>> = Mutex::new(None);
    let every = callback_every.max(1);
    let results = run_detached(py, || {
        // Safety: x, y and patterns stay borrowed until this function returns.
        let (xv, yv, pv) = unsafe { (xr.view(), yr.view(), pr.view()) };
        if yv.nrows() != xv.nrows() {
            return Err(nncert_core::Error::Shape(format!("y has {} rows but X has {}", yv.nrows(), xv.nrows())));
        }
        let problem = build(xv, pv)?;
        per_output(yv, |c, target| {
            // Records may be sparser than every iteration (check_every): report the first one past each multiple.
            let mut last = 0;
            let mut progress = |r: &Record| -> bool {
                let due = r.iter / every > last / every;
                last = r.iter;
                !due || report(callback, &cb_error, c, r)
            };
            let res = problem.solve_column(target, beta, loss, settings, &mut progress)?;
            let stop = res.status == "interrupted";
            Ok((res, stop))
        })
    })?;
    if let Some(e) = cb_error.lock().unwrap().take() {
        return Err(e);
    }
    results.into_iter().map(|r| admm_dict(py, r)).collect()
}

fn admm_dict(py: Python<'_>, r: AdmmResult) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("v", mat_to_numpy(py, &r.v))?;
    d.set_item("w", mat_to_numpy(py, &r.w))?;
    d.set_item("objective", r.objective)?;
    d.set_item("iterations", r.iterations)?;
    d.set_item("status", r.status)?;
    d.set_item("anderson_accepted", r.anderson_accepted)?;
    d.set_item("anderson_rejected", r.anderson_rejected)?;
    d.set_item("u_solver", r.u_solver.name())?;
    d.set_item("factor_seconds", r.factor_seconds)?;
    d.set_item("solve_seconds", r.solve_seconds)?;
    d.set_item("history", history_array(py, &r.history))?;
    Ok(d)
}

/// The l-inf adversarial program (radius `eps` on the coordinates where `feat` is true) by the robust ADMM, for each
/// column of `y`, sharing one factorisation; arguments and returned dicts as in `convex_admm` (objective: robust).
#[pyfunction]
#[pyo3(signature = (x, y, patterns, feat, eps, beta, loss="squared", rho=1.0, max_iter=10000, eps_abs=1e-7,
                    eps_rel=1e-6, u_solver="auto", pcg_tol=1e-10, memory_limit=4294967296.0,
                    time_limit=f64::INFINITY, callback=None, callback_every=50, adapt_every=25, relaxation=1.6,
                    z_weight=1.0, project=true))]
#[allow(clippy::too_many_arguments)]
fn convex_admm_robust<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    patterns: PyReadonlyArray2<'py, f64>,
    feat: Vec<bool>,
    eps: f64,
    beta: f64,
    loss: &str,
    rho: f64,
    max_iter: usize,
    eps_abs: f64,
    eps_rel: f64,
    u_solver: &str,
    pcg_tol: f64,
    memory_limit: f64,
    time_limit: f64,
    callback: Option<Py<PyAny>>,
    callback_every: usize,
    adapt_every: usize,
    relaxation: f64,
    z_weight: f64,
    project: bool,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let loss = run_detached(py, || Loss::parse(loss))?;
    let u_solver = run_detached(py, || USolve::parse(u_solver))?;
    let settings = AdmmSettings {
        rho, max_iter, eps_abs, eps_rel, u_solver, pcg_tol, memory_limit, time_limit, adapt_every, relaxation,
        z_weight, project,
        ..AdmmSettings::default()
    };
    admm_columns(py, &x, &y, &patterns, beta, loss, &settings, &callback, callback_every, |xv, pv| {
        RobustAdmmProblem::new(xv, pv, &feat, eps, &settings).map(|p| Box::new(p) as Box<dyn ColumnProblem>)
    })
}

fn history_array<'py>(py: Python<'py>, history: &[Record]) -> Bound<'py, PyArray2<f64>> {
    let h = faer::Mat::<f64>::from_fn(history.len(), 7, |i, j| {
        let rec = &history[i];
        [rec.iter as f64, rec.objective, rec.primal_residual, rec.dual_residual, rec.violation, rec.seconds,
         rec.inner_iterations as f64][j]
    });
    mat_to_numpy(py, &h)
}

/// Sampled convex program for each column of `y` (n x C) with the sampled neurons `h` (d x N), sharing one
/// factorisation. Returns dicts with a (N,), objective, iterations, status, factor_seconds, solve_seconds,
/// history (k, 7) as in `convex_admm`.
#[pyfunction]
#[pyo3(signature = (x, y, h, beta, loss="squared", rho=1.0, max_iter=10000, eps_abs=1e-8, eps_rel=1e-7,
                    time_limit=f64::INFINITY, callback=None, callback_every=50, adapt_every=20, relaxation=1.6))]
#[allow(clippy::too_many_arguments)]
fn convex_scp<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    h: PyReadonlyArray2<'py, f64>,
    beta: f64,
    loss: &str,
    rho: f64,
    max_iter: usize,
    eps_abs: f64,
    eps_rel: f64,
    time_limit: f64,
    callback: Option<Py<PyAny>>,
    callback_every: usize,
    adapt_every: usize,
    relaxation: f64,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let loss = run_detached(py, || Loss::parse(loss))?;
    let settings = ScpSettings { rho, max_iter, eps_abs, eps_rel, time_limit, adapt_every, relaxation,
                                 ..ScpSettings::default() };
    let (xr, yr, hr) = (RawMat::of(&x), RawMat::of(&y), RawMat::of(&h));
    let cb_error: Mutex<Option<PyErr>> = Mutex::new(None);
    let every = callback_every.max(1);
    let results = run_detached(py, || {
        // Safety: x, y and h stay borrowed until this function returns.
        let (xv, yv, hv) = unsafe { (xr.view(), yr.view(), hr.view()) };
        if yv.nrows() != xv.nrows() {
            return Err(nncert_core::Error::Shape(format!("y has {} rows but X has {}", yv.nrows(), xv.nrows())));
        }
        let problem = ScpProblem::new(xv, hv)?;
        per_output(yv, |c, target| {
            let mut progress = |r: &Record| -> bool { r.iter % every != 0 || report(&callback, &cb_error, c, r) };
            let res = problem.solve(target, beta, loss, &settings, &mut progress)?;
            let stop = res.status == "interrupted";
            Ok((res, stop))
        })
    })?;
    if let Some(e) = cb_error.lock().unwrap().take() {
        return Err(e);
    }
    results
        .into_iter()
        .map(|r| {
            let d = PyDict::new(py);
            d.set_item("a", numpy::PyArray1::from_vec(py, r.a))?;
            d.set_item("objective", r.objective)?;
            d.set_item("iterations", r.iterations)?;
            d.set_item("status", r.status)?;
            d.set_item("factor_seconds", r.factor_seconds)?;
            d.set_item("solve_seconds", r.solve_seconds)?;
            d.set_item("history", history_array(py, &r.history))?;
            Ok(d)
        })
        .collect()
}

/// Calls the Python progress callback every `every` iterations (GIL taken); false stops the run and keeps the error.
fn report(callback: &Option<Py<PyAny>>, cb_error: &Mutex<Option<PyErr>>, c: usize, r: &Record) -> bool {
    Python::attach(|py| {
        let res = py.check_signals().and_then(|_| match callback {
            Some(cb) => cb.call1(py, (c, r.iter, r.objective, r.primal_residual, r.dual_residual)).map(|_| ()),
            None => Ok(()),
        });
        match res {
            Ok(()) => true,
            Err(e) => {
                *cb_error.lock().unwrap() = Some(e);
                false
            }
        }
    })
}

/// Bytes the given u-step would allocate for an n x d problem with P patterns (no work done).
#[pyfunction]
fn convex_ustep_memory(kind: &str, n: usize, d: usize, p: usize) -> PyResult<f64> {
    let k = USolve::parse(kind).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    Ok(nncert_core::convex::ustep::memory_bytes(k, n, d, p))
}

/// The u-step `auto` would pick (or the explicit one, checked against `memory_limit` bytes) for an n x d problem
/// with P patterns and a run limited to `time_limit` seconds; the torch path uses it so that both paths choose the
/// same way.
#[pyfunction]
#[pyo3(signature = (kind, n, d, p, memory_limit, time_limit = f64::INFINITY))]
fn convex_ustep_choose(py: Python<'_>, kind: &str, n: usize, d: usize, p: usize, memory_limit: f64, time_limit: f64)
                       -> PyResult<&'static str> {
    run_detached(py, || {
        let k = USolve::parse(kind)?;
        Ok(nncert_core::convex::ustep::choose(k, n, d, p, memory_limit, time_limit)?.name())
    })
}

/// Projects each column j of `u` (d x 2P; column j uses pattern j mod P) onto its cone
/// {v : (2D_j - I) X v >= 0} (Hildreth); returns (projected u, largest remaining violation).
#[pyfunction]
#[pyo3(signature = (x, patterns, u, max_sweeps=2000))]
fn convex_project_cones<'py>(py: Python<'py>, x: PyReadonlyArray2<'py, f64>, patterns: PyReadonlyArray2<'py, f64>,
                             u: PyReadonlyArray2<'py, f64>, max_sweeps: usize) -> PyResult<(Bound<'py, PyArray2<f64>>, f64)> {
    let (xr, pr, ur) = (RawMat::of(&x), RawMat::of(&patterns), RawMat::of(&u));
    let (out, worst) = run_detached(py, || {
        // Safety: x, patterns and u stay borrowed until this function returns.
        let (xv, pv, uv) = unsafe { (xr.view(), pr.view(), ur.view()) };
        if pv.nrows() != xv.nrows() || uv.nrows() != xv.ncols() || uv.ncols() != 2 * pv.ncols() {
            return Err(nncert_core::Error::Shape(format!(
                "project_cones: X is {} x {}, patterns {} x {}, u {} x {} (u must be d x 2P)",
                xv.nrows(), xv.ncols(), pv.nrows(), pv.ncols(), uv.nrows(), uv.ncols())));
        }
        let mut out = uv.to_owned();
        let worst = nncert_core::convex::project::project_cones(xv, pv, out.as_mut(), max_sweeps);
        Ok((out, worst))
    })?;
    Ok((mat_to_numpy(py, &out), worst))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(convex_admm, m)?)?;
    m.add_function(wrap_pyfunction!(convex_admm_robust, m)?)?;
    m.add_function(wrap_pyfunction!(convex_ustep_memory, m)?)?;
    m.add_function(wrap_pyfunction!(convex_scp, m)?)?;
    m.add_function(wrap_pyfunction!(convex_ustep_choose, m)?)?;
    m.add_function(wrap_pyfunction!(convex_project_cones, m)?)?;
    Ok(())
}
