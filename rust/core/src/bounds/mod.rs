//! Bound propagation (interval and linear relaxations) and branch and bound for complete verification.

pub mod bab;
pub mod optimize;
pub mod propagate;
pub mod relax;

pub use bab::{bab, default_gate, BabOptions, BabResult, Leaf, OpenNode, Outcome, Problem, SplitMode};
pub use optimize::{optimise_rows, OptOptions, RowParams};
pub use propagate::{activation_layers, propagate, propagate_settled, PropOptions, Propagation, Split};
pub use relax::Slopes;
