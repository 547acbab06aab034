"""The convex program, evaluated in numpy (the independent check of every solver's answer).

Arrays: X (n, d) with the intercept column already appended; D (n, P) 0/1; V, W (d, P); y (n,).
``feat`` masks the coordinates an adversary may perturb (all but the intercept column).
"""

from __future__ import annotations

import numpy as np

LOSSES = ("squared", "logistic", "hinge")


def loss_value(loss: str, f: np.ndarray, y: np.ndarray, slack: np.ndarray | float = 0.0) -> float:
    """The loss of predictions f; ``slack`` >= 0 is the worst-case l-inf perturbation term eps*||g_k||_1."""
    if loss == "squared":
        return float(0.5 * np.sum((np.abs(f - y) + slack) ** 2))
    margin = y * f - slack
    if loss == "logistic":
        return float(np.sum(np.logaddexp(0.0, -margin)))
    if loss == "hinge":
        return float(np.sum(np.maximum(0.0, 1.0 - margin)))
    raise ValueError(loss)


def predictions(X: np.ndarray, D: np.ndarray, V: np.ndarray, W: np.ndarray) -> np.ndarray:
    """sum_i D_i X (v_i - w_i)."""
    return np.sum(D * (X @ (V - W)), axis=1)


def objective(X, D, V, W, y, beta: float, loss: str, eps: float = 0.0, feat: np.ndarray | None = None) -> float:
    """loss + beta * sum of group norms; with eps > 0, the robust (worst-case l-inf) loss of Bai et al."""
    f = predictions(X, D, V, W)
    reg = beta * (np.linalg.norm(V, axis=0).sum() + np.linalg.norm(W, axis=0).sum())
    slack = 0.0
    if eps > 0:
        G = D @ (V - W)[feat].T  # (n, d_feat): the input gradient at each sample
        slack = eps * np.abs(G).sum(axis=1)
    return loss_value(loss, f, y, slack) + reg


def violation(X, D, V, W, eps: float = 0.0, feat: np.ndarray | None = None) -> float:
    """Largest violation of (2D_i - I) X v_i >= eps ||v_i[feat]||_1 (and the same for w_i); 0 when feasible."""
    S = 2.0 * D - 1.0
    out = 0.0
    for U in (V, W):
        rhs = eps * np.abs(U[feat]).sum(axis=0)[None, :] if eps > 0 else 0.0
        out = max(out, float(np.max(rhs - S * (X @ U), initial=0.0)))
    return out
