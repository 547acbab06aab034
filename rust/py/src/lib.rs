//! nncert._core: thin PyO3 bindings over nncert-core. Convert, release the GIL, call the core,
//! convert back; no algorithm lives here.

use pyo3::prelude::*;

mod arrays;
mod bounds;
mod convex;
mod errors;
mod linalg;
mod lipschitz;
mod network;

/// Raises the exception a core error of `kind` maps to, or panics inside the core for `kind="panic"`;
/// lets the test suite check the one error-mapping path end to end.
#[pyfunction]
fn _raise_core_error(py: Python<'_>, kind: &str) -> PyResult<()> {
    let kind = kind.to_string();
    errors::run_detached(py, move || -> nncert_core::Result<()> {
        use nncert_core::Error;
        Err(match kind.as_str() {
            "shape" => Error::Shape("shape test".into()),
            "invalid" => Error::InvalidInput("invalid test".into()),
            "unsupported" => Error::Unsupported("unsupported test".into()),
            "solver" => Error::Solver("solver test".into()),
            "time" => Error::TimeLimit("time test".into()),
            _ => panic!("deliberate panic for the test suite ({kind})"),
        })
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<network::PyNetwork>()?;
    m.add_function(wrap_pyfunction!(_raise_core_error, m)?)?;
    bounds::register(m)?;
    convex::register(m)?;
    linalg::register(m)?;
    lipschitz::register(m)?;
    Ok(())
}
