use thiserror::Error;

/// Every failure the core reports. The Python bindings map each variant to one exception class
/// (`nncert.ShapeError`, `InvalidInputError`, `UnsupportedModelError`, `SolverError`, `TimeLimitError`).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    #[error("{0}")]
    Shape(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Solver(String),
    #[error("{0}")]
    TimeLimit(String),
}

pub type Result<T> = std::result::Result<T, Error>;

macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::error::Error::Shape(format!($($arg)*)) };
}
macro_rules! invalid_err {
    ($($arg:tt)*) => { $crate::error::Error::InvalidInput(format!($($arg)*)) };
}
pub(crate) use invalid_err;
pub(crate) use shape_err;
