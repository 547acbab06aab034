//! The one place where core errors and panics become Python exceptions.
//!
//! The exception classes live in `nncert.errors` (so they can inherit from both `nncert.Error` and
//! the matching builtin, e.g. `ShapeError(Error, ValueError)`); they are looked up by name here.

use std::panic::{catch_unwind, AssertUnwindSafe};

use nncert_core::Error;
use pyo3::prelude::*;
use pyo3::types::PyType;

fn exception(py: Python<'_>, class: &str, msg: String) -> PyErr {
    let lookup = || -> PyResult<PyErr> {
        let cls = py.import("nncert.errors")?.getattr(class)?;
        let cls = cls.cast_into::<PyType>()?;
        Ok(PyErr::from_type(cls, msg.clone()))
    };
    lookup().unwrap_or_else(|e| e)
}

pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let (class, msg) = match err {
        Error::Shape(m) => ("ShapeError", m),
        Error::InvalidInput(m) => ("InvalidInputError", m),
        Error::Unsupported(m) => ("UnsupportedModelError", m),
        Error::Solver(m) => ("SolverError", m),
        Error::TimeLimit(m) => ("TimeLimitError", m),
    };
    exception(py, class, msg)
}

/// Runs `f` with the GIL released, turning a core error into its exception and a panic into
/// `nncert.Error` (a panic must never unwind into the interpreter).
pub fn run_detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> nncert_core::Result<T> + Send,
{
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_pyerr(py, e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(exception(py, "Error", format!("internal error in the nncert core (please report): {what}")))
        }
    }
}
