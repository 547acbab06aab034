"""``cg``: conjugate gradients (plain, Jacobi, IC(0)) in the Rust core, with true-residual stopping."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .. import _core
from .._arrays import is_torch_tensor
from ..devices import resolve_device
from ..errors import InvalidInputError
from ._operator import Operator, prepare, prepare_rhs
from .info import SolveInfo

PRECONDS = (None, "none", "jacobi", "ic0")


def _progress(progress: Any, label: str, tol: float) -> tuple[Callable | None, Any]:
    """A core progress callback: a tqdm bar (shown only once a solve has run for a second), a user
    callable ``f(iteration, residual) -> bool | None``, or nothing."""
    if progress is False:
        return None, None
    if callable(progress):
        return progress, None
    from tqdm.auto import tqdm

    bar = tqdm(desc=label, unit="it", delay=1.0, leave=False)

    def cb(it: int, res: float) -> bool:
        bar.update(it - bar.n)
        bar.set_postfix_str(f"residual {res:.2e} (tol {tol:g})", refresh=False)
        return True
    return cb, bar


def finish(op: Operator, b: np.ndarray, x: np.ndarray, raw: dict, tol: float, projected: bool,
           device: str = "cpu", seconds: float | None = None) -> SolveInfo:
    """Re-checks the solution independently of the solver (one product with the user's own matrix)."""
    if op.singular and projected:
        x -= x.mean()
    bnorm = float(np.linalg.norm(b))
    true_res = float(np.linalg.norm(b - op.matvec(x)) / bnorm) if bnorm > 0 else float(np.linalg.norm(op.matvec(x)))
    converged = bool(true_res <= tol)
    reason = raw["reason"]
    if reason == "converged" and not converged:
        reason = "unconfirmed"
    return SolveInfo(
        iterations=int(raw["iterations"]), residuals=np.asarray(raw["residuals"]), converged=converged,
        seconds=float(raw["seconds"] if seconds is None else seconds), reason=reason, method=raw["method"], tol=tol,
        true_residual=true_res, matvecs=int(raw["matvecs"]), false_convergences=int(raw["false_convergences"]),
        fallbacks=int(raw["fallbacks"]), null_space_projected=projected, device=device,
        bytes_per_matvec=int(raw.get("bytes_per_matvec", 0)),
        extra={"ic0_shift": float(raw["ic0_shift"])} if "ic0_shift" in raw else {})


def as_output(x: np.ndarray, like: Any) -> Any:
    """x as a torch tensor when the right-hand side was one, else numpy."""
    if is_torch_tensor(like):
        import torch
        return torch.from_numpy(x).to(like.device)
    return x


def cg(A: Any, b: Any, tol: float = 1e-6, maxiter: int | None = None, precond: str | None = None, x0: Any = None,
       device: Any = None, time_limit: float | None = None, progress: Any = True,
       recompute_every: int = 50) -> tuple[Any, SolveInfo]:
    """Solves the SPD system A x = b by conjugate gradients in the Rust core.

    A: scipy sparse matrix, dense numpy array / torch tensor, or ``scipy.sparse.linalg.LinearOperator``.
    precond: None, "jacobi" or "ic0" (incomplete Cholesky, no fill). Stops when the TRUE relative residual
    ||b - A x|| / ||b|| <= tol (the recursive residual is replaced by the true one every
    ``recompute_every`` iterations and whenever it claims convergence). maxiter defaults to 10 n.
    Returns ``(x, info)``; see :class:`SolveInfo`. A singular pure-Neumann A (constants in the null space)
    is solved in the complement of the null space when b is consistent, and rejected otherwise.
    """
    dev = resolve_device(device, A, b)
    if precond not in PRECONDS:
        raise InvalidInputError(f"precond must be None, 'jacobi' or 'ic0', got {precond!r}")
    op = prepare(A)
    bb, xx, inner_tol, projected, b_orig = prepare_rhs(op, b, x0, tol)
    maxiter = 10 * op.n if maxiter is None else int(maxiter)
    if maxiter < 0:
        raise InvalidInputError(f"maxiter must be >= 0, got {maxiter}")
    if dev.type == "cuda":
        from .torch_solvers import torch_cg
        x, raw, secs = torch_cg(op, bb, xx, inner_tol, maxiter, precond, dev.torch(), recompute_every,
                                 time_limit)
        return as_output(x, b), finish(op, b_orig, x, raw, tol, projected, device=str(dev), seconds=secs)
    if op.csr is None:
        if precond not in (None, "none"):
            raise InvalidInputError(f"precond={precond!r} needs an explicit matrix, not a LinearOperator")
        solve = lambda cb: _core.op_cg(op.n, op.matvec, bb, xx, inner_tol, maxiter, recompute_every,  # noqa: E731
                                       time_limit, cb)
    else:
        solve = lambda cb: _core.csr_cg(*op.core_args(), bb, xx, inner_tol, maxiter,  # noqa: E731
                                        precond or "none", recompute_every, time_limit, cb)
    return run_core(solve, op, b, b_orig, tol, projected, progress, f"cg ({precond or 'none'})")


def run_core(solve: Callable, op: Operator, b: Any, b_orig: np.ndarray, tol: float, projected: bool,
             progress: Any, label: str) -> tuple[Any, SolveInfo]:
    """Runs ``solve(callback) -> (x, raw)`` in the core with its progress bar, then re-checks the solution
    against the user's matrix (``finish``) and returns x as the caller's type."""
    cb, bar = _progress(progress, label, tol)
    t0 = time.perf_counter()
    try:
        x, raw = solve(cb)
    finally:
        if bar is not None:
            bar.close()
    info = finish(op, b_orig, x, raw, tol, projected)
    info.extra["wall_seconds"] = time.perf_counter() - t0
    return as_output(x, b), info
