"""CG and DCDM as torch ops, for data on a CUDA device: the matrix (torch sparse CSR), the vectors and
the model stay on the device. Same algorithms as the Rust core (rust/core/src/linalg/{cg,dcdm}.rs):
true-residual replacement every ``recompute_every`` iterations and confirmation of every claimed
convergence. Both keep their scalars on the device and read the residuals (and error flags) back once per
block of iterations, the block sized from the observed convergence rate so that it ends on the converging
iteration: no host round trip per iteration."""

from __future__ import annotations

import time
import warnings
from collections import deque
from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError, ShapeError, SolverError
from ._operator import Operator

# the stall guard of rust/core/src/linalg/dcdm.rs
STALL_WINDOW, STALL_FACTOR = 10, 0.9


def _matrix(op: Operator, dev: Any) -> tuple[Any, int]:
    """(the CSR matrix on the device, bytes one product moves). 32-bit indices where they fit: the
    product is bound by memory traffic, and cuSPARSE takes either width."""
    import torch

    A = op.csr
    try:  # an index out of range would be a memory error on the device, not an exception
        A.check_format(full_check=True)
    except ValueError as e:
        raise InvalidInputError(f"A is not a valid CSR matrix: {e}") from e
    itype = np.int32 if A.nnz < 2**31 - 1 else np.int64
    ib = np.dtype(itype).itemsize
    with warnings.catch_warnings():  # "sparse CSR support is in beta": noise for our users
        warnings.simplefilter("ignore", UserWarning)
        T = torch.sparse_csr_tensor(torch.from_numpy(A.indptr.astype(itype)), torch.from_numpy(A.indices.astype(itype)),
                                    torch.from_numpy(A.data), size=A.shape, dtype=torch.float64,
                                    check_invariants=False).to(dev)  # checked above, by scipy
    return T, A.nnz * (8 + ib) + (A.shape[0] + 1) * ib + 16 * A.shape[0]


def _raw(method: str, it: int, res: list, matvecs: int, reason: str, false_conv: int, fallbacks: int) -> dict:
    return {"iterations": it, "residuals": np.array(res), "reason": reason, "method": method, "matvecs": matvecs,
            "false_convergences": false_conv, "fallbacks": fallbacks, "seconds": 0.0}


def torch_dcdm(op: Operator, b: np.ndarray, x0: np.ndarray | None, oracle: Callable, k: int, tol: float,
               maxiter: int, dev: Any, recompute_every: int = 50, time_limit: float | None = None,
               max_block: int = 16) -> tuple[np.ndarray, dict, float]:
    """The core's DCDM iteration (rust/core/src/linalg/dcdm.rs) with its decisions taken on the device: every
    iteration computes both the learned and the residual direction (one extra SpMV, small next to the
    network) and keeps one with ``torch.where``, so nothing is read back inside a block of iterations; the
    residuals, fallback count and error flags come back at the block's end. Blocks are sized as in
    :func:`torch_cg`, so the iteration stops where the core's does."""
    import torch

    t0 = time.perf_counter()
    A, matvec_bytes = _matrix(op, dev)
    mv = lambda v: A @ v  # noqa: E731
    bt = torch.from_numpy(b).to(dev)
    bnorm = float(torch.linalg.vector_norm(bt))
    n = op.n
    if bnorm == 0.0:
        return np.zeros(n), _raw("dcdm-torch", 0, [0.0], 0, "converged", 0, 0), time.perf_counter() - t0
    x = torch.from_numpy(x0).to(dev).clone() if x0 is not None else torch.zeros(n, dtype=torch.float64, device=dev)
    matvecs = 0
    if x0 is not None:
        r = bt - mv(x)
        matvecs += 1
    else:
        r = bt.clone()
    rnorm = torch.linalg.vector_norm(r)
    r_true, it, false_conv, reason, block = True, 0, 0, "maxiter", 1
    hist: deque = deque(maxlen=max(k, 1))
    res = [float(rnorm) / bnorm]
    norms = [rnorm / bnorm]  # device scalars: the stall guard looks back STALL_WINDOW of them
    until = torch.zeros((), dtype=torch.long, device=dev)  # residual (CG-like) steps until this iteration
    fallbacks = torch.zeros((), dtype=torch.long, device=dev)
    zero = torch.zeros((), dtype=torch.float64, device=dev)

    def conjugate(q: Any) -> tuple[Any, Any, Any]:
        aq = mv(q)
        for p, ap, pap in (hist if k > 0 else ()):
            c = torch.dot(aq, p) / pap
            q = q - c * p
            aq = aq - c * ap
        return q, aq, torch.dot(q, aq)

    while True:
        if res[-1] <= tol:
            if not r_true:
                matvecs += 1
                r = bt - mv(x)
                rnorm = torch.linalg.vector_norm(r)
                r_true = True
                res[-1] = float(rnorm) / bnorm
                norms[-1] = rnorm / bnorm
                if res[-1] > tol:
                    false_conv += 1
                    continue
            reason = "converged"
            break
        if it >= maxiter:
            break
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            reason = "time_limit"
            break
        steps = min(block, maxiter - it)
        no = torch.zeros((), dtype=torch.bool, device=dev)
        block_norms, bad_q, bad_a, bad_pap = [], no, no, zero  # bad_pap: r^T A r where the matrix first failed
        for _ in range(steps):
            rhat = r / rnorm
            if it >= STALL_WINDOW:
                stall = (it >= until + STALL_WINDOW) & (norms[-1] > STALL_FACTOR * norms[-1 - STALL_WINDOW])
                until = torch.where(stall, torch.full_like(until, it + STALL_WINDOW), until)
            allowed = it >= until
            q = oracle(rhat).to(device=dev, dtype=torch.float64).reshape(-1)
            if q.shape[0] != n:
                raise ShapeError(f"the direction oracle returned {q.shape[0]} values, expected {n}")
            finite = torch.isfinite(q).all()
            bad_q = bad_q | (allowed & ~finite)
            ql, aql, papl = conjugate(torch.where(finite, q, zero))
            qrl = torch.dot(ql, r)
            learned = allowed & (papl > 0) & (qrl.abs() > 1e-12 * torch.linalg.vector_norm(ql) * rnorm)
            qf, aqf, papf = conjugate(rhat)
            qrf = torch.dot(qf, r)
            matvecs += 2
            fallbacks = fallbacks + (~learned).long()
            bad = ~learned & ~(papf > 0)
            bad_pap = torch.where(bad & ~bad_a, papf, bad_pap)
            bad_a = bad_a | bad
            q, aq = torch.where(learned, ql, qf), torch.where(learned, aql, aqf)
            pap, qr = torch.where(learned, papl, papf), torch.where(learned, qrl, qrf)
            alpha = qr / pap
            x.add_(alpha * q)
            r = r - alpha * aq
            it += 1
            r_true = False
            if recompute_every > 0 and it % recompute_every == 0:
                matvecs += 1
                r = bt - mv(x)
                r_true = True
            rnorm = torch.linalg.vector_norm(r)
            if k > 0:
                hist.append((q, aq, pap))
            norms.append(rnorm / bnorm)
            block_norms.append(norms[-1])
            del norms[:-(STALL_WINDOW + 1)]
        flags = torch.stack([bad_q, bad_a]).cpu().numpy()  # the block's one host round trip, with the residuals
        block_res = torch.stack(block_norms).cpu().numpy()
        if flags[0]:
            raise SolverError(f"the direction oracle returned a non-finite value by iteration {it}")
        if flags[1]:
            raise InvalidInputError(f"the matrix is not positive definite: r^T A r = {float(bad_pap):.3e} "
                                    f"by iteration {it}")
        if not np.all(np.isfinite(block_res)):
            raise SolverError(f"DCDM residual became non-finite by iteration {it}")
        res.extend(block_res.tolist())
        block = _next_block(res, tol, max_block)
    secs = time.perf_counter() - t0
    raw = _raw("dcdm-torch", it, res, matvecs, reason, false_conv, int(fallbacks))
    raw["bytes_per_matvec"] = matvec_bytes
    return x.cpu().numpy(), raw, secs


def torch_cg(op: Operator, b: np.ndarray, x0: np.ndarray | None, tol: float, maxiter: int, precond: str | None,
             dev: Any, recompute_every: int = 50, time_limit: float | None = None, max_block: int = 32
             ) -> tuple[np.ndarray, dict, float]:
    """(Jacobi-preconditioned) CG on the device with no host round trip inside a block of iterations:
    alpha and beta stay device scalars, and the block's residual norms (and p.Ap, for the definiteness
    check) are read back at its end. Blocks are 1 iteration at first and then as long as the observed
    convergence rate predicts is still needed to reach tol (at most ``max_block``), so CG stops on the
    same iteration as the Rust core's."""
    import torch

    if precond == "ic0":
        raise InvalidInputError("precond='ic0' (sequential triangular solves) runs on the CPU only; use 'jacobi'")
    t0 = time.perf_counter()
    A, matvec_bytes = _matrix(op, dev)
    inv = None
    if precond == "jacobi":
        d = op.csr.diagonal()
        if not np.all(d > 0):
            raise InvalidInputError("Jacobi preconditioner: the diagonal must be positive")
        inv = torch.from_numpy(1.0 / d).to(dev)
    method = "cg-torch" if inv is None else "pcg-jacobi-torch"
    bt = torch.from_numpy(b).to(dev)
    bnorm = float(torch.linalg.vector_norm(bt))
    n = op.n
    if bnorm == 0.0:
        raw = _raw(method, 0, [0.0], 0, "converged", 0, 0)
        return np.zeros(n), dict(raw, bytes_per_matvec=matvec_bytes), time.perf_counter() - t0
    x = torch.from_numpy(x0).to(dev).clone() if x0 is not None else torch.zeros(n, dtype=torch.float64, device=dev)
    matvecs = 0
    if x0 is not None:
        r = bt - A @ x
        matvecs += 1
    else:
        r = bt.clone()
    precondition = (lambda v: v) if inv is None else (lambda v: inv * v)  # noqa: E731
    z = precondition(r)
    p = z.clone()
    rz = torch.dot(r, z)
    res = [float(torch.linalg.vector_norm(r)) / bnorm]
    it, false_conv, reason, block = 0, 0, "maxiter", 1
    while True:
        if res[-1] <= tol:  # confirm on the true residual
            r = bt - A @ x
            matvecs += 1
            true = float(torch.linalg.vector_norm(r)) / bnorm
            if true <= tol:
                res[-1] = true
                reason = "converged"
                break
            false_conv += 1
            res[-1] = true
            z = precondition(r)
            p, rz, block = z.clone(), torch.dot(r, z), 1  # restart from the true residual
        if it >= maxiter:
            break
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            reason = "time_limit"
            break
        steps = min(block, maxiter - it)
        norms, curv = [], []
        for _ in range(steps):
            ap = A @ p
            pap = torch.dot(p, ap)
            alpha = rz / pap
            x.add_(alpha * p)
            it += 1
            matvecs += 1
            if recompute_every > 0 and it % recompute_every == 0:
                r = bt - A @ x
                matvecs += 1
            else:
                r.sub_(alpha * ap)
            z = precondition(r)
            rz_next = torch.dot(r, z)
            p.mul_(rz_next / rz).add_(z)
            rz = rz_next
            norms.append(torch.linalg.vector_norm(r) if inv is not None else rz.sqrt())
            curv.append(pap)
        block_res = (torch.stack(norms) / bnorm).cpu().numpy()  # the block's one host round trip
        block_curv = torch.stack(curv).cpu().numpy()
        bad = np.flatnonzero(~(block_curv > 0))
        if bad.size:
            k = it - steps + int(bad[0])
            raise InvalidInputError(f"the matrix is not positive definite: p^T A p = {block_curv[bad[0]]:.3e} "
                                    f"at iteration {k}")
        if not np.all(np.isfinite(block_res)):
            raise SolverError(f"CG residual became non-finite by iteration {it}")
        # a block that passes tol before its end overshoots by a few iterations (rare: blocks aim short);
        # if the residual rose back above tol by then, the iteration simply goes on
        res.extend(block_res.tolist())
        block = _next_block(res, tol, max_block)
    secs = time.perf_counter() - t0
    raw = _raw(method, it, res, matvecs, reason, false_conv, 0)
    raw["bytes_per_matvec"] = matvec_bytes
    return x.cpu().numpy(), raw, secs


def _next_block(res: list, tol: float, max_block: int) -> int:
    """Iterations to run before looking again: what the rate over the last few predicts is left to tol."""
    w = min(len(res) - 1, 8)
    if w < 2 or res[-1] <= 0:
        return 1
    rate = (res[-1] / res[-1 - w]) ** (1.0 / w) if res[-1 - w] > 0 else 1.0
    if not 0 < rate < 1:
        return 1
    left = np.log(tol / res[-1]) / np.log(rate)
    return int(min(max_block, max(1, np.floor(left * 0.5))))  # CG speeds up as it goes: aim at half
