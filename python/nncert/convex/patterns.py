"""Activation patterns D_i = diag(1[X h_i >= 0]) of a data set, from random gates h_i."""

from __future__ import annotations

import itertools
import math
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


def patterns_from_network(net: Any, X: Any) -> np.ndarray:
    """The distinct non-empty activation patterns 1[W x + b >= 0] of the first hidden layer of ``net`` (a
    :class:`nncert.Network` or a torch module :meth:`nncert.Network.from_torch` accepts, starting Dense, ReLU) on
    the samples X (n, d), as an (n, P) 0/1 matrix for ``ConvexReLU(patterns=...)``.

    With these patterns among its own, the convex program's optimum is at most the network's weight-decay
    objective loss + beta/2 (||W||^2 + ||b||^2 + ||output weights||^2) for a two-layer network: each neuron is a
    feasible group of its own pattern, and beta |a| ||(w, b)|| <= beta/2 (a^2 + ||(w, b)||^2)."""
    from ..layers import Dense, ReLU
    from ..network import Network

    if not isinstance(net, Network):
        net = Network.from_torch(net)
    layers = net.layers
    if len(layers) < 2 or not isinstance(layers[0], Dense) or not isinstance(layers[1], ReLU):
        raise InvalidInputError(f"patterns_from_network needs a network that starts Dense, ReLU; got "
                                f"{', '.join(map(repr, layers[:2]))}")
    X = as_float_array(X, "X", ndim=2)
    check_finite(X, "X")
    first = layers[0]
    if X.shape[1] != first.in_features:
        raise ShapeError(f"X has {X.shape[1]} features but the network's first layer takes {first.in_features}")
    return unique_columns((X @ first.W.T + first.b >= 0).astype(np.float64))


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


def count_arrangement_subsets(n: int, r: int) -> int:
    """How many (r-1)-subsets of the n samples :func:`enumerate_patterns` visits."""
    return math.comb(n, r - 1) if r >= 2 else 1


def enumerate_patterns(X: np.ndarray, max_subsets: int = 2_000_000, tol: float = 1e-9) -> np.ndarray:
    """Every activation pattern of the data: the cells of the central hyperplane arrangement
    {h : x_i^T h = 0} (the "exact" convex formulation; Pilanci & Ergen 2020). Returns the distinct
    non-empty patterns 1[X h >= 0] as an (n, P) 0/1 float matrix.

    Why it is complete: patterns depend on h only through its projection onto the row space of X
    (dimension r), where every full-dimensional cell of the arrangement is a pointed cone with an
    extreme ray, and every extreme ray is the null direction of r - 1 independent samples. So the
    routine visits every (r-1)-subset of samples, takes both signs of its null direction g, keeps the
    sign of every sample off the ray and tries both signs for the samples on it. Samples on a ray
    beyond the r - 1 (degenerate data) may produce a pattern no open cell has; such a pattern is
    still feasible for the convex program only with weights that make D_i X v = relu(X v), so it never
    changes the optimum. The work grows like C(n, r-1): this is for small feature dimensions."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    r = int(np.sum(s > tol * max(1.0, s[0] if s.size else 0.0)))
    if r == 0:
        return np.ones((n, 1))
    Z = U[:, :r] * s[:r]
    if r == 1:
        return unique_columns(np.stack([Z[:, 0] >= 0, Z[:, 0] <= 0], axis=1).astype(np.float64))
    m = count_arrangement_subsets(n, r)
    if m > max_subsets:  # checked on all samples before deduplication, so the limit is predictable
        raise InvalidInputError(
            f"enumerating every activation pattern visits C({n}, {r - 1}) = {m:,} sample subsets (data rank {r}), "
            f"more than max_subsets={max_subsets:,}; sample patterns instead (patterns=None, n_patterns=...)")
    norms = np.linalg.norm(Z, axis=1)
    live = norms > tol * norms.max()
    # Samples that are positive multiples of each other always share their bit: enumerate one of each.
    Zn, inverse = np.unique(np.round(Z[live] / norms[live, None], 12), axis=0, return_inverse=True)
    subsets = np.array(list(itertools.combinations(range(Zn.shape[0]), r - 1)), dtype=np.intp)
    found = []
    for chunk in np.array_split(subsets, max(1, len(subsets) // 4096)):
        _, sv, Vh = np.linalg.svd(Zn[chunk], full_matrices=True)
        independent = sv[:, -1] > 1e-7 * sv[:, 0]
        G = Vh[independent, -1, :]
        vals = G @ Zn.T
        for g_vals in vals:
            for sign in (1.0, -1.0):
                v = sign * g_vals
                on = np.flatnonzero(np.abs(v) <= 1e-9)
                if on.size > 20:
                    raise InvalidInputError(
                        f"{on.size} samples lie on one hyperplane through the origin; the arrangement is too degenerate "
                        "to enumerate (remove duplicate samples or sample patterns)")
                base = v > 0
                choices = (np.arange(2 ** on.size)[:, None] >> np.arange(on.size)) & 1
                block = np.repeat(base[None, :], choices.shape[0], axis=0)
                block[:, on] = choices.astype(bool)
                found.append(block)
    cells = np.unique(np.concatenate(found, axis=0), axis=0)
    D = np.ones((n, cells.shape[0]))
    D[live, :] = cells.T[inverse.ravel()]
    return unique_columns(D)


def robust_nontrivial(X: np.ndarray, D: np.ndarray, feat: np.ndarray, eps: float) -> np.ndarray:
    """For each pattern j, whether its robust cone {v : (2D_j - I) X v >= eps ||v[feat]||_1} holds a non-zero v.

    Where it does not, v_j = w_j = 0 in every feasible point of the adversarial program, so the column can be
    left out of the solve without changing the optimum; such degenerate cones (no interior point) are what
    keeps an ADMM from converging (n = 100 moons, eps = 0.05: 23 of 27 sampled patterns, no convergence in
    50,000 iterations with them, 14,000 without). One LP per pattern (scipy/HiGHS):
        max 1^T (2D_j - I) X v  s.t. (2D_j - I) X v >= eps 1^T a, -a <= v[feat] <= a, |v| <= 1, a <= 1,
    whose value is 0 exactly when the cone is {0} (a non-zero v of the cone has (2D_j - I) X v >= 0 and not 0
    when X has an intercept column or every coordinate is perturbable). A pattern is dropped only when that value
    is below 1e-9 n max|X|: a cone so thin that its neuron moves the predictions by at most that much per unit
    of ||v||, which the group penalty beta ||v|| outweighs."""
    from scipy.optimize import linprog

    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    fi = np.flatnonzero(feat)
    df = fi.size
    E = np.zeros((df, d))
    E[np.arange(df), fi] = 1.0
    bounds = [(-1.0, 1.0)] * d + [(0.0, 1.0)] * df
    thr = 1e-9 * n * max(1.0, float(np.abs(X).max(initial=0.0)))
    keep = np.ones(D.shape[1], dtype=bool)
    for j in range(D.shape[1]):
        A = (2.0 * D[:, j] - 1.0)[:, None] * X
        A_ub = np.vstack([np.hstack([-A, eps * np.ones((n, df))]),
                          np.hstack([E, -np.eye(df)]), np.hstack([-E, -np.eye(df)])])
        res = linprog(np.concatenate([-A.sum(axis=0), np.zeros(df)]), A_ub=A_ub, b_ub=np.zeros(A_ub.shape[0]),
                      bounds=bounds, method="highs")
        # An LP failure keeps the pattern (dropping is the only step that could lose optimality).
        keep[j] = not (res.status == 0 and -res.fun <= thr)
    return keep
