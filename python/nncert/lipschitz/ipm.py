"""A barrier interior-point solver specialised to the decoupled LipSDP-NSR chain of grouped layers (MaxMin,
GroupSort, Householder), l2 or l-inf with a scalar output.

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
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.linalg as sla

from ..errors import SolverError

MU = 3.0
#: multiplier caps, relative to the (feasible) start: see _caps
CAP = 1e3
#: Newton steps per centring at most (then t grows anyway: long-step path following)
MAX_INNER = 100
TOL = 1e-6
#: centering ends when half the squared Newton decrement is below this
CENTER = 1e-6
MAX_NEWTON = 500


def applies(chain: dict[str, Any], norm: str) -> bool:
    """True when every stage is a plain (non-residual) grouped stage: the chain this solver handles."""
    return bool(chain["stages"]) and all(st["kind"] == "groups" and not st["residual"] for st in chain["stages"])


class _Lmi:
    """F(y) = C + sum_i y_{ids[i]} U_i D_i U_i^T + sum_j y_{dense_ids[j]} A_j."""

    def __init__(self, C: np.ndarray, ids: np.ndarray, U: np.ndarray, D: np.ndarray,
                 dense_ids: list[int] | None = None, dense: list[np.ndarray] | None = None,
                 fac: np.ndarray | None = None):
        """U: (p, N, r) factors, one per variable, or (q, N, r) distinct factors with ``fac`` (p,) saying which
        one each variable uses (lambda_j and gamma_j share W_g^T)."""
        self.C, self.ids, self.N = C, np.asarray(ids, dtype=np.int64), C.shape[0]
        q, N, r = U.shape
        p = len(self.ids)
        self.fac = np.arange(p) if fac is None else np.asarray(fac, dtype=np.int64)
        self.p, self.q, self.r = p, q, r
        self.Ucat = np.ascontiguousarray(U.transpose(1, 0, 2).reshape(N, q * r))
        self.D = D
        self.dense_ids = np.asarray(dense_ids or [], dtype=np.int64)
        self.dense = dense or []

    def value(self, y: np.ndarray) -> np.ndarray:
        N, q, r = self.N, self.q, self.r
        Dy = np.zeros((q, r, r))
        np.add.at(Dy, self.fac, self.D * y[self.ids][:, None, None])  # per distinct factor: sum_i y_i D_i
        UD = np.matmul(self.Ucat.reshape(N, q, r).transpose(1, 0, 2), Dy)  # (q, N, r)
        F = self.C + UD.transpose(1, 0, 2).reshape(N, q * r) @ self.Ucat.T
        for j, A in zip(self.dense_ids, self.dense):
            F = F + y[j] * A
        return 0.5 * (F + F.T)

    def derivs(self, P: np.ndarray):
        """(gradient of log det F, Hessian of -log det F) restricted to this LMI's variables, with P = F^{-1}:
        d log det / dy_i = tr(P A_i), d^2 (-log det) / dy_i dy_j = tr(P A_i P A_j)."""
        p, q, r = self.p, self.q, self.r
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


def build(chain: dict[str, Any], norm: str, Ws: list[np.ndarray], R: np.ndarray, n0: int, use_gamma: bool = True):
    """The LMIs, the linear constraints (rows of G y >= 0), the variable count and a decoder."""
    stages = chain["stages"]
    nv = 1
    rho = 0
    d = None
    if norm == "inf":
        d = np.arange(nv, nv + n0)
        nv += n0
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
                G = np.zeros((len(ids), nv))
                G[np.arange(len(ids)), ids] = sign
                rows.append(G)
                h.append(np.full(len(ids), cap))
    return np.vstack(rows), np.concatenate(h)


def _newton_solve(H: np.ndarray, rhs: np.ndarray, band: int) -> np.ndarray:
    """H^{-1} rhs: Jacobi-scaled (the multipliers differ by orders of magnitude along the chain), banded Cholesky
    (the Hessian couples neighbouring stages only); least squares if that fails."""
    nv = len(rhs)
    try:
        sc = 1.0 / np.sqrt(np.maximum(np.diag(H), 1e-300))
        Hs = H * sc[:, None] * sc[None, :]
        if band < nv // 2:
            ab = np.zeros((band + 1, nv))
            for k in range(band + 1):
                ab[band - k, k:] = np.diagonal(Hs, k)
            x = sc * sla.solveh_banded(ab, rhs * sc)
        else:
            x = sc * np.linalg.solve(Hs, rhs * sc)
        if not np.all(np.isfinite(x)):
            raise np.linalg.LinAlgError("non-finite Newton step")
        return x
    except (np.linalg.LinAlgError, ValueError):
        return np.linalg.lstsq(H + 1e-12 * np.trace(H) / nv * np.eye(nv), rhs, rcond=None)[0]


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


def solve(chain: dict[str, Any], norm: str, use_gamma: bool = True, tol: float = TOL,
          time_limit: float | None = None, verbose: bool = False, threads: int | None = 1):
    """Returns (rho, d, stage multipliers, status, info) like :func:`.sdp.solve`. ``threads``: BLAS threads during
    the solve (default 1: the matrices are small, and multi-threaded BLAS on a loaded machine was measured 8x
    slower; None leaves the BLAS setting alone)."""
    if threads is None:
        return _solve(chain, norm, use_gamma, tol, time_limit, verbose)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the BLAS default applies
        return _solve(chain, norm, use_gamma, tol, time_limit, verbose)
    with threadpool_limits(limits=int(threads), user_api="blas"):
        return _solve(chain, norm, use_gamma, tol, time_limit, verbose)


def _solve(chain, norm, use_gamma, tol, time_limit, verbose):
    from .sdp import restrict

    t_start = time.perf_counter()
    Ws, R, n0, info = restrict(chain, norm)
    lmis, Glin, nv, decoder, decode, d = build(chain, norm, Ws, R, n0, use_gamma)
    y = _start(chain, norm, Ws, R, nv, decode, d)
    Glin, hlin = _caps(Glin, y, decode)
    per_row = np.count_nonzero(Glin, axis=1)
    single_r = np.nonzero(per_row == 1)[0]
    single_c = np.argmax(Glin[single_r] != 0, axis=1)
    multi = np.nonzero(per_row > 1)[0]
    # half-bandwidth of the Hessian: variables interact only within one LMI (and within a multi-variable row)
    band = max([int(np.ptp(np.concatenate([L.ids, L.dense_ids]))) for L in lmis if len(L.ids) + len(L.dense_ids)]
               + [int(np.ptp(np.nonzero(Glin[i])[0])) for i in multi] + [0])
    m_bar = sum(L.N for L in lmis) + Glin.shape[0]
    t = m_bar / max(y[0], 1e-12)
    info["lmi_sizes"] = [L.N for L in lmis]
    info["backend"] = "ipm"
    newton = 0
    status = "optimal"
    f = _barrier(lmis, Glin, hlin, y, t)
    if not np.isfinite(f):
        raise SolverError("internal error: the interior-point start is not strictly feasible")
    while True:
        # centering
        for _ in range(MAX_INNER):
            g = np.zeros(nv)
            g[0] = t
            H = np.zeros((nv, nv))
            for L in lmis:
                F = L.value(y)
                P = np.linalg.inv(F)  # numpy's LAPACK: scipy's bundled one is far slower on small matrices here
                P = 0.5 * (P + P.T)
                ids, gl, hl = L.derivs(P)
                g[ids] -= gl
                H[np.ix_(ids, ids)] += hl
            s = Glin @ y + hlin
            g -= Glin.T @ (1.0 / s)
            # single-variable rows (bounds) add to the diagonal; the others (l-inf: rho - sum d) densely
            np.add.at(H, (single_c, single_c), Glin[single_r, single_c] ** 2 / s[single_r] ** 2)
            if len(multi):
                Gm = Glin[multi]
                H += (Gm.T * (1.0 / s[multi] ** 2)) @ Gm
            dy = -_newton_solve(H, g, band)
            dec2 = -g @ dy
            newton += 1
            if dec2 / 2 < CENTER:
                break
            a = 1.0
            slack = 1e-13 * abs(f)  # rounding in f: Armijo cannot ask for decreases below it
            while a > 1e-8:
                fn = _barrier(lmis, Glin, hlin, y + a * dy, t)
                if fn <= f - 0.25 * a * dec2 + slack:
                    break
                a *= 0.5
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
                print(f"   newton {newton}: dec2 {dec2:.3e} step {a:.3e}")
            if newton >= MAX_NEWTON or (time_limit is not None and time.perf_counter() - t_start > time_limit):
                break
        gap = m_bar / t
        if verbose:
            print(f"ipm: t {t:.3e} rho {y[0]:.8g} gap {gap:.3e} newton {newton}")
        if gap <= tol * max(y[0], 1e-300):
            break
        if newton >= MAX_NEWTON:
            status = "optimal_inaccurate"
            break
        if time_limit is not None and time.perf_counter() - t_start > time_limit:
            status = "optimal_inaccurate"
            break
        # predictor: along the tangent of the central path, dy/dt = -H^{-1} e_rho (from t e_rho + grad = 0)
        dp = -_newton_solve(H, np.eye(1, nv, 0).ravel(), band) * (MU - 1.0) * t
        t *= MU
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
    rho, dv, mults = decoder(y)
    return rho, dv, mults, status, info
