"""cvxpy formulations of the chain LMIs (LipSDP-Neuron / -Layer, LipSDP-NSR, mixed, residual, l2 and
l-inf). The chain comes from the Rust core (``_core.lipschitz_chain``): rescaled weights, activation
families, final rows. The LMIs are the ones ``rust/core/src/lipschitz/certify.rs`` evaluates; every
W^T Q W term is built from precomputed coefficient matrices (vec(w_i w_i^T), vec(W_j^T W_j),
vec(W_j^T E W_j)) so cvxpy never forms it symbolically.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError

SOLVER_DEFAULTS: dict[str, dict[str, Any]] = {
    "SCS": {"eps_abs": 1e-6, "eps_rel": 1e-6, "max_iters": 50_000},
    "CLARABEL": {},
    "MOSEK": {},
}


def _vec_cols(mats: list[np.ndarray]) -> sp.csc_matrix:
    """Columns vec(M) (column-major, as cvxpy.reshape with order='F') of the given square matrices."""
    return sp.csc_matrix(np.stack([m.reshape(-1, order="F") for m in mats], axis=1))


def _sq(expr_vec, n: int):
    import cvxpy as cp
    return cp.reshape(expr_vec, (n, n), order="F")


class StageVars:
    """The cvxpy variables of one stage and the expressions built from them."""

    def __init__(self, st: dict[str, Any], W: np.ndarray, multipliers: str, use_gamma: bool = True):
        import cvxpy as cp

        self.st, self.W = st, W
        m, n = W.shape
        # implicit stages carry the multipliers of their activation's family (W is then the input weight U)
        kind = st["act"] if st["kind"] == "implicit" else st["kind"]
        self.kind = kind
        self.t = self.lam = self.gam = self.tau = None
        if kind == "sector":
            if multipliers == "layer":
                self.tau = cp.Variable(nonneg=True)
                self.t = self.tau * np.ones(m)
            else:
                self.t = cp.Variable(m, nonneg=True)
            A = _vec_cols([np.outer(W[i], W[i]) for i in range(m)])
            self.wqw = _sq(A @ self.t, n)
            self.q = cp.diag(self.t)
            self.wq = W.T @ cp.diag(self.t)
        elif kind == "groups":
            groups, E = st["groups"], np.asarray(st["E"])
            G = len(groups)
            self.lam = cp.Variable(G, nonneg=True)
            self.gam = cp.Variable(G)
            self.use_gamma = use_gamma
            Al = _vec_cols([W[g].T @ W[g] for g in groups])
            Ag = _vec_cols([W[g].T @ E @ W[g] for g in groups])
            self.wqw = _sq(Al @ self.lam + Ag @ self.gam, n)
            Il, Ig = [], []
            for g in groups:
                P = np.zeros((m, m))
                P[np.ix_(g, g)] = np.eye(len(g))
                Il.append(P)
                P = np.zeros((m, m))
                P[np.ix_(g, g)] = E
                Ig.append(P)
            self.q = _sq(_vec_cols(Il) @ self.lam + _vec_cols(Ig) @ self.gam, m)
            self.wq = None
        self.x_next = None
        if not (st["kind"] == "groups" and not st["residual"]):
            o = n if st["residual"] else m
            self.x_next = cp.Variable((o, o), symmetric=True)

    @property
    def X_out(self):
        """X_{k+1}: the group multiplier itself for plain group stages (the decoupled NSR chain)."""
        return self.q if self.x_next is None else self.x_next

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.kind == "sector":
            t = self.t.value if self.tau is None else float(self.tau.value) * np.ones(self.W.shape[0])
            out["t"] = np.asarray(t, dtype=np.float64).ravel()
        elif self.kind == "groups":
            out["t"] = np.asarray(self.lam.value, dtype=np.float64).ravel()
            out["gamma"] = np.asarray(self.gam.value, dtype=np.float64).ravel()
        if self.x_next is not None:
            out["X"] = np.asarray(self.x_next.value, dtype=np.float64)
        return out


def implicit_coefficients(st: dict[str, Any]) -> tuple[float, float, float]:
    """(k2, k1, k0) of an implicit stage's LMI: (2ab, -(a+b), 2) for a sector [a, b], (-1, 0, 1) for groups."""
    if st["act"] == "sector":
        a, b = st["alpha"], st["beta"]
        return 2 * a * b, -(a + b), 2.0
    return -1.0, 0.0, 1.0


def implicit_lmi(st: dict[str, Any], U: np.ndarray, v: "StageVars", X, Xn):
    """The implicit stage z' = act(F z' + U z) in (dz, dz'), the Rust certificate's block:
    [[X + k2 U^T Q U, k1 U^T Q + k2 U^T Q F], [., k0 Q + k1 (Q F + F^T Q) + k2 F^T Q F - X']]."""
    import cvxpy as cp

    F = np.asarray(st["F"])
    k2, k1, k0 = implicit_coefficients(st)
    Q = v.q
    QF = Q @ F
    A = X + k2 * v.wqw
    B = k1 * (U.T @ Q) + k2 * (U.T @ QF)
    C = k0 * Q + k1 * (QF + QF.T) + k2 * (F.T @ QF) - Xn
    return cp.bmat([[A, B], [B.T, C]])


def _sym_psd(M, n_hint: int):
    return 0.5 * (M + M.T) >> 0


def restrict(chain: dict[str, Any], norm: str, rowspace: bool = True):
    """(weights, final rows, input width, info) of the chain, with the l2 row-space restriction applied:
    W0 -> W0 V_r, exact because x -> V_r^T x is a co-isometry."""
    stages = chain["stages"]
    R = np.asarray(chain["final"])
    n0 = int(chain["input_dim"])
    Ws = [np.asarray(st["W"]) for st in stages]
    info: dict[str, Any] = {"rowspace_restricted": False}
    if norm == "2" and rowspace:
        first = Ws[0] if stages and not stages[0]["residual"] else (R if not stages else None)
        if first is not None and first.shape[0] < first.shape[1]:
            _, s, Vt = np.linalg.svd(first, full_matrices=False)
            r = int(np.sum(s > s[0] * 1e-13)) if s.size and s[0] > 0 else first.shape[0]
            reduced = first @ Vt[:r].T
            if stages:
                Ws[0] = reduced
            else:
                R = reduced
            n0 = r
            info["rowspace_restricted"] = True
            info["rowspace_dim"] = r
    return Ws, R, n0, info


def build(chain: dict[str, Any], norm: str, multipliers: str, rowspace: bool = True, use_gamma: bool = True):
    """The cvxpy problem and its variables. ``multipliers``: "neuron" or "layer" for sector stages."""
    import cvxpy as cp

    stages = chain["stages"]
    Ws, R, n0, info = restrict(chain, norm, rowspace)
    rho = cp.Variable(nonneg=True)
    cons = []
    d = None
    if norm == "2":
        X = rho * np.eye(n0)
    else:
        d = cp.Variable(n0, nonneg=True)
        X = cp.diag(d)
        cons.append(cp.sum(d) <= rho)
    svars = []
    sizes = []
    for st, W in zip(stages, Ws):
        v = StageVars(st, W, multipliers, use_gamma)
        svars.append(v)
        if v.gam is not None and not use_gamma:
            cons.append(v.gam == 0)
        m, n = W.shape
        Xn = v.X_out
        if st["kind"] == "linear":
            M = X - W.T @ Xn @ W
            sizes.append(n)
        elif st["kind"] == "implicit":
            M = implicit_lmi(st, W, v, X, Xn)
            sizes.append(n + m)
        elif st["kind"] == "groups" and not st["residual"]:
            M = X - v.wqw
            sizes.append(n)
        else:
            if st["kind"] == "sector":
                a, b = st["alpha"], st["beta"]
                A = X + 2 * a * b * v.wqw
                B = -(a + b) * v.wq
                C = 2 * v.q
            else:
                A = X - v.wqw
                B = np.zeros((n, m))
                C = v.q
            if not st["residual"]:
                C = C - Xn
            if st["residual"]:  # z' = S z + G w (S = I without a skip)
                G = np.asarray(st["G"])
                S = st.get("S")
                if S is None:
                    A = A - Xn
                    B = B - Xn @ G
                else:
                    S = np.asarray(S)
                    A = A - S.T @ Xn @ S
                    B = B - S.T @ Xn @ G
                C = C - G.T @ Xn @ G
            M = cp.bmat([[A, B], [B.T, C]])
            sizes.append(n + m)
        cons.append(_sym_psd(M, sizes[-1]))
        X = Xn
    if norm == "2":
        cons.append(_sym_psd(X - R.T @ R, R.shape[1]))
    else:
        r = R.reshape(1, -1)
        cons.append(_sym_psd(cp.bmat([[X, r.T], [r, cp.reshape(rho, (1, 1), order="F")]]), r.shape[1] + 1))
    sizes.append(R.shape[1])
    info["lmi_sizes"] = sizes
    prob = cp.Problem(cp.Minimize(rho), cons)
    return prob, rho, d, svars, info


def run_cvxpy(prob: Any, rho: Any, solver: str, verbose: bool, solver_options: dict[str, Any] | None,
              info: dict[str, Any], what: str) -> str:
    """Solves a built cvxpy problem with the solver's defaults overridden by ``solver_options``, records the
    solver's statistics in ``info`` and returns the status; no usable rho is a SolverError naming ``what``."""
    import cvxpy as cp

    opts = dict(SOLVER_DEFAULTS.get(solver, {}))
    opts.update(solver_options or {})
    try:
        prob.solve(solver=solver, verbose=verbose, **opts)
    except cp.error.SolverError as e:
        raise SolverError(f"{solver} failed on {what}: {e}") from e
    status = prob.status
    info["solver_stats"] = {"solve_time": getattr(prob.solver_stats, "solve_time", None),
                            "num_iters": getattr(prob.solver_stats, "num_iters", None)}
    if status not in ("optimal", "optimal_inaccurate") or rho.value is None:
        raise SolverError(f"{solver} returned status {status!r} on {what} (no bound produced)")
    return status


def solve(chain: dict[str, Any], norm: str, multipliers: str, solver: str, verbose: bool = False,
          solver_options: dict[str, Any] | None = None, use_gamma: bool = True):
    """Solves the chain SDP; returns (rho, d, stage multipliers, status, info)."""
    prob, rho, d, svars, info = build(chain, norm, multipliers, use_gamma=use_gamma)
    status = run_cvxpy(prob, rho, solver, verbose, solver_options, info, "the Lipschitz SDP")
    mults = [v.values() for v in svars]
    dv = None if d is None else np.asarray(d.value, dtype=np.float64).ravel()
    return float(rho.value), dv, mults, status, info
