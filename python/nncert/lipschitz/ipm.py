"""A barrier interior-point solver specialised to the LipSDP-NSR chain of grouped layers (MaxMin, GroupSort,
Householder), plain or residual, with linear stages, l2 or l-inf with a scalar output.

The chain's LMIs (``certify.rs``) are F_k(y) = C_k + sum_i y_i A_{k,i} >= 0 in the multipliers y = (rho, [d],
lambda_0, gamma_0, lambda_1, gamma_1, ...), and every coefficient is of low rank with a known factor:

- in its own stage's LMI, lambda_j enters as -W_g^T W_g and gamma_j as -W_g^T E W_g (U = W_g^T, D = -I or -E,
  s x s for a group of size s);
- in the next LMI (X_{k+1} = Q_k), as the s x s block I or E on the group's rows (U = a column selection);
- rho enters the first LMI as rho I (l2: the one full-rank coefficient, kept dense) or the final one as e e^T
  (l-inf, where d_i enters the first as e_i e_i^T and rho - sum d >= 0 is a linear constraint).

So the Newton system of the log-det barrier  t rho - sum_k log det F_k(y) - sum log(lambda) [- log(rho - sum d)]
is cheap to form: with P = F_k^{-1} and M = U^T P U (all factors of the LMI side by side), the gradient is
tr(D_i M_ii) and the Hessian tr(D_i M_ij D_j M_ji), i.e. O(N^2 p s + N p^2 s^2) per LMI instead of O(N^3 p).
The Hessian couples only neighbouring stages (block tridiagonal); it is solved densely (p is at most a few
thousand). Path following: damped Newton with backtracking (Armijo, staying inside the cone) to the central point,
then t *= MU, until the duality-gap bound m / t is below ``tol`` times rho (m: the barrier parameter, the sum of the
LMI sizes plus the linear constraints). The iterates stay strictly feasible, so the Rust certificate normally
accepts them without repair; it re-checks them either way.

The start is strictly feasible by construction: Q_k = c_k I chosen backwards (c_{L-1} > ||R||^2,
c_{k-1} > c_k ||W_k||^2), rho > c_0 ||W_0||^2.

Residual and linear stages (:func:`build_general`) add a free symmetric interface multiplier X_{k+1} (o x o), which
enters its own stage's LMI as -V X V^T (residual: V = [S^T; G^T], linear: V = W^T) and the next one as X on the
leading block. X is a vector of o(o+1)/2 variables in the orthonormal svec basis B_ab, so its gradient is
s svec(V^T P V) and its Hessian blocks are symmetrised Kronecker products: tr(P V B_a V^T P V' B_b V'^T) =
tr(B_a K B_b K^T) with K = V^T P V' (:func:`skron`, formed with index arrays, no loops over entries); against a
scalar multiplier with coefficient U D U^T it is svec(Y D Y^T), Y = V^T P U. Start: every interface X_{k+1} = c I,
Q = lambda I, c chosen backwards so that every LMI is strictly feasible (residual stage: lambda = 2 c ||G||^2,
c_k = 1.5 (2 c ||S||^2 + lambda ||W||^2)). With many such variables (nv > DENSE_MAX: 64-wide residual nets have
~8000) the Newton system is solved matrix-free by preconditioned CG (:class:`_NewtonCG`): Hessian-vector products
cost a few N^3 products per LMI, and the preconditioner is block diagonal and exact per block (the scalar
multipliers densely, each X by a simultaneous diagonalisation of its two Kronecker terms). t grows by MU_GENERAL
on these chains.

Late on the path the preconditioned Hessian has a few dozen outlying small eigenvalues (down to 1e-8 against a bulk
in [0.1, 3]; on maxmin_residual_5_32 their eigenvectors lie about half on the scalar multipliers and half on the
interface X of the middle stages, i.e. the coupling the block-diagonal preconditioner leaves out). Plain PCG needed
200-300 iterations per Newton step for them. So CG is deflated (Saad et al. 2000) by approximate eigenvectors
recycled from solve to solve: every CG solve harvests Ritz vectors of its small Ritz values from its Lanczos
coefficients, and every second Newton step a Rayleigh-Ritz step for (Hessian, preconditioner) on the old space and the
harvest gives the new deflation space (one Hessian product per vector); in between, the last space corrects the
preconditioner additively without new products. With an inexact-Newton CG tolerance and loose centring for all but
the last t, this cut the CG iterations 3-4x on the 64-wide residual nets (bench/README.md).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import InvalidInputError, SolverError

MU = 3.0
#: t grows by this factor on chains with free interface multipliers (residual / linear stages): measured on
#: maxmin_residual_5_32, 63 Newton steps and 13.6k CG iterations against 101 and 32k with MU = 3
MU_GENERAL = 10.0
#: multiplier caps, relative to the (feasible) start: see _caps
CAP = 1e3
#: Newton steps per centring at most (then t grows anyway: long-step path following)
MAX_INNER = 100
TOL = 1e-6
#: the default tolerance of the Newton-CG path: a duality-gap bound of 1e-5 relative already puts the bound within
#: 0.001% of the optimum, and the last factor of ten costs about a quarter of the CG iterations
TOL_CG = 1e-5
#: centering ends when half the squared Newton decrement is below this
CENTER = 1e-6
#: Newton-CG: the centring for every t but the last ends when half the squared Newton decrement is below this (after
#: one more full Newton step): long-step path following needs no tight centring on the way, and each of those last
#: Newton steps costs a full CG solve
CENTER_LOOSE = 0.005
MAX_NEWTON = 500
#: Newton-CG (chains whose dense Hessian would exceed DENSE_MAX variables): relative residual (in the
#: preconditioner's norm) and iteration cap of each conjugate-gradient solve
DENSE_MAX = 4000
CG_RTOL = 1e-4
CG_MAXITER = 300
#: inexact Newton (a forcing term in the spirit of Eisenstat and Walker): the CG tolerance of a Newton step is
#: CG_FORCING times the previous step's squared Newton decrement, between CG_RTOL and CG_RTOL_MAX
CG_FORCING = 1e-3
CG_RTOL_MAX = 1e-2
#: deflated Newton-CG: Ritz vectors of the preconditioned Hessian with Ritz values below DEFL_THETA (its bulk lies in
#: [0.1, 3]; late on the path a few dozen outliers fall to 1e-8) are recycled from solve to solve, at most DEFL_K of
#: them, and each CG solve harvests at most HARVEST_K new ones from its first HARVEST_MAX Lanczos vectors
DEFL_THETA = 0.05
DEFL_K = 40
HARVEST_K = 20
HARVEST_MAX = 300
#: the deflation space is refreshed (a Rayleigh-Ritz step with one Hessian-vector product per vector) every
#: DEFL_REFRESH Newton steps; in between, the last one corrects the preconditioner additively (M^{-1} + Z diag(theta)^-1
#: Z^T with the earlier Hessian's Z and theta: no products). Measured on 8_64: 2 gives 91 Newton steps and 5689 CG
#: iterations (Hessian products) against 97 and 6774 with a refresh at every step; on 5_64 3422 against 3652
DEFL_REFRESH = 2


def applies(chain: dict[str, Any], norm: str) -> bool:
    """True for chains of grouped stages (plain or residual) and linear stages: the chains this solver handles."""
    return bool(chain["stages"]) and all(st["kind"] in ("groups", "linear") for st in chain["stages"])


def is_plain(chain: dict[str, Any]) -> bool:
    """Every stage a plain grouped stage (the decoupled NSR chain: no free interface multipliers)."""
    return all(st["kind"] == "groups" and not st["residual"] for st in chain["stages"])


@functools.lru_cache(maxsize=64)
def _svec_index(o: int):
    """(rows a, cols b, weights) of the orthonormal svec basis of symmetric o x o matrices: entry (a, b), a >= b,
    is the coefficient of B_ab = E_aa (a == b) or (E_ab + E_ba) / sqrt(2), so <svec A, svec B> = tr(AB). Cached
    (read-only arrays): every Hessian-vector product of the Newton-CG path needs them."""
    a, b = np.tril_indices(o)
    w = np.where(a == b, 1.0, np.sqrt(2.0))
    for v in (a, b, w):
        v.setflags(write=False)
    return a, b, w


def svec(M: np.ndarray) -> np.ndarray:
    """svec of the last two axes of M (symmetric)."""
    a, b, w = _svec_index(M.shape[-1])
    return M[..., a, b] * w


def smat(x: np.ndarray, o: int) -> np.ndarray:
    a, b, w = _svec_index(o)
    M = np.zeros((o, o))
    M[a, b] = x / w
    M[b, a] = x / w
    return M


def skron(K: np.ndarray) -> np.ndarray:
    """The matrix of dX -> K dX K^T between symmetric matrices in the svec bases: entry (alpha, beta) =
    tr(B_alpha K B_beta K^T) = 2 c_alpha c_beta (K_ac K_bd + K_ad K_bc) for alpha = (a, b), beta = (c, d), with
    c = 1/2 on the diagonal and 1/sqrt(2) off it (the symmetrised Kronecker product K (x)_s K)."""
    o1, o2 = K.shape
    a, b, wa = _svec_index(o1)
    c, d, wc = _svec_index(o2)
    Ka, Kb = K[a], K[b]
    T = Ka[:, c] * Kb[:, d]
    T += Ka[:, d] * Kb[:, c]
    # 2 c_alpha c_beta with c = w / 2 (w = 1 diagonal, sqrt 2 off): = w_alpha w_beta / 2
    T *= (0.5 * wa)[:, None]
    T *= wc[None, :]
    return T


class _Lmi:
    """F(y) = C + sum_i y_{ids[i]} U_i D_i U_i^T + sum_j y_{dense_ids[j]} A_j."""

    def __init__(self, C: np.ndarray, ids: np.ndarray, U: np.ndarray, D: np.ndarray,
                 dense_ids: list[int] | None = None, dense: list[np.ndarray] | None = None,
                 fac: np.ndarray | None = None, mats: list[tuple[int, np.ndarray, float]] | None = None):
        """U: (p, N, r) factors, one per variable, or (q, N, r) distinct factors with ``fac`` (p,) saying which
        one each variable uses (lambda_j and gamma_j share W_g^T). ``mats``: free symmetric matrix variables
        entering as sign V X V^T, each (offset of svec(X) in y, V (N, o), sign)."""
        self.mats = [(int(off), np.asarray(V, dtype=np.float64), float(sg)) for off, V, sg in (mats or [])]
        self.C, self.ids, self.N = C, np.asarray(ids, dtype=np.int64), C.shape[0]
        q, N, r = U.shape
        p = len(self.ids)
        self.fac = np.arange(p) if fac is None else np.asarray(fac, dtype=np.int64)
        self.p, self.q, self.r = p, q, r
        self.Ucat = np.ascontiguousarray(U.transpose(1, 0, 2).reshape(N, q * r))
        self.D = D
        self.dense_ids = np.asarray(dense_ids or [], dtype=np.int64)
        self.dense = dense or []
        # matrix variables whose V is [I; 0] (the incoming interface X on the leading block): V X V^T and V^T Z V
        # are a block copy (no products)
        self.mat_eye = [bool(np.array_equal(V[:V.shape[1]], np.eye(V.shape[1])) and not V[V.shape[1]:].any())
                        for _, V, _ in self.mats]

    def value(self, y: np.ndarray) -> np.ndarray:
        N, q, r = self.N, self.q, self.r
        Dy = np.zeros((q, r, r))
        np.add.at(Dy, self.fac, self.D * y[self.ids][:, None, None])  # per distinct factor: sum_i y_i D_i
        UD = np.matmul(self.Ucat.reshape(N, q, r).transpose(1, 0, 2), Dy)  # (q, N, r)
        F = self.C + UD.transpose(1, 0, 2).reshape(N, q * r) @ self.Ucat.T
        for j, A in zip(self.dense_ids, self.dense):
            F = F + y[j] * A
        for (off, V, sg), eye in zip(self.mats, self.mat_eye):
            o = V.shape[1]
            X = smat(y[off:off + o * (o + 1) // 2], o)
            if eye:
                F[:o, :o] += sg * X
            else:
                F = F + sg * (V @ X @ V.T)
        return 0.5 * (F + F.T)

    def derivs(self, P: np.ndarray):
        """(gradient of log det F, Hessian of -log det F) restricted to this LMI's variables, with P = F^{-1}:
        d log det / dy_i = tr(P A_i), d^2 (-log det) / dy_i dy_j = tr(P A_i P A_j)."""
        ids, g, H = self._scalar_derivs(P)
        if not self.mats:
            return ids, g, H
        return self._matrix_derivs(P, ids, g, H)

    def _matrix_derivs(self, P: np.ndarray, ids: np.ndarray, g: np.ndarray, H: np.ndarray):
        """Adds the free symmetric matrix variables X_t (entering as s_t V_t X_t V_t^T) in svec coordinates:
        gradient s_t svec(V_t^T P V_t); Hessian block (t, u) s_t s_u skron(V_t^T P V_u) (tr(B_a K B_b K^T));
        with a scalar y_i (coefficient U_i D_i U_i^T) s_t svec(Y D_i Y^T), Y = V_t^T P U_i; with a dense one (A)
        s_t svec(V_t^T P A P V_t)."""
        sizes = [V.shape[1] * (V.shape[1] + 1) // 2 for _, V, _ in self.mats]
        ns = len(ids)
        tot = ns + sum(sizes)
        G = np.zeros(tot)
        HH = np.zeros((tot, tot))
        G[:ns], HH[:ns, :ns] = g, H
        starts = np.concatenate([[ns], ns + np.cumsum(sizes)])
        PV = [P @ V for _, V, _ in self.mats]
        p, q, r = self.p, self.q, self.r
        for t, (_, V, sg) in enumerate(self.mats):
            o = V.shape[1]
            a0, a1 = starts[t], starts[t + 1]
            G[a0:a1] = sg * svec(V.T @ PV[t])
            for u in range(t, len(self.mats)):
                _, V2, sg2 = self.mats[u]
                blk = (sg * sg2) * skron(V.T @ PV[u])
                b0, b1 = starts[u], starts[u + 1]
                HH[a0:a1, b0:b1] = blk
                if u != t:
                    HH[b0:b1, a0:a1] = blk.T
            if p:
                Y = (PV[t].T @ self.Ucat).reshape(o, q, r).transpose(1, 0, 2)[self.fac]  # (p, o, r)
                Z = np.matmul(np.matmul(Y, self.D), Y.transpose(0, 2, 1))  # (p, o, o)
                cr = sg * svec(Z)
                HH[:p, a0:a1] = cr
                HH[a0:a1, :p] = cr.T
            for k, A in enumerate(self.dense):
                cr = sg * svec(PV[t].T @ A @ PV[t])
                HH[p + k, a0:a1] = cr
                HH[a0:a1, p + k] = cr
        mids = np.concatenate([np.arange(off, off + sz) for (off, _, _), sz in zip(self.mats, sizes)])
        return np.concatenate([ids, mids]), G, HH

    def adjoint(self, Z: np.ndarray) -> np.ndarray:
        """(tr(A_i Z))_i over this LMI's variables in the order of :func:`_lmi_ids` (Z symmetric): the gradient of
        log det F at Z = P, the Hessian-vector product at Z = P A(v) P."""
        N, q, r = self.N, self.q, self.r
        out = []
        if self.p:
            Uq = self.Ucat.reshape(N, q, r)
            Y = (Z @ self.Ucat).reshape(N, q, r)
            Md = np.matmul(Uq.transpose(1, 2, 0), Y.transpose(1, 0, 2))  # U_f^T Z U_f per distinct factor
            out.append(np.einsum("iab,iab->i", self.D, Md[self.fac]))
        if self.dense:
            out.append(np.array([np.sum(A * Z) for A in self.dense]))
        for (_, V, sg), eye in zip(self.mats, self.mat_eye):
            o = V.shape[1]
            out.append(sg * svec(Z[:o, :o] if eye else V.T @ Z @ V))
        return np.concatenate(out) if out else np.zeros(0)

    def _scalar_derivs(self, P: np.ndarray):
        p, q, r = self.p, self.q, self.r
        if p == 0 and not self.dense:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, 0))
        Mq = (self.Ucat.T @ (P @ self.Ucat)).reshape(q, r, q, r)  # blocks U_f^T P U_g of the distinct factors
        M4 = Mq[self.fac][:, :, self.fac] if q != p or np.any(self.fac != np.arange(p)) else Mq
        M = M4.reshape(p * r, p * r)  # blocks M_ij = U_i^T P U_j
        D = self.D
        ar = np.arange(p)
        Md = M4[ar, :, ar, :]  # (p, r, r): M_ii
        g = np.sum(D * Md.transpose(0, 2, 1), axis=(1, 2))
        DM = np.matmul(D, M.reshape(p, r, p * r))  # D_i M_ij, (p, r, p r)
        DMD = np.matmul(DM.reshape(p * r, p, r).transpose(1, 0, 2), D)  # (p_j, p_i r, r): D_i M_ij D_j
        DMD = DMD.transpose(1, 0, 2).reshape(p, r, p, r)
        H = np.sum((DMD * M4).transpose(0, 2, 1, 3).reshape(p, p, r * r), axis=2)
        nd = len(self.dense)
        if nd == 0:
            return self.ids, g, H
        ids = np.concatenate([self.ids, self.dense_ids])
        G = np.zeros(p + nd)
        HH = np.zeros((p + nd, p + nd))
        G[:p], HH[:p, :p] = g, H
        for a, A in enumerate(self.dense):
            K = P @ A @ P
            G[p + a] = np.sum(P * A)
            UKU = (self.Ucat.T @ K @ self.Ucat).reshape(q, r, q, r)[self.fac][:, :, self.fac]
            h = np.einsum("iab,ibia->i", D, UKU)
            HH[p + a, :p] = h
            HH[:p, p + a] = h
            for b, B in enumerate(self.dense):
                HH[p + a, p + b] = np.sum(K * B)
        return ids, G, HH


def _groups(st: dict[str, Any]) -> tuple[list[np.ndarray], np.ndarray, int]:
    groups = [np.asarray(g, dtype=np.int64) for g in st["groups"]]
    return groups, np.asarray(st["E"], dtype=np.float64), max(len(g) for g in groups)


def _leading_vars(norm: str, n0: int) -> tuple[int, int, np.ndarray | None]:
    """(variables so far, index of rho, indices of d): rho is y[0]; l-inf adds the diagonal input multiplier d."""
    if norm == "inf":
        return 1 + n0, 0, np.arange(1, 1 + n0)
    return 1, 0, None


def build(chain: dict[str, Any], norm: str, Ws: list[np.ndarray], R: np.ndarray, n0: int, use_gamma: bool = True):
    """The LMIs, the linear constraints (rows of G y >= 0), the variable count and a decoder."""
    stages = chain["stages"]
    nv, rho, d = _leading_vars(norm, n0)
    # incoming X_k as low-rank parts: (ids, distinct factors U (q, N, r), D (p, r, r), factor of each id (p,));
    # dense parts: (ids, mats)
    if norm == "2":
        x_lr = (np.zeros(0, dtype=np.int64), np.zeros((0, n0, 1)), np.zeros((0, 1, 1)), np.zeros(0, dtype=np.int64))
        x_dense = ([rho], [np.eye(n0)])
    else:
        U = np.zeros((n0, n0, 1))
        U[np.arange(n0), np.arange(n0), 0] = 1.0
        x_lr = (d, U, np.ones((n0, 1, 1)), np.arange(n0))
        x_dense = ([], [])
    lmis: list[_Lmi] = []
    nonneg: list[int] = []
    decode = []
    for st, W in zip(stages, Ws):
        m, n = W.shape
        groups, E, s = _groups(st)
        G = len(groups)
        lam = np.arange(nv, nv + G)
        nv += G
        gam = None
        if use_gamma:
            gam = np.arange(nv, nv + G)
            nv += G
        nonneg.extend(lam.tolist())
        # own coefficients: -W_g^T W_g (lambda), -W_g^T E_g W_g (gamma), one factor U = W_g^T (n x s) per group;
        # in the next LMI: I and E on the group's rows (factor: the column selection)
        own_ids, own_U, own_D, own_fac, nxt_U, nxt_D = [], [], [], [], [], []
        for j, g in enumerate(groups):
            sz = len(g)
            Ug = np.zeros((n, s))
            Ug[:, :sz] = W[g].T
            Sel = np.zeros((m, s))
            Sel[g, np.arange(sz)] = 1.0
            Dl = np.zeros((s, s))
            Dl[:sz, :sz] = np.eye(sz)
            Eg = np.zeros((s, s))
            Eg[:sz, :sz] = E[:sz, :sz]
            own_U.append(Ug)
            nxt_U.append(Sel)
            own_ids.append(lam[j])
            own_D.append(-Dl)
            nxt_D.append(Dl)
            own_fac.append(j)
            if gam is not None:
                own_ids.append(gam[j])
                own_D.append(-Eg)
                nxt_D.append(Eg)
                own_fac.append(j)
        xi, xU, xD, xf = x_lr
        r = max(s, xU.shape[2])
        ids = np.concatenate([xi, np.asarray(own_ids, dtype=np.int64)])
        U = np.concatenate([_pad(xU, r), _pad(np.stack(own_U), r)])
        D = np.concatenate([_padD(xD, r), _padD(np.stack(own_D), r)])
        fac = np.concatenate([xf, len(xU) + np.asarray(own_fac, dtype=np.int64)])
        lmis.append(_Lmi(np.zeros((n, n)), ids, U, D, *x_dense, fac=fac))
        x_lr = (np.asarray(own_ids, dtype=np.int64), np.stack(nxt_U), np.stack(nxt_D), np.asarray(own_fac))
        x_dense = ([], [])
        decode.append((lam, gam))
    xi, xU, xD, xf = x_lr
    N = R.shape[1]
    if norm == "2":
        lmis.append(_Lmi(-R.T @ R, xi, xU, xD, fac=xf))
    else:
        r_ = R.reshape(-1)
        C = np.zeros((N + 1, N + 1))
        C[N, :N] = r_
        C[:N, N] = r_
        rr = xU.shape[2]
        U = np.zeros((len(xU) + 1, N + 1, rr))
        U[:-1, :N, :] = xU
        U[-1, N, 0] = 1.0
        Dd = np.zeros((len(xi) + 1, rr, rr))
        Dd[:-1] = xD
        Dd[-1, 0, 0] = 1.0
        lmis.append(_Lmi(C, np.concatenate([xi, [rho]]), U, Dd, fac=np.concatenate([xf, [len(xU)]])))
    rows = []
    for v in nonneg:
        row = np.zeros(nv)
        row[v] = 1.0
        rows.append(row)
    if d is not None:
        row = np.zeros(nv)
        row[rho] = 1.0
        row[d] = -1.0
        rows.append(row)
    Glin = np.array(rows) if rows else np.zeros((0, nv))

    def decoder(y: np.ndarray):
        mults = [{"t": y[lam].copy(), "gamma": (y[gam].copy() if gam is not None else np.zeros(len(lam)))}
                 for lam, gam in decode]
        return float(y[rho]), (None if d is None else y[d].copy()), mults

    return lmis, Glin, nv, decoder, decode, d


class _In:
    """The incoming interface X_k of a stage, as parts of an n x n block: low-rank scalar terms (ids, distinct factors
    U (q, n, r), D (p, r, r), factor of each id (p,)), dense scalar terms (ids, mats) and free matrix variables
    (offset, V (n, o), sign)."""

    def __init__(self, n: int, lr=None, dense=None, mats=None):
        self.n = n
        self.lr = lr if lr is not None else (np.zeros(0, dtype=np.int64), np.zeros((0, n, 1)), np.zeros((0, 1, 1)),
                                             np.zeros(0, dtype=np.int64))
        self.dense = dense if dense is not None else ([], [])
        self.mats = mats or []


def _lmi_from(N: int, C: np.ndarray, inc: _In, own_ids, own_U, own_D, own_fac, own_mats) -> _Lmi:
    """An LMI of size N: the incoming X_k on its leading n x n block, plus the stage's own terms (factors already
    N rows tall)."""
    n = inc.n
    xi, xU, xD, xf = inc.lr
    emb = np.zeros((xU.shape[0], N, xU.shape[2]))
    emb[:, :n, :] = xU
    parts_U, parts_D = [emb], [xD]
    ids = [xi]
    fac = [xf]
    if len(own_ids):
        parts_U.append(np.stack(own_U))
        parts_D.append(np.stack(own_D))
        ids.append(np.asarray(own_ids, dtype=np.int64))
        fac.append(len(xU) + np.asarray(own_fac, dtype=np.int64))
    r = max(u.shape[2] for u in parts_U)
    U = np.concatenate([_pad(u, r) for u in parts_U])
    D = np.concatenate([_padD(d, r) for d in parts_D])
    dids, dm = inc.dense
    dense = []
    for A in dm:
        B = np.zeros((N, N))
        B[:n, :n] = A
        dense.append(B)
    mats = []
    for off, V, sg in inc.mats:
        Vb = np.zeros((N, V.shape[1]))
        Vb[:n] = V
        mats.append((off, Vb, sg))
    mats.extend(own_mats)
    return _Lmi(C, np.concatenate(ids), U, D, list(dids), dense, fac=np.concatenate(fac), mats=mats)


def _add_group(ids: list, Ds: list, facs: list, j: int, lam: np.ndarray, gam: np.ndarray | None,
               D_lam: np.ndarray, D_gam: np.ndarray) -> None:
    """Group j's lambda (and gamma) terms of one LMI; both use the group's factor j."""
    ids.append(lam[j])
    Ds.append(D_lam)
    facs.append(j)
    if gam is not None:
        ids.append(gam[j])
        Ds.append(D_gam)
        facs.append(j)


def build_general(chain: dict[str, Any], norm: str, Ws: list[np.ndarray], R: np.ndarray, n0: int,
                  use_gamma: bool = True):
    """Like :func:`build`, for chains with residual and linear stages (the LMIs of ``certify.rs``):

    - linear:            X_k - W^T X' W                                       (size n)
    - plain groups:      X_k - W^T Q W, X' = Q                                (size n)
    - residual groups:   [[X_k - S^T X' S - W^T Q W, -S^T X' G], [., Q - G^T X' G]]   (size n + m)

    Q = sum_j lambda_j I_g + gamma_j E_g; X' (o x o) is a free symmetric variable, stored as svec (orthonormal basis)
    in y. In the residual LMI lambda_j enters as U_j diag(-I, I) U_j^T with U_j = [W_g^T; Sel_g] (gamma_j: diag(-E, E))
    and X' as -V X' V^T, V = [S^T; G^T]. Variables are laid out stage by stage (q_k, then X_{k+1}), so the Hessian
    is banded. Returns (lmis, Glin, nv, decoder, groups decode (lam, gam) list, d, start)."""
    stages = chain["stages"]
    nv, rho, d = _leading_vars(norm, n0)
    if norm == "2":
        inc = _In(n0, dense=([rho], [np.eye(n0)]))
    else:
        U = np.zeros((n0, n0, 1))
        U[np.arange(n0), np.arange(n0), 0] = 1.0
        inc = _In(n0, lr=(d, U, np.ones((n0, 1, 1)), np.arange(n0)))
    lmis: list[_Lmi] = []
    nonneg: list[int] = []
    decode = []   # per stage: (lam, gam, X offset, o)
    capped = []   # (index in lmis, X offset, o) of interface multipliers that need an upper cap
    for st, W in zip(stages, Ws):
        m, n = W.shape
        kind, residual = st["kind"], st["residual"]
        lam = gam = None
        own_ids, own_U, own_D, own_fac, own_mats = [], [], [], [], []
        out = None
        xoff, o = None, None
        if kind == "groups":
            groups, E, s = _groups(st)
            G_ = len(groups)
            lam = np.arange(nv, nv + G_)
            nv += G_
            if use_gamma:
                gam = np.arange(nv, nv + G_)
                nv += G_
            nonneg.extend(lam.tolist())
            N = n + m if residual else n
            r = 2 * s if residual else s
            nxt_U, nxt_D, nxt_ids, nxt_fac = [], [], [], []
            for j, g in enumerate(groups):
                sz = len(g)
                Ug = np.zeros((N, r))
                Ug[:n, :sz] = W[g].T
                Dl = np.zeros((r, r))
                Dl[:sz, :sz] = -np.eye(sz)
                Eg = np.zeros((r, r))
                Eg[:sz, :sz] = -E[:sz, :sz]
                if residual:
                    Ug[n + g, s + np.arange(sz)] = 1.0
                    Dl[s:s + sz, s:s + sz] = np.eye(sz)
                    Eg[s:s + sz, s:s + sz] = E[:sz, :sz]
                own_U.append(Ug)
                _add_group(own_ids, own_D, own_fac, j, lam, gam, Dl, Eg)
                if not residual:
                    Sel = np.zeros((m, s))
                    Sel[g, np.arange(sz)] = 1.0
                    Dn = np.zeros((s, s))
                    Dn[:sz, :sz] = np.eye(sz)
                    En = np.zeros((s, s))
                    En[:sz, :sz] = E[:sz, :sz]
                    nxt_U.append(Sel)
                    _add_group(nxt_ids, nxt_D, nxt_fac, j, lam, gam, Dn, En)
            if not residual:
                out = _In(m, lr=(np.asarray(nxt_ids, dtype=np.int64), np.stack(nxt_U), np.stack(nxt_D),
                                 np.asarray(nxt_fac, dtype=np.int64)))
        elif kind == "linear":
            N = n
        else:  # pragma: no cover - applies() excludes these
            raise SolverError(f"internal error: the interior-point solver does not handle {kind} stages")
        if out is None:  # a free interface multiplier X' (linear and residual stages)
            if kind == "linear":
                o = m
                V = W.T
            else:
                S = st.get("S")
                Gm = np.asarray(st["G"])
                S = np.eye(n) if S is None else np.asarray(S)
                o = S.shape[0]
                V = np.vstack([S.T, Gm.T])
            xoff = nv
            nv += o * (o + 1) // 2
            own_mats.append((xoff, V, -1.0))
            out = _In(o, mats=[(xoff, np.eye(o), 1.0)])
        lmis.append(_lmi_from(N, np.zeros((N, N)), inc, own_ids, own_U, own_D, own_fac, own_mats))
        decode.append((lam, gam, xoff, o))
        if xoff is not None and np.linalg.matrix_rank(V) < o:
            # X' is bounded above only on the range of V (a linear stage that widens, m > n): along the rest the
            # barrier falls without bound, as for the uncapped multipliers of _caps. Cap it: CAP c I - X' >= 0
            # (filled in with the start below; any X' it allows is still a valid certificate)
            capped.append((len(lmis), xoff, o))
            lmis.append(None)
        inc = out
    Nf = R.shape[1]
    if norm == "2":
        lmis.append(_lmi_from(Nf, -R.T @ R, inc, [], [], [], [], []))
    else:
        r_ = R.reshape(-1)
        C = np.zeros((Nf + 1, Nf + 1))
        C[Nf, :Nf] = r_
        C[:Nf, Nf] = r_
        Ur = np.zeros((Nf + 1, 1))
        Ur[Nf, 0] = 1.0
        lmis.append(_lmi_from(Nf + 1, C, inc, [rho], [Ur], [np.ones((1, 1))], [0], []))
    # linear constraints as a sparse matrix (nv is large with free matrix variables)
    nn = len(nonneg)
    ri, ci, vv = list(range(nn)), list(nonneg), [1.0] * nn
    if d is not None:
        ri += [nn] * (len(d) + 1)
        ci += [rho] + d.tolist()
        vv += [1.0] + [-1.0] * len(d)
    Glin = sp.csr_matrix((vv, (ri, ci)), shape=(nn + (d is not None), nv))

    def decoder(y: np.ndarray):
        mults = []
        for lam, gam, xoff, o in decode:
            out: dict[str, Any] = {}
            if lam is not None:
                out["t"] = y[lam].copy()
                out["gamma"] = y[gam].copy() if gam is not None else np.zeros(len(lam))
            if xoff is not None:
                out["X"] = smat(y[xoff:xoff + o * (o + 1) // 2], o)
            mults.append(out)
        return float(y[rho]), (None if d is None else y[d].copy()), mults

    # strictly feasible start, backwards: every interface X_{k+1} = c I (Q = lambda I, gamma = 0)
    y = np.zeros(nv)
    c = 1.5 * (np.linalg.norm(R, 2) ** 2) + 1e-3
    cL = c
    for st, W, (lam, gam, xoff, o) in zip(reversed(stages), reversed(Ws), reversed(decode)):
        nW2 = np.linalg.norm(W, 2) ** 2
        if xoff is not None:
            a, b, _ = _svec_index(o)
            y[xoff:xoff + o * (o + 1) // 2] = np.where(a == b, c, 0.0)
        if st["kind"] == "linear":
            c = 1.5 * c * nW2 + 1e-3
        elif not st["residual"]:
            y[lam] = c
            c = 1.5 * c * nW2 + 1e-3
        else:
            # [[c_k I - c S^T S - l W^T W, -c S^T G], [., l I - c G^T G]] > 0 with l = 2 c |G|^2 + eps:
            # the Schur complement of the C block is at most c |S|^2, so c_k > 2 c |S|^2 + l |W|^2 suffices
            G2 = np.linalg.norm(np.asarray(st["G"]), 2) ** 2
            S = st.get("S")
            S2 = 1.0 if S is None else np.linalg.norm(np.asarray(S), 2) ** 2
            lv = 2.0 * c * G2 + 1e-3 * max(c, 1.0)
            y[lam] = lv
            c = 1.5 * (2.0 * c * S2 + lv * nW2) + 1e-3
    if norm == "2":
        y[rho] = c
    else:
        y[d] = c
        r_ = R.reshape(-1)
        y[rho] = 1.5 * (r_ @ r_) / cL + c * len(d) + 1e-3
    for k, xoff, o in capped:
        c0 = float(np.max(np.diag(smat(y[xoff:xoff + o * (o + 1) // 2], o))))
        lmis[k] = _Lmi(CAP * c0 * np.eye(o), np.zeros(0, dtype=np.int64), np.zeros((0, o, 1)), np.zeros((0, 1, 1)),
                       mats=[(xoff, np.eye(o), -1.0)])
    groups_decode = [(lam, gam) for lam, gam, _, _ in decode if lam is not None]
    return lmis, Glin, nv, decoder, groups_decode, d, y


def _pad(U: np.ndarray, r: int) -> np.ndarray:
    if U.shape[2] == r:
        return U
    out = np.zeros(U.shape[:2] + (r,))
    out[:, :, :U.shape[2]] = U
    return out


def _padD(D: np.ndarray, r: int) -> np.ndarray:
    if D.shape[1] == r:
        return D
    out = np.zeros((D.shape[0], r, r))
    out[:, :D.shape[1], :D.shape[2]] = D
    return out


def _start(chain, norm, Ws, R, nv, decode, d) -> np.ndarray:
    y = np.zeros(nv)
    c = 1.5 * (np.linalg.norm(R, 2) ** 2) + 1e-3
    for W, (lam, gam) in zip(reversed(Ws[1:]), reversed(decode[1:])):
        y[lam] = c
        c = 1.5 * c * np.linalg.norm(W, 2) ** 2 + 1e-3
    lam0 = decode[0][0]
    y[lam0] = c
    top = 1.5 * c * np.linalg.norm(Ws[0], 2) ** 2 + 1e-3
    if norm == "2":
        y[0] = top
    else:
        y[d] = top
        r = R.reshape(-1)
        # [[c_L I, r], [r^T, rho]] > 0 needs rho > |r|^2 / c_L; rho - sum d > 0
        cL = y[decode[-1][0]][0]
        y[0] = 1.5 * (r @ r) / cL + top * len(d) + 1e-3
    return y


def _caps(Glin: np.ndarray, y0: np.ndarray, decode) -> tuple[np.ndarray, np.ndarray]:
    """Adds |lambda_j|, |gamma_j| <= CAP x (the start's lambda of the stage) as rows of G y + h >= 0. Without them
    the barrier is unbounded below wherever a multiplier can grow without bound (a group the next weight matrix
    does not see): Newton then walks off along that ray. The caps are far above any optimal multiplier (the start
    is already feasible with lambda = c_k), so they do not change the optimum in practice; and any point they allow
    is still a valid certificate."""
    rows, h = [Glin], [np.zeros(Glin.shape[0])]
    nv = Glin.shape[1]
    for lam, gam in decode:
        cap = CAP * float(np.max(y0[lam]))
        for ids, both in ((lam, False), (gam, True)):
            if ids is None:
                continue
            for sign in ((-1.0, 1.0) if both else (-1.0,)):
                G = sp.csr_matrix((np.full(len(ids), sign), (np.arange(len(ids)), ids)), shape=(len(ids), nv))
                rows.append(G if sp.issparse(Glin) else G.toarray())
                h.append(np.full(len(ids), cap))
    return (sp.vstack(rows, format="csr") if sp.issparse(Glin) else np.vstack(rows)), np.concatenate(h)


class _NewtonCG:
    """The Newton system of the barrier at y without forming the Hessian (chains with wide free interface
    multipliers, whose svec blocks make the dense Hessian too large): Hessian-vector products
    H v = sum_k A_k^*(P_k A_k(v) P_k) + G^T diag(1/s^2) G v, solved by preconditioned conjugate gradients.

    Preconditioner: block diagonal, exact on each block: all scalar multipliers (rho, d, lambda, gamma) together,
    formed densely (they are few), and each free matrix variable X, whose block is sum_t K_t (x)_s K_t over the
    LMIs it enters (K_t = V_t^T P V_t). With two terms it is inverted in O(o^3) by a simultaneous
    diagonalisation: T^T K_1 T = I, T^T K_2 T = Lambda, so K_1 X K_1 + K_2 X K_2 = R has X = T Y T^T,
    Y_ij = (T^T R T)_ij / (1 + lambda_i lambda_j)."""

    def __init__(self, lmis, Ps, Glin, s_lin, nv):
        self.lmis, self.Ps, self.Glin, self.w_lin = lmis, Ps, Glin, 1.0 / s_lin ** 2
        self.nv = nv
        self.ids = [_lmi_ids(L) for L in lmis]
        mat_vars: dict[int, list[np.ndarray]] = {}
        is_mat = np.zeros(nv, dtype=bool)
        for L, P in zip(lmis, Ps):
            for off, V, _ in L.mats:
                o = V.shape[1]
                is_mat[off:off + o * (o + 1) // 2] = True
                PV = P @ V
                K = V.T @ PV
                mat_vars.setdefault(off, []).append(0.5 * (K + K.T))
        self.sc = np.nonzero(~is_mat)[0]
        pos = np.full(nv, -1)
        pos[self.sc] = np.arange(len(self.sc))
        Hs = np.zeros((len(self.sc), len(self.sc)))
        for L, P in zip(lmis, Ps):
            ids, _, h = L._scalar_derivs(P)
            if len(ids):
                Hs[np.ix_(pos[ids], pos[ids])] += h
        Gs = sp.csr_matrix(Glin)[:, self.sc]
        Hs += np.asarray((Gs.T @ sp.diags(self.w_lin) @ Gs).todense())
        Hs += 1e-14 * np.trace(Hs) / max(len(Hs), 1) * np.eye(len(Hs))
        self.Hs = Hs
        self.Hs_cho = sla.cho_factor(Hs, lower=True)
        self.blocks = []
        self.fwd = []  # (off, o, K_1, K_2): the preconditioner's block is dX -> K_1 dX K_1 + K_2 dX K_2
        for off, Ks in sorted(mat_vars.items()):
            o = Ks[0].shape[0]
            Ks = sorted(Ks, key=lambda K: -np.linalg.eigvalsh(K)[0])  # the best conditioned one first (K_1 = L L^T)
            if len(Ks) == 1:
                w, U = np.linalg.eigh(Ks[0])
                T = U / np.sqrt(np.maximum(w, 1e-300))
                lam = np.zeros(o)
                den = np.ones((o, o))
                self.fwd.append((off, o, (U * np.maximum(w, 1e-300)) @ U.T, None))
            else:
                self.fwd.append((off, o, Ks[0], sum(Ks[1:])))
                Lc = np.linalg.cholesky(Ks[0])
                C = sla.solve_triangular(Lc, sla.solve_triangular(Lc, sum(Ks[1:]), lower=True).T, lower=True)
                lam, U = np.linalg.eigh(0.5 * (C + C.T))
                lam = np.maximum(lam, 0.0)
                T = sla.solve_triangular(Lc.T, U, lower=False)
                den = 1.0 + np.outer(lam, lam)
            self.blocks.append((off, o, T, den))
        self.hvps = 0
        # deflation space (see deflate): Z (nv, k), A Z, theta = diag(Z^T A Z) (Z M-orthonormal)
        self.Z = np.zeros((nv, 0))
        self.AZ = np.zeros((nv, 0))
        self.theta = np.zeros(0)
        # an additive coarse correction Zc diag(thc)^{-1} Zc^T of the preconditioner with a space from an earlier
        # Hessian (stale; no Hessian products)
        self.Zc = np.zeros((nv, 0))
        self.thc = np.zeros(0)
        #: Ritz vectors of small eigenvalues harvested from the last solve's Lanczos coefficients
        self.harvest = np.zeros((nv, 0))

    def hvp(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros(self.nv)
        for L, P, ids in zip(self.lmis, self.Ps, self.ids):
            dF = L.value(v) - L.C
            out[ids] += L.adjoint(P @ dF @ P)
        out += self.Glin.T @ (self.w_lin * (self.Glin @ v))
        self.hvps += 1
        return out

    def precond(self, r: np.ndarray) -> np.ndarray:
        z = np.zeros(self.nv)
        z[self.sc] = sla.cho_solve(self.Hs_cho, r[self.sc])
        for off, o, T, den in self.blocks:
            k = o * (o + 1) // 2
            Y = (T.T @ smat(r[off:off + k], o) @ T) / den
            z[off:off + k] = svec(T @ Y @ T.T)
        return z

    def mapply(self, v: np.ndarray) -> np.ndarray:
        """The preconditioner itself (M v, where precond applies M^{-1})."""
        out = np.zeros(self.nv)
        out[self.sc] = self.Hs @ v[self.sc]
        for off, o, K1, K2 in self.fwd:
            k = o * (o + 1) // 2
            X = smat(v[off:off + k], o)
            Y = K1 @ X @ K1
            if K2 is not None:
                Y += K2 @ X @ K2
            out[off:off + k] = svec(Y)
        return out

    def deflate(self, W: np.ndarray, keep: bool = False, kmax: int | None = None,
                theta_max: float | None = None) -> None:
        """Sets the deflation space from candidate vectors W (nv, c) (recycled from earlier solves) and, with
        ``keep``, the current space (whose Hessian products are known): a Rayleigh-Ritz step for the pencil (A, M)
        on their span (A: this Hessian, M: the preconditioner), keeping the Ritz vectors of the smallest Ritz values
        (approximate eigenvectors of the preconditioned Hessian M^{-1} A below theta_max, at most kmax). Costs one
        Hessian-vector product per new candidate."""
        kmax = DEFL_K if kmax is None else kmax
        theta_max = DEFL_THETA if theta_max is None else theta_max
        Z0, AZ0 = (self.Z, self.AZ) if keep else (np.zeros((self.nv, 0)), np.zeros((self.nv, 0)))
        if W.shape[1]:
            if Z0.shape[1]:  # only what Z0 does not span yet (Z0 is M-orthonormal, not orthonormal: project)
                Qz, _ = np.linalg.qr(Z0)
                W = W - Qz @ (Qz.T @ W)
            Q, Rq = np.linalg.qr(W)
            dg = np.abs(np.diag(Rq))
            Q = Q[:, dg > 1e-8 * max(np.max(np.linalg.norm(W, axis=0)), 1e-300)]
        else:
            Q = W
        if Q.shape[1] == 0 and not keep:
            return
        B = np.hstack([Z0, Q])
        AB = np.hstack([AZ0] + [self.hvp(q)[:, None] for q in Q.T])
        MB = np.column_stack([self.mapply(q) for q in B.T])
        Ga = B.T @ AB
        Gm = B.T @ MB
        Ga, Gm = 0.5 * (Ga + Ga.T), 0.5 * (Gm + Gm.T)
        mu, U = np.linalg.eigh(Gm)
        ok = mu > 1e-10 * max(mu.max(), 1e-300)
        C = U[:, ok] / np.sqrt(mu[ok])
        th, S = np.linalg.eigh(C.T @ Ga @ C)
        sel = np.nonzero((th > 0) & (th < theta_max))[0][:kmax]
        X = C @ S[:, sel]
        self.Z, self.AZ, self.theta = B @ X, AB @ X, th[sel]

    def solve(self, b: np.ndarray, rtol: float | None = None, maxiter: int | None = None) -> np.ndarray:
        """Preconditioned CG, deflated by the space of :meth:`deflate` (Saad, Yeung, Erhel, Guyomarc'h, "A deflated
        version of the conjugate gradient algorithm", 2000): x_0 = Z E^{-1} Z^T b (E = Z^T A Z), and every search
        direction is made A-orthogonal to Z, so the residuals stay orthogonal to Z and the small eigenvalues Z
        approximates no longer slow CG down. The stopping rule is the undeflated one (residual in the
        preconditioner's norm relative to that of b). The Ritz vectors of the smallest eigenvalues of the (deflated)
        preconditioned Hessian, from CG's Lanczos coefficients, are left in ``harvest`` for the next solve."""
        rtol = CG_RTOL if rtol is None else rtol
        maxiter = CG_MAXITER if maxiter is None else maxiter
        Z, AZ, th = self.Z, self.AZ, self.theta
        defl = Z.shape[1] > 0
        Zc, thc = self.Zc, self.thc
        self.breakdown = False
        coarse = Zc.shape[1] > 0
        stop = rtol * np.sqrt(max(b @ self.precond(b), 0.0))
        if defl:
            c = (Z.T @ b) / th
            x = Z @ c
            r = b - AZ @ c
        else:
            x = np.zeros_like(b)
            r = b.copy()

        def prec(r):
            """(the preconditioned residual, its M^{-1}-norm squared: the stopping rule's)"""
            z = self.precond(r)
            rzm = r @ z
            if coarse:
                z += Zc @ ((Zc.T @ r) / thc)
            if defl:
                z -= Z @ ((AZ.T @ z) / th)
            return z, rzm

        z, rzm = prec(r)
        p = z.copy()
        rz = r @ z
        if not (rzm > 0 and rz > 0 and stop > 0):
            # the preconditioner (or its coarse correction) is not positive on this residual in rounding (late on
            # the path): CG cannot start
            self.breakdown = True
            return x
        V = np.empty((min(maxiter, HARVEST_MAX) + 1, self.nv)) if HARVEST_K else None
        alphas, betas = [], [0.0]
        for it in range(maxiter):
            if np.sqrt(max(rzm, 0.0)) <= stop:
                break
            if V is not None and it < len(V) and rz > 0:
                V[it] = z / np.sqrt(rz)
            Ap = self.hvp(p)
            pAp = p @ Ap
            if not pAp > 0:
                self.breakdown = True
                break
            a = rz / pAp
            alphas.append(a)
            x += a * p
            r -= a * Ap
            z, rzm = prec(r)
            rz_new = r @ z
            betas.append(rz_new / rz)
            p = z + (rz_new / rz) * p
            rz = rz_new
        self.harvest = np.zeros((self.nv, 0))
        m = min(len(alphas), 0 if V is None else len(V))
        if m >= 2:
            al = np.asarray(alphas[:m])
            be = np.asarray(betas[:m + 1])
            diag = 1.0 / al
            diag[1:] += be[1:m] / al[:-1]
            off = -np.sqrt(np.maximum(be[1:m], 0.0)) / al[:-1]
            try:
                w, S = sla.eigh_tridiagonal(diag, off)
            except (np.linalg.LinAlgError, ValueError):
                w = np.zeros(0)
            sel = np.nonzero(w < DEFL_THETA)[0][:HARVEST_K]
            if len(sel):
                self.harvest = V[:m].T @ S[:, sel]
        return x


def _undeflated(ncg: _NewtonCG, g: np.ndarray, hvps: int):
    """The Newton direction from plain preconditioned CG (no deflation space, no coarse correction) at the default
    tolerance: (direction, squared decrement, Hessian-vector products counted so far)."""
    h0 = ncg.hvps
    nv = ncg.nv
    ncg.Z, ncg.AZ, ncg.theta = np.zeros((nv, 0)), np.zeros((nv, 0)), np.zeros(0)
    ncg.Zc, ncg.thc = np.zeros((nv, 0)), np.zeros(0)
    dy = -ncg.solve(g, rtol=CG_RTOL)
    return dy, -g @ dy, hvps + ncg.hvps - h0


def _armijo(lmis, Glin, hlin, y, t, f, dy, dec2, slack):
    """Backtracking from the full Newton step: (step, barrier there); the step is <= 1e-8 when none decreases it."""
    a = 1.0
    fn = np.inf
    while a > 1e-8:
        fn = _barrier(lmis, Glin, hlin, y + a * dy, t)
        if fn <= f - 0.25 * a * dec2 + slack:
            break
        a *= 0.5
    return a, fn


def _recycled(ncg: _NewtonCG, cands: list[np.ndarray]):
    """What a Newton-CG solve leaves for the next one: its (exact or stale) deflation space with its Ritz values,
    and the candidates harvested since the last refresh (this solve's Ritz vectors added)."""
    if ncg.Z.shape[1]:
        Z, th = ncg.Z, ncg.theta
    else:
        Z, th = ncg.Zc, ncg.thc
    if ncg.harvest.shape[1]:
        cands = cands + [ncg.harvest]
    return (Z, th), cands


def _factor(H: np.ndarray, band: int):
    """A solver for H x = rhs: Jacobi-scaled (the multipliers differ by orders of magnitude along the chain),
    banded Cholesky (the Hessian couples neighbouring stages only) or dense Cholesky; least squares if that
    fails. Factored once per Newton step: the predictor reuses it."""
    nv = H.shape[0]
    sc = 1.0 / np.sqrt(np.maximum(np.diag(H), 1e-300))
    # late on the central path the scaled Hessian can lose definiteness in rounding; a tiny shift of its unit
    # diagonal (a slightly damped Newton step) keeps the Cholesky path: the least-squares fallback costs an SVD
    # (measured: 26 s per Newton step on maxmin_residual_8_32, nv = 3889, against 0.4 s)
    for shift in (0.0, 1e-12, 1e-10, 1e-8):
        try:
            if band < nv // 2:
                ab = np.zeros((band + 1, nv))
                for k in range(band + 1):
                    ab[band - k, k:] = np.diagonal(H, k) * sc[:nv - k] * sc[k:]
                ab[band] += shift
                cb = sla.cholesky_banded(ab, overwrite_ab=True, check_finite=False)

                def solve(rhs, cb=cb):
                    return sc * sla.cho_solve_banded((cb, False), rhs * sc, check_finite=False)
            else:
                Hs = H * sc[:, None] * sc[None, :]
                Hs[np.diag_indices(nv)] += shift
                L = np.linalg.cholesky(Hs)  # numpy's LAPACK (see solve)

                def solve(rhs, L=L):
                    z = sla.solve_triangular(L, rhs * sc, lower=True, check_finite=False)
                    return sc * sla.solve_triangular(L.T, z, lower=False, check_finite=False)
            x = solve(np.ones(nv))
            if not np.all(np.isfinite(x)):
                raise np.linalg.LinAlgError("non-finite Newton step")
            return solve
        except (np.linalg.LinAlgError, ValueError):
            continue
    Hr = H + 1e-12 * np.trace(H) / nv * np.eye(nv)
    return lambda rhs: np.linalg.lstsq(Hr, rhs, rcond=None)[0]


def _lmi_ids(L: _Lmi) -> np.ndarray:
    parts = [L.ids, L.dense_ids] + [np.arange(off, off + V.shape[1] * (V.shape[1] + 1) // 2) for off, V, _ in L.mats]
    return np.concatenate(parts).astype(np.int64)


def _barrier(lmis, Glin, hlin, y, t) -> float:
    """t rho - sum log det F_k - sum log(G y + h); inf outside the cone."""
    s = Glin @ y + hlin
    if np.any(s <= 0):
        return np.inf
    val = t * y[0] - np.sum(np.log(s))
    for L in lmis:
        try:
            ch = np.linalg.cholesky(L.value(y))
        except np.linalg.LinAlgError:
            return np.inf
        val -= 2.0 * np.sum(np.log(np.diag(ch)))
    return val


def solve(chain: dict[str, Any], norm: str, use_gamma: bool = True, tol: float | None = None,
          time_limit: float | None = None, verbose: bool = False, threads: int | None = 1, newton: str = "auto"):
    """Returns (rho, d, stage multipliers, status, info) like :func:`.sdp.solve`. ``threads``: BLAS threads during
    the solve (default 1: the matrices are small, and multi-threaded BLAS on a loaded machine was measured 8x
    slower; None leaves the BLAS setting alone)."""
    if threads is None:
        return _solve(chain, norm, use_gamma, tol, time_limit, verbose, newton)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the BLAS default applies
        return _solve(chain, norm, use_gamma, tol, time_limit, verbose, newton)
    with threadpool_limits(limits=int(threads), user_api="blas"):
        return _solve(chain, norm, use_gamma, tol, time_limit, verbose, newton)


def _solve(chain, norm, use_gamma, tol, time_limit, verbose, newton_mode="auto"):
    if newton_mode not in ("auto", "cg", "dense"):
        raise InvalidInputError(f"solver_options['newton'] must be 'auto', 'cg' or 'dense', got {newton_mode!r}")
    from .sdp import restrict

    t_start = time.perf_counter()
    Ws, R, n0, info = restrict(chain, norm)
    if is_plain(chain):
        lmis, Glin, nv, decoder, decode, d = build(chain, norm, Ws, R, n0, use_gamma)
        y = _start(chain, norm, Ws, R, nv, decode, d)
    else:
        lmis, Glin, nv, decoder, decode, d, y = build_general(chain, norm, Ws, R, n0, use_gamma)
    Glin, hlin = _caps(Glin, y, decode)
    use_cg = {"auto": nv > DENSE_MAX and not is_plain(chain), "cg": True, "dense": False}[newton_mode]
    Glin = sp.csr_matrix(Glin) if use_cg else (Glin.toarray() if sp.issparse(Glin) else Glin)
    band = nv
    if not use_cg:
        per_row = np.count_nonzero(Glin, axis=1)
        single_r = np.nonzero(per_row == 1)[0]
        single_c = np.argmax(Glin[single_r] != 0, axis=1)
        multi = np.nonzero(per_row > 1)[0]
        # half-bandwidth of the Hessian: variables interact only within one LMI (and within a multi-variable row)
        band = max([int(np.ptp(_lmi_ids(L))) for L in lmis if len(_lmi_ids(L))]
                   + [int(np.ptp(np.nonzero(Glin[i])[0])) for i in multi] + [0])
    m_bar = sum(L.N for L in lmis) + Glin.shape[0]
    t = m_bar / max(y[0], 1e-12)
    info["lmi_sizes"] = [L.N for L in lmis]
    info["backend"] = "ipm"
    info["newton_system"] = "cg" if use_cg else "dense"
    if tol is None:
        tol = TOL_CG if use_cg else TOL
    mu = MU if is_plain(chain) else MU_GENERAL
    newton = 0
    hvps = 0
    recycle = None  # Newton-CG: (Z, theta) carried from solve to solve
    cands: list[np.ndarray] = []  # Ritz vectors harvested since the last refresh of the deflation space
    since_refresh = 0
    status = "optimal"
    f = _barrier(lmis, Glin, hlin, y, t)
    if not np.isfinite(f):
        raise SolverError("internal error: the interior-point start is not strictly feasible")
    center_tol = CENTER_LOOSE if use_cg else CENTER
    while True:
        # centering
        dec2_prev = np.inf
        for _ in range(MAX_INNER):
            g = np.zeros(nv)
            g[0] = t
            s = Glin @ y + hlin
            g -= Glin.T @ (1.0 / s)
            if use_cg:
                Ps = []
                for L in lmis:
                    P = np.linalg.inv(L.value(y))
                    P = 0.5 * (P + P.T)
                    Ps.append(P)
                    g[_lmi_ids(L)] -= L.adjoint(P)
                ncg = _NewtonCG(lmis, Ps, Glin, s, nv)
                if recycle is not None:
                    if since_refresh + 1 >= DEFL_REFRESH:
                        ncg.deflate(np.hstack([recycle[0]] + cands))
                        since_refresh, cands = 0, []
                    else:
                        ncg.Zc, ncg.thc = recycle[0], recycle[1]
                        since_refresh += 1
                hsolve = ncg.solve
                # inexact Newton: a loose CG tolerance while the step is damped anyway (far from the centre)
                dy = -hsolve(g, rtol=min(CG_RTOL_MAX, max(CG_RTOL, CG_FORCING * dec2_prev)))
                recycle, cands = _recycled(ncg, cands)
                hvps += ncg.hvps
            else:
                H = np.zeros((nv, nv))
                for L in lmis:
                    F = L.value(y)
                    P = np.linalg.inv(F)  # numpy's LAPACK: scipy's bundled one is far slower on small matrices here
                    P = 0.5 * (P + P.T)
                    ids, gl, hl = L.derivs(P)
                    g[ids] -= gl
                    H[np.ix_(ids, ids)] += hl
                # single-variable rows (bounds) add to the diagonal; the others (l-inf: rho - sum d) densely
                np.add.at(H, (single_c, single_c), Glin[single_r, single_c] ** 2 / s[single_r] ** 2)
                if len(multi):
                    Gm = Glin[multi]
                    H += (Gm.T * (1.0 / s[multi] ** 2)) @ Gm
                hsolve = _factor(H, band)
                dy = -hsolve(g)
            dec2 = -g @ dy
            dec2_prev = dec2
            newton += 1
            if dec2 / 2 < center_tol:
                if center_tol > CENTER:  # loose centring: this step is in the quadratic region; take it
                    fn = _barrier(lmis, Glin, hlin, y + dy, t)
                    if fn < f:
                        y, f = y + dy, fn
                break
            slack = 1e-13 * abs(f)  # rounding in f: Armijo cannot ask for decreases below it
            a, fn = _armijo(lmis, Glin, hlin, y, t, f, dy, dec2, slack)
            if a <= 1e-8 and use_cg and (ncg.Z.shape[1] or ncg.Zc.shape[1]):
                # no progress along a deflated (or coarse-corrected) direction: late on the path, Ritz values near
                # 1e-8 can spoil it in rounding. Solve again without deflation, and recycle afresh
                dy, dec2, hvps = _undeflated(ncg, g, hvps)
                recycle, cands, since_refresh = None, [], 0
                a, fn = _armijo(lmis, Glin, hlin, y, t, f, dy, dec2, slack)
                if verbose > 1:
                    print(f"   newton {newton}: no progress along the deflated direction; undeflated: dec2 {dec2:.3e} "
                          f"step {a:.3e}")
            if a <= 1e-8:  # no progress at working precision: as centred as it gets
                break
            if a == 1.0 and dec2 > 1.0:
                # far from the centre with full steps accepted: the iterate is walking out along a direction
                # where the barrier keeps falling (a multiplier growing towards its cap); extrapolate
                while a < 1024.0:
                    fe = _barrier(lmis, Glin, hlin, y + 2 * a * dy, t)
                    if not fe < fn:
                        break
                    a, fn = 2 * a, fe
            y = y + a * dy
            f = fn
            if verbose > 1:
                print(f"   newton {newton}: dec2 {dec2:.3e} step {a:.3e}"
                      + (f" cg {ncg.hvps} deflation {ncg.Z.shape[1]} (min theta "
                         f"{ncg.theta.min() if len(ncg.theta) else float('nan'):.1e}) harvest {ncg.harvest.shape[1]}"
                         if use_cg else ""))
            if newton >= MAX_NEWTON or (time_limit is not None and time.perf_counter() - t_start > time_limit):
                break
        gap = m_bar / t
        if verbose:
            print(f"ipm: t {t:.3e} rho {y[0]:.8g} gap {gap:.3e} newton {newton}"
                  + (f" cg {hvps}" if use_cg else "") + f" {time.perf_counter() - t_start:.1f} s", flush=True)
        if gap <= tol * max(y[0], 1e-300):
            if center_tol > CENTER and newton < MAX_NEWTON and not (
                    time_limit is not None and time.perf_counter() - t_start > time_limit):
                center_tol = CENTER  # the last t: centre tightly (the gap bound m / t holds on the central path)
                continue
            break
        if newton >= MAX_NEWTON:
            status = "optimal_inaccurate"
            break
        if time_limit is not None and time.perf_counter() - t_start > time_limit:
            status = "optimal_inaccurate"
            break
        hvps_before = ncg.hvps if use_cg else 0
        if use_cg and ncg.harvest.shape[1] and DEFL_K:
            if ncg.Zc.shape[1]:
                ncg.deflate(np.hstack([ncg.Zc] + cands))
                ncg.Zc, ncg.thc = np.zeros((nv, 0)), np.zeros(0)
                since_refresh, cands = 0, []
            else:
                ncg.deflate(ncg.harvest, keep=True)  # the same Hessian: add what the Newton solve found
        # predictor: along the tangent of the central path, dy/dt = -H^{-1} e_rho (from t e_rho + grad = 0)
        dp = -hsolve(np.eye(1, nv, 0).ravel()) * (mu - 1.0) * t
        if use_cg:
            hvps += ncg.hvps - hvps_before
            recycle, cands = _recycled(ncg, cands)
        t *= mu
        f = _barrier(lmis, Glin, hlin, y, t)
        a = 1.0
        while a > 1e-3:
            fp = _barrier(lmis, Glin, hlin, y + a * dp, t)
            if fp < f:
                y, f = y + a * dp, fp
                break
            a *= 0.5
    info["solver_stats"] = {"solve_time": time.perf_counter() - t_start, "num_iters": newton,
                            "gap_bound": m_bar / t}
    if use_cg:
        info["solver_stats"]["cg_iterations"] = hvps
    rho, dv, mults = decoder(y)
    return rho, dv, mults, status, info
