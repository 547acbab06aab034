//! Lipschitz constants: naive products of layer norms, the chain decomposition the SDP formulations
//! share, the certificate (exact eigenvalue checks and repair of solver multipliers), and the
//! sampled lower bound.

pub mod certify;
pub mod chain;
pub mod full;
pub mod lower;
pub mod norms;

/// The input/output norm of a Lipschitz bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    L2,
    /// l-inf on the input; the output is measured in l-inf too (naive) or is a scalar (SDP methods).
    Linf,
}

impl Norm {
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "2" | "l2" => Ok(Norm::L2),
            "inf" | "linf" => Ok(Norm::Linf),
            other => Err(crate::error::invalid_err!("norm must be 2 or 'inf', got {other:?}")),
        }
    }
}

pub use certify::{certify, Certificate, LmiReport, Multipliers, StageMult};
pub use chain::{Act, Chain, Stage};
pub use full::{certify_full, FullMult};
