//! nncert-core: the pure-Rust core of nncert.
//!
//! One network representation ([`network::Network`]) is read by every analysis. This crate has no
//! Python dependency; `cargo test` and `cargo bench` run without an interpreter.

pub mod bounds;
pub mod convex;
pub mod error;
pub mod gradient;
pub mod implicit;
pub mod linalg;
pub mod lipschitz;
pub mod network;
pub mod scalar;

pub use error::{Error, Result};
pub use network::{Layer, Network, Pairing};
