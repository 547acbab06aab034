"""The reference formulation through cvxpy (Clarabel by default): for checking and small problems.

Standard (Pilanci & Ergen 2020) and l-inf adversarial (Bai, Gautam & Sojoudi 2022, Section 4) programs.
With the activation patterns held fixed over the perturbation ball, the worst case of a perturbation
|delta_k|_inf <= eps of sample k shifts the prediction by at most eps * ||g_k||_1 with
g_k = sum_i D_i,kk (v_i - w_i) (restricted to the perturbable coordinates), and keeping the pattern
requires (2D_i - I) X v_i >= eps ||v_i||_1 row-wise. Both are convex, so the robust problem is
  min  robust_loss + beta sum ||v_i|| + ||w_i||
  s.t. (2D_i - I) X v_i >= eps ||v_i||_1,  (2D_i - I) X w_i >= eps ||w_i||_1
with robust losses 0.5 (|f_k - y_k| + eps ||g_k||_1)^2, log(1 + exp(-(y_k f_k - eps ||g_k||_1))) and
max(0, 1 - y_k f_k + eps ||g_k||_1). At eps = 0 it is the standard program.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, SolverError


@dataclass
class ReferenceSolution:
    V: np.ndarray
    W: np.ndarray
    objective: float
    status: str
    iterations: int
    seconds: float  # the whole prob.solve(): cvxpy's compilation and the solver
    solver_seconds: float = float("nan")  # the solver alone, as it reports (nan where it does not)


def solve_reference(X: np.ndarray, y: np.ndarray, D: np.ndarray, beta: float, loss: str, eps: float = 0.0,
                    feat: np.ndarray | None = None, solver: str = "CLARABEL", verbose: bool = False,
                    **solver_options) -> ReferenceSolution:
    try:
        import cvxpy as cp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InvalidInputError("solver='cvxpy' needs cvxpy (pip install 'nncert[convex]')") from e
    n, d = X.shape
    P = D.shape[1]
    V = cp.Variable((d, P))
    W = cp.Variable((d, P))
    S = 2.0 * D - 1.0
    f = cp.sum(cp.multiply(D, X @ (V - W)), axis=1)
    cons = []
    if eps > 0:
        feat = np.ones(d, dtype=bool) if feat is None else feat
        Xf_idx = np.flatnonzero(feat)
        ones = np.ones((n, 1))
        for U in (V, W):
            l1 = cp.norm(U[Xf_idx, :], 1, axis=0)
            cons.append(cp.multiply(S, X @ U) >= eps * (ones @ cp.reshape(l1, (1, P), order="C")))
        G = D @ (V - W)[Xf_idx, :].T
        slack = eps * cp.norm(G, 1, axis=1)
    else:
        cons += [cp.multiply(S, X @ V) >= 0, cp.multiply(S, X @ W) >= 0]
        slack = 0.0
    if loss == "squared":
        data = 0.5 * cp.sum_squares(cp.abs(f - y) + slack) if eps > 0 else 0.5 * cp.sum_squares(f - y)
    elif loss == "logistic":
        data = cp.sum(cp.logistic(-(cp.multiply(y, f) - slack)))
    elif loss == "hinge":
        data = cp.sum(cp.pos(1 - cp.multiply(y, f) + slack))
    else:
        raise InvalidInputError(f"unknown loss {loss!r}")
    reg = beta * (cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0)))
    prob = cp.Problem(cp.Minimize(data + reg), cons)
    t0 = time.perf_counter()
    try:
        prob.solve(solver=solver, verbose=verbose, **solver_options)
    except cp.error.SolverError as e:
        raise SolverError(f"cvxpy/{solver} failed on the convex training problem: {e}") from e
    secs = time.perf_counter() - t0
    if prob.status not in ("optimal", "optimal_inaccurate") or V.value is None:
        raise SolverError(f"cvxpy/{solver} returned status {prob.status!r}")
    iters = getattr(prob.solver_stats, "num_iters", None) or 0
    solve_time = getattr(prob.solver_stats, "solve_time", None)
    return ReferenceSolution(np.asarray(V.value), np.asarray(W.value), float(prob.value), prob.status,
                             int(iters), secs, float(solve_time) if solve_time is not None else float("nan"))
