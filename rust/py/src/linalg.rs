//! Bindings for sparse matrices and Krylov solvers: scipy CSR arrays are read in place (int32 or int64
//! indices), the GIL is released for the solve and re-acquired only to call Python oracles/callbacks.

use std::sync::Mutex;

use nncert_core::linalg::{self, CsrRef, Ic0, Jacobi, LinOp, Preconditioner, SolveInfo, SolveSettings, Stencil7};
use nncert_core::Error;
use numpy::{PyArray1, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::mat_to_numpy;
use crate::errors::{run_detached, to_pyerr};

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| PyValueError::new_err(format!("{name} must be a contiguous 1-D array")))
}

enum Indices<'py> {
    I32(PyReadonlyArray1<'py, i32>, PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>, PyReadonlyArray1<'py, i64>),
}

fn indices<'py>(indptr: &Bound<'py, PyAny>, indices: &Bound<'py, PyAny>) -> PyResult<Indices<'py>> {
    if let (Ok(p), Ok(i)) = (indptr.extract(), indices.extract()) {
        return Ok(Indices::I32(p, i));
    }
    if let (Ok(p), Ok(i)) = (indptr.extract(), indices.extract()) {
        return Ok(Indices::I64(p, i));
    }
    Err(PyValueError::new_err("CSR indptr and indices must both be int32 or both int64 1-D arrays"))
}

/// Runs `$body` with `$a` bound to a validated `CsrRef` over the borrowed arrays, for either index type.
macro_rules! with_csr {
    ($py:expr, $indptr:expr, $indices:expr, $data:expr, $ncols:expr, |$a:ident| $body:expr) => {{
        let data = slice(&$data, "data")?;
        match indices($indptr, $indices)? {
            Indices::I32(p, i) => {
                let (p, i) = (slice(&p, "indptr")?, slice(&i, "indices")?);
                let $a = CsrRef::new($ncols, p, i, data).map_err(|e| to_pyerr($py, e))?;
                $body
            }
            Indices::I64(p, i) => {
                let (p, i) = (slice(&p, "indptr")?, slice(&i, "indices")?);
                let $a = CsrRef::new($ncols, p, i, data).map_err(|e| to_pyerr($py, e))?;
                $body
            }
        }
    }};
}

fn settings(tol: f64, maxiter: usize, recompute_every: usize, time_limit: Option<f64>) -> PyResult<SolveSettings> {
    if !(tol > 0.0 && tol.is_finite()) {
        return Err(PyValueError::new_err(format!("tol must be a positive finite number, got {tol}")));
    }
    Ok(SolveSettings { tol, maxiter, recompute_every, time_limit_s: time_limit, progress_every: 10 })
}

/// A Python progress callback `(iteration, relative_residual) -> bool | None` (False stops the solve).
struct Callback {
    f: Option<Py<PyAny>>,
    err: Mutex<Option<PyErr>>,
}

impl Callback {
    fn call(&self, it: usize, res: f64) -> bool {
        let Some(f) = &self.f else { return true };
        Python::attach(|py| match f.call1(py, (it, res)) {
            Ok(v) => !v.bind(py).is(&*pyo3::types::PyBool::new(py, false)),
            Err(e) => {
                *self.err.lock().unwrap() = Some(e);
                false
            }
        })
    }
    fn take_err(&self) -> Option<PyErr> {
        self.err.lock().unwrap().take()
    }
}

fn info_dict<'py>(py: Python<'py>, info: &SolveInfo, method: &str, bytes: usize) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("iterations", info.iterations)?;
    d.set_item("residuals", PyArray1::from_slice(py, &info.residuals))?;
    d.set_item("true_residual", info.true_residual)?;
    d.set_item("converged", info.converged)?;
    d.set_item("reason", info.reason.as_str())?;
    d.set_item("seconds", info.seconds)?;
    d.set_item("matvecs", info.matvecs)?;
    d.set_item("false_convergences", info.false_convergences)?;
    d.set_item("fallbacks", info.fallbacks)?;
    d.set_item("method", method)?;
    d.set_item("bytes_per_matvec", bytes)?;
    Ok(d)
}

type Solved<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyDict>);

#[allow(clippy::too_many_arguments)]
fn run_pcg<'py>(
    py: Python<'py>,
    a: &dyn LinOp,
    m: Option<&dyn Preconditioner>,
    b: &[f64],
    x0: Option<&[f64]>,
    s: &SolveSettings,
    cb: &Callback,
    method: &str,
) -> PyResult<Solved<'py>> {
    let progress = |i: usize, r: f64| cb.call(i, r);
    let res = run_detached(py, || linalg::pcg(a, b, x0, m, s, Some(&progress)));
    if let Some(e) = cb.take_err() {
        return Err(e);
    }
    let (x, info) = res?;
    Ok((PyArray1::from_vec(py, x), info_dict(py, &info, method, a.bytes_per_apply())?))
}

/// y = A x for a CSR matrix.
#[pyfunction]
fn csr_matvec<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: PyReadonlyArray1<'py, f64>,
    ncols: usize,
    x: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let xs = slice(&x, "x")?;
    if xs.len() != ncols {
        return Err(to_pyerr(py, Error::Shape(format!("x has length {} but the matrix has {ncols} columns", xs.len()))));
    }
    with_csr!(py, indptr, indices, data, ncols, |a| {
        let mut y = vec![0.0; a.nrows()];
        run_detached(py, || {
            a.matvec(xs, &mut y);
            Ok(())
        })?;
        Ok(PyArray1::from_vec(py, y))
    })
}

/// (Preconditioned) CG on a CSR matrix. precond: "none" | "jacobi" | "ic0".
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, ncols, b, x0=None, tol=1e-6, maxiter=10000, precond="none",
                    recompute_every=50, time_limit=None, progress=None))]
#[allow(clippy::too_many_arguments)]
fn csr_cg<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: PyReadonlyArray1<'py, f64>,
    ncols: usize,
    b: PyReadonlyArray1<'py, f64>,
    x0: Option<PyReadonlyArray1<'py, f64>>,
    tol: f64,
    maxiter: usize,
    precond: &str,
    recompute_every: usize,
    time_limit: Option<f64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Solved<'py>> {
    let s = settings(tol, maxiter, recompute_every, time_limit)?;
    let bs = slice(&b, "b")?;
    let x0s = x0.as_ref().map(|v| slice(v, "x0")).transpose()?;
    let cb = Callback { f: progress, err: Mutex::new(None) };
    with_csr!(py, indptr, indices, data, ncols, |a| {
        if a.nrows() != a.ncols() {
            return Err(to_pyerr(py, Error::Shape(format!("CG needs a square matrix, got {}x{}", a.nrows(), a.ncols()))));
        }
        match precond {
            "none" => run_pcg(py, &a, None, bs, x0s, &s, &cb, "cg"),
            "jacobi" => {
                let m = Jacobi::new(&a.diagonal().unwrap()).map_err(|e| to_pyerr(py, e))?;
                run_pcg(py, &a, Some(&m), bs, x0s, &s, &cb, "pcg-jacobi")
            }
            "ic0" => {
                let m = run_detached(py, || Ic0::new(&a))?;
                let solved = run_pcg(py, &a, Some(&m), bs, x0s, &s, &cb, "pcg-ic0")?;
                // A breakdown of plain IC(0) was retried on A + shift * diag(A): say so.
                solved.1.set_item("ic0_shift", m.shift)?;
                Ok(solved)
            }
            other => Err(PyValueError::new_err(format!("precond must be None, 'jacobi' or 'ic0', got {other:?}"))),
        }
    })
}

/// CG on the matrix-free 7-point stencil over a full (nx, ny, nz) grid; `solid` is a flat C-order mask.
#[pyfunction]
#[pyo3(signature = (shape, solid, b, x0=None, tol=1e-6, maxiter=10000, precond="none", recompute_every=50,
                    time_limit=None, progress=None))]
#[allow(clippy::too_many_arguments)]
fn stencil_cg<'py>(
    py: Python<'py>,
    shape: (usize, usize, usize),
    solid: Option<PyReadonlyArray1<'py, bool>>,
    b: PyReadonlyArray1<'py, f64>,
    x0: Option<PyReadonlyArray1<'py, f64>>,
    tol: f64,
    maxiter: usize,
    precond: &str,
    recompute_every: usize,
    time_limit: Option<f64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Solved<'py>> {
    let s = settings(tol, maxiter, recompute_every, time_limit)?;
    let mask = match &solid {
        Some(m) => Some(slice(m, "solid")?.to_vec()),
        None => None,
    };
    let op = Stencil7::new(shape.0, shape.1, shape.2, mask).map_err(|e| to_pyerr(py, e))?;
    let bs = slice(&b, "b")?;
    let x0s = x0.as_ref().map(|v| slice(v, "x0")).transpose()?;
    let cb = Callback { f: progress, err: Mutex::new(None) };
    match precond {
        "none" => run_pcg(py, &op, None, bs, x0s, &s, &cb, "cg-stencil"),
        other => Err(PyValueError::new_err(format!("the stencil operator supports precond=None only, got {other:?}"))),
    }
}

/// A LinOp whose product calls a Python callable `matvec(x) -> y` with the GIL re-acquired. The first
/// Python error is kept and the product filled with NaN, which stops the solver; the caller re-raises it.
struct PyLinOp {
    f: Py<PyAny>,
    n: usize,
    err: Mutex<Option<PyErr>>,
}

impl LinOp for PyLinOp {
    fn dim(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let out = Python::attach(|py| -> PyResult<()> {
            let res = self.f.call1(py, (PyArray1::from_slice(py, x),))?;
            let v: PyReadonlyArray1<f64> = res.extract(py)?;
            if v.len() != self.n {
                return Err(PyValueError::new_err(format!("matvec returned {} values, expected {}", v.len(), self.n)));
            }
            y.iter_mut().zip(v.as_array().iter()).for_each(|(a, b)| *a = *b);
            Ok(())
        });
        if let Err(e) = out {
            y.fill(f64::NAN);
            let mut slot = self.err.lock().unwrap();
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }
}

/// CG on an operator given by a Python `matvec` callable (scipy LinearOperator).
#[pyfunction]
#[pyo3(signature = (n, matvec, b, x0=None, tol=1e-6, maxiter=10000, recompute_every=50, time_limit=None,
                    progress=None))]
#[allow(clippy::too_many_arguments)]
fn op_cg<'py>(
    py: Python<'py>,
    n: usize,
    matvec: Py<PyAny>,
    b: PyReadonlyArray1<'py, f64>,
    x0: Option<PyReadonlyArray1<'py, f64>>,
    tol: f64,
    maxiter: usize,
    recompute_every: usize,
    time_limit: Option<f64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Solved<'py>> {
    let s = settings(tol, maxiter, recompute_every, time_limit)?;
    let bs = slice(&b, "b")?;
    let x0s = x0.as_ref().map(|v| slice(v, "x0")).transpose()?;
    let cb = Callback { f: progress, err: Mutex::new(None) };
    let op = PyLinOp { f: matvec, n, err: Mutex::new(None) };
    let res = run_pcg(py, &op, None, bs, x0s, &s, &cb, "cg");
    if let Some(e) = op.err.lock().unwrap().take() {
        return Err(e);
    }
    res
}

/// Calls a Python callable `f(r) -> q` (numpy float64 vectors) with the GIL re-acquired.
struct PyOracle {
    f: Py<PyAny>,
    n: usize,
    err: Option<PyErr>,
}

impl linalg::DirectionOracle for PyOracle {
    fn direction(&mut self, r: &[f64], q: &mut [f64]) -> nncert_core::Result<()> {
        let n = self.n;
        let out = Python::attach(|py| -> PyResult<Result<(), Error>> {
            let arr = PyArray1::from_slice(py, r);
            let res = self.f.call1(py, (arr,))?;
            let res = res.bind(py);
            let Ok(v) = res.extract::<PyReadonlyArray1<f64>>() else {
                let desc = res.getattr("shape").map(|s| s.to_string()).unwrap_or_else(|_| res.get_type().to_string());
                return Ok(Err(Error::Shape(format!(
                    "the direction oracle must return a 1-D float64 array of length {n}, got {desc}"
                ))));
            };
            if v.len() != n {
                return Ok(Err(Error::Shape(format!(
                    "the direction oracle returned {} values, expected {n}",
                    v.len()
                ))));
            }
            let av = v.as_array();
            q.iter_mut().zip(av.iter()).for_each(|(qi, vi)| *qi = *vi);
            Ok(Ok(()))
        });
        match out {
            Ok(r) => r,
            Err(e) => {
                self.err = Some(e);
                Err(Error::Solver("the direction oracle raised an exception".into()))
            }
        }
    }
}

/// DCDM on a CSR matrix with a Python direction oracle.
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, ncols, b, oracle, k=2, x0=None, tol=1e-6, maxiter=1000,
                    recompute_every=50, time_limit=None, progress=None))]
#[allow(clippy::too_many_arguments)]
fn csr_dcdm<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: PyReadonlyArray1<'py, f64>,
    ncols: usize,
    b: PyReadonlyArray1<'py, f64>,
    oracle: Py<PyAny>,
    k: usize,
    x0: Option<PyReadonlyArray1<'py, f64>>,
    tol: f64,
    maxiter: usize,
    recompute_every: usize,
    time_limit: Option<f64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Solved<'py>> {
    let s = settings(tol, maxiter, recompute_every, time_limit)?;
    let bs = slice(&b, "b")?;
    let x0s = x0.as_ref().map(|v| slice(v, "x0")).transpose()?;
    let cb = Callback { f: progress, err: Mutex::new(None) };
    with_csr!(py, indptr, indices, data, ncols, |a| {
        if a.nrows() != a.ncols() {
            return Err(to_pyerr(py, Error::Shape(format!("DCDM needs a square matrix, got {}x{}", a.nrows(), a.ncols()))));
        }
        let mut or = PyOracle { f: oracle, n: a.nrows(), err: None };
        let progress = |i: usize, r: f64| cb.call(i, r);
        let res = run_detached(py, || linalg::dcdm(&a, bs, x0s, &mut or, k, &s, Some(&progress)));
        if let Some(e) = or.err.take().or_else(|| cb.take_err()) {
            return Err(e);
        }
        let (x, info) = res?;
        Ok((PyArray1::from_vec(py, x), info_dict(py, &info, "dcdm", a.bytes_per_apply())?))
    })
}

/// m Lanczos steps with full reorthogonalisation: (ritz values, ritz vectors (n, k), residual norms).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn csr_lanczos<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: PyReadonlyArray1<'py, f64>,
    ncols: usize,
    v0: PyReadonlyArray1<'py, f64>,
    m: usize,
) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, numpy::PyArray2<f64>>, Bound<'py, PyArray1<f64>>)> {
    let v = slice(&v0, "v0")?;
    with_csr!(py, indptr, indices, data, ncols, |a| {
        let rp = run_detached(py, || linalg::lanczos(&a, v, m))?;
        Ok((PyArray1::from_vec(py, rp.values), mat_to_numpy(py, &rp.vectors), PyArray1::from_vec(py, rp.residuals)))
    })
}

/// Best-of-`reps` STREAM-triad bandwidth in bytes/second over three arrays of n float64.
#[pyfunction]
fn stream_triad(py: Python<'_>, n: usize, reps: usize) -> PyResult<f64> {
    run_detached(py, || {
        let (mut a, b, c) = (vec![0.0; n], vec![1.0; n], vec![2.0; n]);
        let mut best = f64::INFINITY;
        let mut bytes = 0;
        for _ in 0..reps.max(1) {
            let t = std::time::Instant::now();
            bytes = linalg::vecops::triad(&mut a, &b, &c, 0.5);
            best = best.min(t.elapsed().as_secs_f64());
        }
        std::hint::black_box(&a);
        Ok(bytes as f64 / best)
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(csr_matvec, m)?)?;
    m.add_function(wrap_pyfunction!(csr_cg, m)?)?;
    m.add_function(wrap_pyfunction!(stencil_cg, m)?)?;
    m.add_function(wrap_pyfunction!(op_cg, m)?)?;
    m.add_function(wrap_pyfunction!(csr_dcdm, m)?)?;
    m.add_function(wrap_pyfunction!(csr_lanczos, m)?)?;
    m.add_function(wrap_pyfunction!(stream_triad, m)?)?;
    Ok(())
}
