"""Convex training of two-layer ReLU networks: :class:`ConvexReLU` (ADMM in the Rust core, cvxpy reference)."""

from .estimator import ConvexReLU
from .patterns import patterns_from_network, sample_patterns

__all__ = ["ConvexReLU", "patterns_from_network", "sample_patterns"]
