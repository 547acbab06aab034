//! Convex training of two-layer ReLU networks (Pilanci & Ergen 2020; Bai, Gautam & Sojoudi 2022).
//!
//! With activation patterns D_i (diagonal 0/1, stored as the columns of an n x P matrix) the training
//! problem is the convex program
//!   min loss(sum_i D_i X (v_i - w_i), y) + beta * sum_i (||v_i|| + ||w_i||)
//!   s.t. (2 D_i - I) X v_i >= 0,  (2 D_i - I) X w_i >= 0.
//! [`admm`] solves it with the ADMM of Bai et al.; the u-step linear system lives in [`ustep`]; [`scp`] solves
//! the sampled convex program (random hidden neurons, convex output layer) of the same paper; [`robust_admm`]
//! solves the l-inf adversarial program of its Section 4 (pieces in [`robust`]).

pub mod admm;
mod ops;
pub mod project;
mod robust;
pub mod robust_admm;
pub mod scp;
pub mod ustep;

pub use admm::{solve_admm, AdmmProblem, AdmmResult, AdmmSettings, Loss, Record};
pub use robust_admm::{project_robust_cones, RobustAdmmProblem};
pub use scp::{ScpProblem, ScpResult, ScpSettings};
pub use ustep::USolve;

#[cfg(test)]
mod tests;
