//! Sparse SPD systems: CSR matrices and a matrix-free 7-point stencil, parallel kernels, CG/PCG with
//! true-residual stopping, Lanczos for Ritz pairs, and the deep conjugate-direction (DCDM) iteration.
//!
//! Every solver reads the operator through [`LinOp`], so CSR matrices (borrowed zero-copy from scipy)
//! and matrix-free stencils share one implementation of each algorithm.

pub mod cg;
pub mod csr;
pub mod dcdm;
pub mod lanczos;
pub mod precond;
pub mod stencil;
pub mod vecops;

pub use cg::{pcg, SolveInfo, SolveSettings, StopReason};
pub use csr::{CsrRef, SpIndex};
pub use dcdm::{dcdm, DirectionOracle};
pub use lanczos::{lanczos, RitzPairs};
pub use precond::{Ic0, Identity, Jacobi, Preconditioner};
pub use stencil::Stencil7;

/// A square linear operator y = A x (A symmetric positive (semi)definite for the solvers here).
pub trait LinOp: Sync {
    fn dim(&self) -> usize;
    /// y = A x; `x` and `y` have length `dim()`.
    fn apply(&self, x: &[f64], y: &mut [f64]);
    /// Bytes a single `apply` reads and writes (for the bandwidth-bound estimate of the benchmarks).
    fn bytes_per_apply(&self) -> usize {
        0
    }
    /// The diagonal of A, when the operator can give it cheaply.
    fn diagonal(&self) -> Option<Vec<f64>> {
        None
    }
}
