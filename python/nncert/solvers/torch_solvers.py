"""CG and DCDM as torch ops, for data on a CUDA device: the matrix (torch sparse CSR), the vectors and
the model stay on the device, with no host round trip per iteration except the scalar stopping test.
Same algorithm as the Rust core (rust/core/src/linalg/{cg,dcdm}.rs): true-residual replacement every
``recompute_every`` iterations and confirmation of every claimed convergence."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError, SolverError
from ._operator import Operator

# the stall guard of rust/core/src/linalg/dcdm.rs
STALL_WINDOW, STALL_FACTOR = 10, 0.9


def _matrix(op: Operator, dev: Any) -> Any:
    import torch

    A = op.csr
    return torch.sparse_csr_tensor(torch.from_numpy(A.indptr.astype(np.int64)),
                                   torch.from_numpy(A.indices.astype(np.int64)),
                                   torch.from_numpy(A.data), size=A.shape, dtype=torch.float64).to(dev)


def _raw(method: str, it: int, res: list, matvecs: int, reason: str, false_conv: int, fallbacks: int) -> dict:
    return {"iterations": it, "residuals": np.array(res), "reason": reason, "method": method, "matvecs": matvecs,
            "false_convergences": false_conv, "fallbacks": fallbacks, "seconds": 0.0}


def torch_dcdm(op: Operator, b: np.ndarray, x0: np.ndarray | None, oracle: Callable, k: int, tol: float,
               maxiter: int, dev: Any, recompute_every: int = 50, time_limit: float | None = None
               ) -> tuple[np.ndarray, dict, float]:
    import torch

    t0 = time.perf_counter()
    A = _matrix(op, dev)
    mv = lambda v: (A @ v.unsqueeze(1)).squeeze(1)  # noqa: E731
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
    rnorm = float(torch.linalg.vector_norm(r))
    r_true, it, false_conv, fallbacks, reason = True, 0, 0, 0, "maxiter"
    residual_until = 0
    hist: deque = deque(maxlen=max(k, 1))
    res = [rnorm / bnorm]

    def conjugate(q: Any) -> tuple[Any, Any, float]:
        aq = mv(q)
        for p, ap, pap in (hist if k > 0 else ()):
            c = torch.dot(aq, p) / pap
            q = q - c * p
            aq = aq - c * ap
        return q, aq, float(torch.dot(q, aq))

    while True:
        if rnorm / bnorm <= tol:
            if not r_true:
                matvecs += 1
                r = bt - mv(x)
                rnorm = float(torch.linalg.vector_norm(r))
                r_true = True
                if rnorm / bnorm > tol:
                    false_conv += 1
                    continue
            reason = "converged"
            break
        if it >= maxiter:
            break
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            reason = "time_limit"
            break
        rhat = r / rnorm
        if it >= STALL_WINDOW and it >= residual_until + STALL_WINDOW and res[it] > STALL_FACTOR * res[it - STALL_WINDOW]:
            residual_until = it + STALL_WINDOW
        learned = None
        if it >= residual_until:
            q = oracle(rhat).to(device=dev, dtype=torch.float64).reshape(-1)
            if q.shape[0] != n:
                raise InvalidInputError(f"the direction oracle returned {q.shape[0]} values, expected {n}")
            if not bool(torch.isfinite(q).all()):
                raise SolverError(f"the direction oracle returned a non-finite value at iteration {it}")
            q, aq, pap = conjugate(q)
            matvecs += 1
            qr = float(torch.dot(q, r))
            if pap > 0 and abs(qr) > 1e-12 * float(torch.linalg.vector_norm(q)) * rnorm:
                learned = (q, aq, pap, qr)
        if learned is None:
            fallbacks += 1
            q, aq, pap = conjugate(rhat.clone())
            matvecs += 1
            qr = float(torch.dot(q, r))
            if not pap > 0:
                raise InvalidInputError(f"the matrix is not positive definite: r^T A r = {pap:.3e} at iteration {it}")
        else:
            q, aq, pap, qr = learned
        alpha = qr / pap
        x += alpha * q
        r -= alpha * aq
        it += 1
        r_true = False
        if recompute_every > 0 and it % recompute_every == 0:
            matvecs += 1
            r = bt - mv(x)
            r_true = True
        rnorm = float(torch.linalg.vector_norm(r))
        if not np.isfinite(rnorm):
            raise SolverError(f"DCDM residual became non-finite at iteration {it}")
        if k > 0:
            hist.append((q, aq, pap))
        res.append(rnorm / bnorm)
    if not r_true:
        matvecs += 1
    secs = time.perf_counter() - t0
    return x.cpu().numpy(), _raw("dcdm-torch", it, res, matvecs, reason, false_conv, fallbacks), secs


def torch_cg(op: Operator, b: np.ndarray, x0: np.ndarray | None, tol: float, maxiter: int, precond: str | None,
             dev: Any, recompute_every: int = 50, time_limit: float | None = None
             ) -> tuple[np.ndarray, dict, float]:
    """CG on the device. With q = M^{-1} r A-orthogonalised against the previous direction this is
    (P)CG in exact arithmetic, so it reuses the conjugate-direction loop with k = 1."""
    import torch

    if precond == "ic0":
        raise InvalidInputError("precond='ic0' (sequential triangular solves) runs on the CPU only; use 'jacobi'")
    if precond == "jacobi":
        d = op.csr.diagonal()
        if not np.all(d > 0):
            raise InvalidInputError("Jacobi preconditioner: the diagonal must be positive")
        inv = torch.from_numpy(1.0 / d).to(dev)
        oracle = lambda r: inv * r  # noqa: E731
    else:
        oracle = lambda r: r  # noqa: E731
    x, raw, secs = torch_dcdm(op, b, x0, oracle, 1, tol, maxiter, dev, recompute_every, time_limit)
    raw["method"] = "cg-torch" if precond in (None, "none") else f"pcg-{precond}-torch"
    return x, raw, secs
