"""The full LipSDP-NSR LMI (``method="nsr-full"``): one block-tridiagonal LMI over (x, z_1, ..., z_L) for
chains of plain GroupSort / MaxMin / Householder layers, with the S and P multipliers.

Quadratic constraints of layer k (w = W_k z_k, z_{k+1} = phi(w), groups j with indicator E_g (m x G)):

* lambda_j (||dw_j||^2 - ||dz_{k+1,j}||^2) >= 0, lambda_j >= 0: each group map is 1-Lipschitz
  (GroupSort permutes a group, and |sort(a) - sort(b)| <= |a - b|);
* gamma_j ((1^T dw_j)^2 - (1^T dz_{k+1,j})^2) = 0, gamma_j free: a permutation keeps the group's sum
  (Householder: E = I - vv^T instead of 11^T, the component orthogonal to v is kept);
* 2 l^T (S_k^T dz_k + P_k^T dz_{k+1}) = 0 with l = E_g^T (dz_{k+1} - W_k dz_k), S_k (n_k x G) and P_k
  (m_k x G) free: each entry of l is the change of one group's sum, which is zero for every pair of
  inputs, so the term is zero whatever S_k, P_k (GroupSort / MaxMin only; Householder layers keep
  S = P = 0). This is the term that couples z_k and z_{k+1}.

Validity: the first term is a sum of nonnegative terms, the other two are identically zero, so for every
pair of inputs sum_k QC_k >= 0, and x^T M x >= 0 for the LMI M below gives
rho ||dx||^2 >= ||R dz_L||^2 + sum_k QC_k >= ||R dz_L||^2 (l-inf: the Schur complement of the border
[[., R^T], [R, rho]] with X_0 = diag(d), sum d <= rho). tests/test_lipschitz_full.py checks each QC
on random input pairs of MaxMin and GroupSort. With S = P = 0 the LMI is block-diagonal and its blocks
are exactly the decoupled chain's LMIs, so its optimum is never above the chain's.

The Rust core (``_core.lipschitz_certify_full``) re-checks the LMI at the solver's multipliers (exact
eigenvalues, rounding margin) and repairs it by raising lambda and rho (or d).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedModelError
from .sdp import StageVars, restrict, run_cvxpy


def applies(chain: dict[str, Any]) -> bool:
    """True when every stage is a plain (non-residual) grouped stage."""
    return bool(chain["stages"]) and all(st["kind"] == "groups" and not st["residual"] for st in chain["stages"])


def _sums_kept(st: dict[str, Any]) -> bool:
    """GroupSort / MaxMin (E = 11^T exactly): the S / P terms apply."""
    E = np.asarray(st["E"])
    return bool(np.all(E == 1.0))


def build(chain: dict[str, Any], norm: str, use_gamma: bool = True, use_sp: bool = True):
    """The cvxpy problem, its variables and info. ``use_sp=False`` fixes S = P = 0 (the chain's optimum)."""
    import cvxpy as cp

    if not applies(chain):
        raise UnsupportedModelError("method='nsr-full' handles chains of plain GroupSort / MaxMin / Householder "
                                    "layers (Dense, grouped activation, ..., Dense); use method='nsr'")
    stages = chain["stages"]
    Ws, R, n0, info = restrict(chain, norm)
    L = len(stages)
    dims = [n0] + [W.shape[0] for W in Ws]
    nb = L + 1 + (1 if norm == "inf" else 0)
    blocks: list[list[Any]] = [[None] * nb for _ in range(nb)]

    def add(i: int, j: int, e: Any) -> None:
        blocks[i][j] = e if blocks[i][j] is None else blocks[i][j] + e

    rho = cp.Variable(nonneg=True)
    cons = []
    d = None
    if norm == "2":
        add(0, 0, rho * np.eye(n0))
    else:
        d = cp.Variable(n0, nonneg=True)
        add(0, 0, cp.diag(d))
        cons.append(cp.sum(d) <= rho)
    svars, S_vars, P_vars = [], [], []
    for k, (st, W) in enumerate(zip(stages, Ws)):
        m, n = W.shape
        v = StageVars(st, W, "neuron", use_gamma)
        svars.append(v)
        if not use_gamma:
            cons.append(v.gam == 0)
        add(k, k, -v.wqw)
        add(k + 1, k + 1, v.q)
        S = P = None
        if use_sp and _sums_kept(st):
            G = len(st["groups"])
            Eg = np.zeros((m, G))
            for j, g in enumerate(st["groups"]):
                Eg[g, j] = 1.0
            S, P = cp.Variable((n, G)), cp.Variable((m, G))
            WtA = (W.T @ Eg) @ S.T          # W^T A, A = E_g S^T
            B = Eg @ P.T
            add(k, k, -(WtA + WtA.T))
            add(k + 1, k + 1, B + B.T)
            up = S @ Eg.T - (W.T @ Eg) @ P.T  # A^T - W^T B
            add(k, k + 1, up)
            add(k + 1, k, up.T)
        S_vars.append(S)
        P_vars.append(P)
    if norm == "2":
        add(L, L, -(R.T @ R))
    else:
        r = R.reshape(1, -1)
        add(L, L + 1, r.T)
        add(L + 1, L, r)
        add(L + 1, L + 1, cp.reshape(rho, (1, 1), order="F"))
    sizes = dims + ([1] if norm == "inf" else [])
    for i in range(nb):
        for j in range(nb):
            if blocks[i][j] is None:
                blocks[i][j] = np.zeros((sizes[i], sizes[j]))
    M = cp.bmat(blocks)
    cons.append(0.5 * (M + M.T) >> 0)
    info["lmi_sizes"] = [int(sum(sizes))]
    info["formulation"] = "full block-tridiagonal NSR LMI (S, P multipliers)" if use_sp else "full LMI, S = P = 0"
    prob = cp.Problem(cp.Minimize(rho), cons)
    return prob, rho, d, svars, S_vars, P_vars, info


def solve(chain: dict[str, Any], norm: str, solver: str, verbose: bool = False,
          solver_options: dict[str, Any] | None = None, use_gamma: bool = True, use_sp: bool = True):
    """Solves the full LMI; returns (rho, d, stage multipliers, S list, P list, status, info). S_0 is mapped
    back to the whole input space when the l2 row-space restriction was applied (x -> V_r^T x)."""
    prob, rho, d, svars, S_vars, P_vars, info = build(chain, norm, use_gamma, use_sp)
    status = run_cvxpy(prob, rho, solver, verbose, solver_options, info, "the full NSR SDP")
    mults = [v.values() for v in svars]
    Ss, Ps = [], []
    for st, v, S, P in zip(chain["stages"], svars, S_vars, P_vars):
        m, n = np.asarray(st["W"]).shape
        G = len(st["groups"])
        Ss.append(np.zeros((n, G)) if S is None else np.asarray(S.value, dtype=np.float64))
        Ps.append(np.zeros((m, G)) if P is None else np.asarray(P.value, dtype=np.float64))
    if info.get("rowspace_restricted") and S_vars[0] is not None:
        _, _, Vt = np.linalg.svd(np.asarray(chain["stages"][0]["W"]), full_matrices=False)
        Ss[0] = Vt[: info["rowspace_dim"]].T @ np.asarray(S_vars[0].value, dtype=np.float64)
    Ss = [np.ascontiguousarray(s) for s in Ss]
    Ps = [np.ascontiguousarray(p) for p in Ps]
    dv = None if d is None else np.asarray(d.value, dtype=np.float64).ravel()
    return float(rho.value), dv, mults, Ss, Ps, status, info
