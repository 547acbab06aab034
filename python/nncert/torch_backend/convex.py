"""The ADMM of ``rust/core/src/convex/admm.rs`` (and its u-steps, ``ustep.rs``) with torch ops on a device.

Same splitting, same updates in the same order, same residuals, stopping rule, residual balancing of rho (with
refactorisation for the squared loss), over-relaxation and history records; the u-step is chosen by the core's
own rule (``_core.convex_ustep_choose``) among the dense Cholesky (of the dP x dP system of V - W and the d x d
one of V + W), the n x n Woodbury factorisation and PCG preconditioned by the d x d block. The final cone
projection (Hildreth's method, sequential by nature) runs in the Rust core on the CPU
(``_core.convex_project_cones``): a d x 2P transfer, once per output.

Returns the same dicts as ``_core.convex_admm`` so that the estimator's code after the solve is shared.
float32 is supported (``dtype="float32"``): the scalars of the stopping rule and rho are kept in Python floats;
tolerances much below 1e-5 are then out of reach and the run stops at max_iter.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from ..devices import CPU, Device
from ..errors import InvalidInputError, ShapeError, SolverError

LOSSES = ("squared", "logistic", "hinge")
U_SOLVERS = ("auto", "dense", "woodbury", "pcg")
PCG_MAX_ITER = 2000  # as in ustep.rs
DENSE_ROWS = 2048  # rows of F_h at a time (ustep.rs)
PROJECT_SWEEPS = 2000  # as in admm.rs


def _torch_dtype(dtype: str) -> Any:
    import torch
    if dtype not in ("float64", "float32"):
        raise InvalidInputError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return torch.float64 if dtype == "float64" else torch.float32


# ---------------------------------------------------------------------- losses (admm.rs `Loss`)
def _sigmoid(v):
    import torch
    t = torch.exp(-v.abs())
    return torch.where(v >= 0, 1.0 / (1.0 + t), t / (1.0 + t))


def loss_value(loss: str, f, y):
    """Sum of the loss over the samples (0.5 (f - y)^2, log(1 + exp(-y f)), max(0, 1 - y f))."""
    import torch
    if loss == "squared":
        return (0.5 * (f - y) * (f - y)).sum()
    z = -y * f
    if loss == "logistic":
        return (torch.clamp(z, min=0.0) + torch.log1p(torch.exp(-z.abs()))).sum()
    return torch.clamp(1.0 + z, min=0.0).sum()


def prox(loss: str, a, y, t: float):
    """argmin_q t loss(q, y) + 0.5 (q - a)^2 elementwise (the bracketed Newton iteration of admm.rs for logistic)."""
    import torch
    if loss == "squared":
        return (a + t * y) / (1.0 + t)
    if loss == "hinge":
        m = y * a
        return torch.where(m >= 1.0, a, torch.where(m <= 1.0 - t, a + t * y, y))
    tol = 1e-15 if a.dtype == torch.float64 else float(torch.finfo(a.dtype).eps)
    pos = y > 0
    lo = torch.where(pos, a, a - t)
    hi = torch.where(pos, a + t, a)
    q = 0.5 * (lo + hi)
    done = torch.zeros_like(q, dtype=torch.bool)
    for k in range(200):
        s = _sigmoid(-y * q)
        g = q - a - t * y * s
        up = g > 0
        hi = torch.where(up, q, hi)
        lo = torch.where(up, lo, q)
        h = 1.0 + t * s * (1.0 - s)
        nxt = q - g / h
        nxt = torch.where((nxt > lo) & (nxt < hi), nxt, 0.5 * (lo + hi))
        scale = tol * (1.0 + q.abs())
        conv = ((nxt - q).abs() <= scale) | (hi - lo <= scale)
        q = torch.where(done, q, nxt)  # finished entries stay frozen, as after the core's per-entry break
        done = done | conv
        if k % 4 == 3 and bool(done.all()):
            break
    return q


# ---------------------------------------------------------------------- linear maps (ops.rs)
class _Ops:
    """X (n x d), patterns D (n x P); U is d x 2P (v columns, then w columns)."""

    def __init__(self, X, D):
        import torch
        self.X, self.D = X, D
        self.n, self.d, self.p = X.shape[0], X.shape[1], D.shape[1]
        self.sgn = 2.0 * torch.cat([D, D], dim=1) - 1.0  # (2D_j - I) for column j of U

    def f_from_z(self, z):
        p = self.p
        return (self.D * (z[:, :p] - z[:, p:])).sum(dim=1)

    def add_ft_cols(self, t, r, scale: float = 1.0) -> None:
        v = scale * self.D * t[:, None]
        r[:, :self.p] += v
        r[:, self.p:] -= v


# ---------------------------------------------------------------------- u-step (ustep.rs)
def _chol(m, what: str):
    import torch
    L, info = torch.linalg.cholesky_ex(m)
    if int(info) != 0:
        raise SolverError(f"Cholesky factorisation of the {what} failed (minor {int(info)}); is the data finite?")
    return L


class _USolver:
    """Solves (a blkdiag(c I + X^T X) + F^T F) U = R by the chosen method."""

    def __init__(self, ops: _Ops, a: float, c: float, kind: str, pcg_tol: float):
        import torch
        X = ops.X
        n, d, p = ops.n, ops.d, ops.p
        am = a * (X.T @ X)
        am.diagonal().add_(a * c)
        self.kind, self.ops, self.scale, self.c, self.tol = kind, ops, a, c, pcg_tol
        if kind == "dense":
            # T = V - W: (blkdiag(A) + 2 F_h^T F_h) vec T, F_h = [D_1 X, .., D_P X]; S = V + W: A S (ustep.rs)
            m = d * p
            tm = torch.zeros((m, m), dtype=X.dtype, device=X.device)
            for r0 in range(0, n, DENSE_ROWS):
                Dr, Xr = ops.D[r0:r0 + DENSE_ROWS], X[r0:r0 + DENSE_ROWS]
                F = (Dr[:, :, None] * Xr[:, None, :]).reshape(Dr.shape[0], m)  # column j d + c: D_j x_c
                tm.addmm_(F.T, F, alpha=2.0)
            del F
            for j in range(p):
                tm[j * d:(j + 1) * d, j * d:(j + 1) * d] += am
            self.La = _chol(am, "d x d block")
            self.L = _chol(tm, "dense u-step matrix")
        elif kind == "woodbury":
            self.La = _chol(am, "d x d block")
            ainv_xt = torch.cholesky_solve(X.T.contiguous(), self.La)  # d x n
            K = 2.0 * (ops.D @ ops.D.T) * (X @ ainv_xt)
            del ainv_xt
            K.diagonal().add_(1.0)
            self.Lk = _chol(K, "n x n Woodbury capacitance matrix")
        elif kind == "pcg":
            self.La = _chol(am, "d x d block")
        else:  # pragma: no cover - choose() resolves auto
            raise InvalidInputError(f"unknown u-step {kind!r}")

    def solve(self, R, U):
        """(U, inner iterations); U is the previous solution (the PCG warm start)."""
        import torch
        ops = self.ops
        if self.kind == "dense":
            d, p = ops.d, ops.p
            S = torch.cholesky_solve(R[:, :p] + R[:, p:], self.La)
            T = torch.cholesky_solve((R[:, :p] - R[:, p:]).T.reshape(-1, 1), self.L).reshape(p, d).T
            return torch.cat([0.5 * (S + T), 0.5 * (S - T)], dim=1).contiguous(), 0
        if self.kind == "woodbury":
            T = torch.cholesky_solve(R, self.La)
            f = ops.f_from_z(ops.X @ T)
            yk = torch.cholesky_solve(f[:, None], self.Lk)[:, 0]
            Z = torch.zeros((ops.n, 2 * ops.p), dtype=R.dtype, device=R.device)
            ops.add_ft_cols(yk, Z)
            return T - torch.cholesky_solve(ops.X.T @ Z, self.La), 0
        return self._pcg(R, U)

    def _apply(self, U):
        ops = self.ops
        z = ops.X @ U
        f = ops.f_from_z(z)
        z = self.scale * z
        ops.add_ft_cols(f, z)
        return ops.X.T @ z + (self.scale * self.c) * U

    def _pcg(self, R, U):
        import torch
        res = R - self._apply(U)
        rnorm = max(float(torch.linalg.norm(R)), np.finfo(np.float64).tiny)
        if float(torch.linalg.norm(res)) <= self.tol * rnorm:
            return U, 0
        prec = torch.cholesky_solve(res, self.La)
        dirn = prec.clone()
        rz = (res * prec).sum()
        for it in range(1, PCG_MAX_ITER + 1):
            mu = self._apply(dirn)
            alpha = rz / (dirn * mu).sum()
            if not bool(torch.isfinite(alpha)):
                raise SolverError("PCG u-step broke down (non-finite step)")
            U = U + alpha * dirn
            res = res - alpha * mu
            if float(torch.linalg.norm(res)) <= self.tol * rnorm:
                return U, it
            prec = torch.cholesky_solve(res, self.La)
            rz_new = (res * prec).sum()
            dirn = prec + dirn * (rz_new / rz)
            rz = rz_new
        return U, PCG_MAX_ITER


# ---------------------------------------------------------------------- the ADMM (admm.rs)
def _as_numpy64(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


def convex_admm(x: Any, y: Any, patterns: Any, beta: float, loss: str = "squared", rho: float = 1.0,
                max_iter: int = 10000, eps_abs: float = 1e-7, eps_rel: float = 1e-6, u_solver: str = "auto",
                pcg_tol: float = 1e-10, memory_limit: float = 4.0 * 2**30, time_limit: float = math.inf,
                callback: Callable | None = None, callback_every: int = 50, adapt_every: int = 25,
                relaxation: float = 1.6, z_weight: float = 1.0, project: bool = True, max_refactor: int = 30,
                device: Device = CPU, dtype: str = "float64") -> list[dict]:
    """``_core.convex_admm`` on ``device``: the ADMM for each column of y (n x C), one u-step factorisation shared
    (rebuilt locally when residual balancing changes rho with the squared loss). Same arguments and result dicts
    (v, w, objective, iterations, status, u_solver, factor_seconds, solve_seconds, history (k, 7)); the callback
    is called every ``callback_every`` iterations as ``callback(output, iter, objective, primal, dual)``."""
    import torch
    from .. import _core
    tdt = _torch_dtype(dtype)
    tdev = device.torch()
    if loss not in LOSSES:
        raise InvalidInputError(f"loss must be 'squared', 'logistic' or 'hinge', got {loss!r}")
    if u_solver not in U_SOLVERS:
        raise InvalidInputError(f"u_solver must be 'auto', 'dense', 'woodbury' or 'pcg', got {u_solver!r}")
    Xn, Yn, Dn = _as_numpy64(x), _as_numpy64(y), _as_numpy64(patterns)
    if Xn.ndim != 2 or Yn.ndim != 2 or Dn.ndim != 2:
        raise ShapeError("x, y and patterns must be 2-D (n x d, n x C, n x P)")
    n, d = Xn.shape
    P = Dn.shape[1]
    if n == 0 or d == 0 or P == 0:
        raise ShapeError(f"empty problem: n = {n}, d = {d}, P = {P}")
    if Dn.shape[0] != n:
        raise ShapeError(f"patterns have {Dn.shape[0]} rows but X has {n}")
    if Yn.shape[0] != n:
        raise ShapeError(f"y has {Yn.shape[0]} rows but X has {n}")
    if not np.all(np.isfinite(Xn)):
        raise InvalidInputError("X has entries that are not finite")
    if not np.all((Dn == 0.0) | (Dn == 1.0)):
        raise InvalidInputError("patterns must be 0/1")
    if not np.all(np.isfinite(Yn)):
        raise InvalidInputError("y has entries that are not finite")
    if loss != "squared" and not np.all(np.abs(Yn) == 1.0):
        raise InvalidInputError(f"the {loss} loss needs labels +-1")
    if not 1.0 <= relaxation < 2.0:
        raise InvalidInputError(f"relaxation must be in [1, 2), got {relaxation}")
    if not (rho > 0 and math.isfinite(rho)):
        raise InvalidInputError(f"rho must be positive and finite, got {rho}")
    if not (beta > 0 and math.isfinite(beta)):
        raise InvalidInputError(f"beta must be positive and finite, got {beta}")
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(tdev)
        memory_limit = min(float(memory_limit), 0.8 * float(free))
    kind = _core.convex_ustep_choose(u_solver, n, d, P, float(memory_limit), float(time_limit))

    squared = loss == "squared"
    X = torch.as_tensor(Xn, dtype=tdt, device=tdev)
    D = torch.as_tensor(Dn, dtype=tdt, device=tdev)
    ops = _Ops(X, D)
    t0 = time.perf_counter()
    cw = float(z_weight) if z_weight > 0 else max(float((X * X).sum()) / d, 1e-12)
    base = _USolver(ops, float(rho) if squared else 1.0, cw, kind, pcg_tol)
    if device.type == "cuda":
        torch.cuda.synchronize(tdev)
    base_seconds = time.perf_counter() - t0

    out = []
    for c in range(Yn.shape[1]):
        yt = torch.as_tensor(Yn[:, c], dtype=tdt, device=tdev)
        res = _solve(ops, base, base_seconds, yt, float(beta), loss, float(rho), cw, int(max_iter), float(eps_abs),
                     float(eps_rel), float(time_limit), callback, max(1, int(callback_every)), int(adapt_every),
                     int(max_refactor), float(relaxation), float(pcg_tol), c)
        if project and res["status"] == "converged":
            _project(ops, Xn, Dn, res, yt, float(beta), loss)
        zc = res.pop("zc")
        res["v"] = zc[:, :P].detach().cpu().numpy().astype(np.float64)
        res["w"] = zc[:, P:].detach().cpu().numpy().astype(np.float64)
        out.append(res)
    return out


def _objective(ops: _Ops, U, y, beta: float, loss: str):
    """(objective, violation) tensors at U (d x 2P), as admm.rs `objective`."""
    import torch
    xu = ops.X @ U
    f = ops.f_from_z(xu)
    reg = torch.linalg.norm(U, dim=0).sum()
    viol = torch.clamp((-(ops.sgn * xu)).max(), min=0.0)
    return loss_value(loss, f, y) + beta * reg, viol


def _project(ops: _Ops, Xn: np.ndarray, Dn: np.ndarray, res: dict, y, beta: float, loss: str) -> None:
    """The core's cone projection of a converged iterate (CPU); the last history record gets the objective and
    violation after it, as in admm.rs."""
    import torch
    from .. import _core
    zc = res["zc"]
    proj, _ = _core.convex_project_cones(Xn, Dn, np.ascontiguousarray(zc.detach().cpu().numpy(), dtype=np.float64),
                                         PROJECT_SWEEPS)
    zc = torch.as_tensor(proj, dtype=zc.dtype, device=zc.device)
    obj, viol = _objective(ops, zc, y, beta, loss)
    res["zc"] = zc
    res["history"][-1, 1] = float(obj)
    res["history"][-1, 4] = float(viol)
    res["objective"] = float(obj)


def _solve(ops: _Ops, base: _USolver, base_seconds: float, y, beta: float, loss: str, rho: float, cw: float,
           max_iter: int, eps_abs: float, eps_rel: float, time_limit: float, callback, every: int,
           adapt_every: int, max_refactor: int, al: float, pcg_tol: float, output: int) -> dict:
    import torch
    X, sgn = ops.X, ops.sgn
    n, d, p = ops.n, ops.d, ops.p
    m = 2 * p
    squared = loss == "squared"
    kw = dict(dtype=X.dtype, device=X.device)
    usolver = base
    refactors = 0
    factor_seconds = 0.0
    start = time.perf_counter()
    U = torch.zeros((d, m), **kw)
    zc = torch.zeros((d, m), **kw)
    lam = torch.zeros((d, m), **kw)
    s = torch.zeros((n, m), **kw)
    nu = torch.zeros((n, m), **kw)
    q = torch.zeros(n, **kw)
    mu = torch.zeros(n, **kw)
    history: list[list[float]] = []
    status = "max_iter"
    iters = 0
    n_con = d * m + n * m + (0 if squared else n)
    for it in range(1, max_iter + 1):
        iters = it
        a = rho if squared else 1.0
        # u-step: M U = F^T t + a [(Zc - Lam) + G^T (S - Nu)], t = y (squared) or q - mu.
        rr = a * sgn * (s - nu)
        ops.add_ft_cols(y if squared else q - mu, rr)
        rhs = X.T @ rr + (a * cw) * (zc - lam)
        U, inner = usolver.solve(rhs, U)
        xu = X @ U
        gu = sgn * xu
        fu = ops.f_from_z(xu)
        # Zc-step: group soft-thresholding; S-step: projection on the orthant; q-step: prox of the loss.
        zc_old = zc
        thr = beta / (rho * cw)
        vv = al * U + (1.0 - al) * zc_old + lam
        nrm = torch.linalg.norm(vv, dim=0)
        shrink = torch.where(nrm > thr, 1.0 - thr / nrm, torch.zeros_like(nrm))
        zc = shrink * vv
        s_old = s
        s = torch.clamp(al * gu + (1.0 - al) * s_old + nu, min=0.0)
        q_old = q
        if not squared:
            q = prox(loss, al * fu + (1.0 - al) * q_old + mu, y, 1.0 / rho)
        # Dual updates and residuals.
        lam = lam + (al * U + (1.0 - al) * zc_old - zc)
        nu = nu + (al * gu + (1.0 - al) * s_old - s)
        pr2 = cw * ((U - zc) ** 2).sum() + ((gu - s) ** 2).sum()
        au2 = cw * (U * U).sum() + (gu * gu).sum()
        bz2 = cw * (zc * zc).sum() + (s * s).sum()
        if not squared:
            mu = mu + (al * fu + (1.0 - al) * q_old - q)
            pr2 = pr2 + ((fu - q) ** 2).sum()
            au2 = au2 + (fu * fu).sum()
            bz2 = bz2 + (q * q).sum()
        rr = sgn * (s - s_old)
        if not squared:
            ops.add_ft_cols(q - q_old, rr)
        dres_t = torch.linalg.norm(X.T @ rr + cw * (zc - zc_old))
        rr = sgn * nu
        if not squared:
            ops.add_ft_cols(mu, rr)
        ady_t = torch.linalg.norm(X.T @ rr + cw * lam)
        obj_t, viol_t = _objective(ops, zc, y, beta, loss)
        # One device-to-host transfer per iteration for all the scalars of the stopping rule.
        pr2, au2, bz2, dres, ady, objective, violation = torch.stack(
            [pr2, au2, bz2, dres_t, ady_t, obj_t, viol_t]).double().tolist()
        dres *= rho
        ady *= rho
        pres = math.sqrt(pr2)
        eps_pri = math.sqrt(n_con) * eps_abs + eps_rel * max(math.sqrt(au2), math.sqrt(bz2))
        eps_dual = math.sqrt(d * m) * eps_abs + eps_rel * ady
        seconds = time.perf_counter() - start
        history.append([it, objective, pres, dres, violation, seconds, inner])
        if not math.isfinite(objective):
            raise SolverError(f"ADMM diverged at iteration {it} (objective {objective})")
        if callback is not None and it % every == 0:
            callback(output, it, objective, pres, dres)
        if pres <= eps_pri and dres <= eps_dual:
            status = "converged"
            break
        if seconds > time_limit:
            status = "time_limit"
            break
        if adapt_every > 0 and it % adapt_every == 0 and refactors < max_refactor:
            # As admm.rs: the split-off losses use the unnormalised rule.
            if squared:
                pn = pres / max(math.sqrt(au2), math.sqrt(bz2), 1e-300)
                dn = dres / max(ady, 1e-300)
            else:
                pn, dn = pres, dres
            ratio = math.sqrt(pn / max(dn, 1e-300))
            if math.isfinite(ratio) and not 0.2 <= ratio <= 5.0:
                new_rho = min(max(rho * ratio, 1e-6), 1e6)
                k = rho / new_rho
                lam, nu, mu = lam * k, nu * k, mu * k
                rho = new_rho
                if squared:
                    t1 = time.perf_counter()
                    usolver = _USolver(ops, rho, cw, base.kind, pcg_tol)
                    factor_seconds += time.perf_counter() - t1
                refactors += 1
    hist = np.array(history, dtype=np.float64).reshape(-1, 7)
    return {"zc": zc, "objective": float(hist[-1, 1]) if len(hist) else float("nan"), "iterations": iters,
            "status": status, "u_solver": base.kind, "factor_seconds": base_seconds + factor_seconds,
            "solve_seconds": time.perf_counter() - start, "history": hist}
