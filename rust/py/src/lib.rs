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

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<network::PyNetwork>()?;
    bounds::register(m)?;
    convex::register(m)?;
    linalg::register(m)?;
    lipschitz::register(m)?;
    Ok(())
}
