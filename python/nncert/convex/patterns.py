"""Activation patterns D_i = diag(1[X h_i >= 0]) of a data set, from random gates h_i."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import as_float_array, check_finite
from ..errors import InvalidInputError, ShapeError


def unique_columns(D: np.ndarray) -> np.ndarray:
    """The distinct non-zero columns of a 0/1 matrix, in order of first appearance."""
    D = np.asarray(D)
    keep = D.any(axis=0)
    D = D[:, keep]
    if D.shape[1] == 0:
        return D
    _, first = np.unique(D.T, axis=0, return_index=True)
    return D[:, np.sort(first)]


def sample_gates(d: int, n_patterns: int, random_state: Any = 0) -> np.ndarray:
    """``n_patterns`` Gaussian directions h_i (columns of a (d, n_patterns) matrix) scaled to unit norm: the
    same directions ``sample_patterns`` draws for the same ``random_state``."""
    if not isinstance(n_patterns, (int, np.integer)) or n_patterns < 1:
        raise InvalidInputError(f"n_patterns must be a positive integer, got {n_patterns!r}")
    H = np.random.default_rng(random_state).standard_normal((d, int(n_patterns)))
    return np.ascontiguousarray(H / np.linalg.norm(H, axis=0, keepdims=True))


def sample_patterns(X: np.ndarray, n_patterns: int, random_state: Any = 0) -> np.ndarray:
    """``n_patterns`` Gaussian gates h_i; returns the distinct non-empty patterns 1[X h_i >= 0] as an
    (n, P) float 0/1 matrix (P <= n_patterns). ``X`` should already carry the intercept column, so the
    gates are affine hyperplanes of the raw features."""
    H = sample_gates(X.shape[1], n_patterns, random_state)
    return unique_columns((X @ H >= 0).astype(np.float64))


def check_patterns(patterns: Any, n: int) -> np.ndarray:
    """Validates user-given patterns: an (n, P) 0/1 matrix; duplicates and all-zero columns are removed."""
    D = as_float_array(patterns, "patterns", ndim=2)
    check_finite(D, "patterns")
    if D.shape[0] != n:
        raise ShapeError(f"patterns has {D.shape[0]} rows but X has {n} samples (patterns must be (n_samples, P))")
    if not np.all((D == 0) | (D == 1)):
        bad = np.argwhere((D != 0) & (D != 1))[0]
        raise InvalidInputError(f"patterns{list(bad)} = {D[tuple(bad)]}; patterns must be 0/1")
    D = unique_columns(D)
    if D.shape[1] == 0:
        raise InvalidInputError("patterns has no non-zero column")
    return np.ascontiguousarray(D, dtype=np.float64)
