"""``DCDM``: the deep conjugate-direction method with a learned (or user-given) direction oracle."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from .. import _core
from ..devices import resolve_device
from ..errors import InvalidInputError, ShapeError
from ._operator import prepare, prepare_rhs
from .info import SolveInfo
from .krylov import as_output, finish, run_core
from .problems import Grid, grid_of

PRETRAINED = os.path.join(os.path.dirname(__file__), "pretrained", "dcdm3d_poisson.pt")


def load_model(path: str = PRETRAINED) -> Any:
    """A :class:`~nncert.solvers.model.DCDMNet` from a file written by ``nncert dcdm-train``."""
    import torch

    from .model import DCDMNet

    if not os.path.exists(path):
        raise InvalidInputError(f"model file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = DCDMNet(**state["config"])
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model


def _is_module(m: Any) -> bool:
    try:
        import torch
        return isinstance(m, torch.nn.Module)
    except ImportError:  # pragma: no cover
        return False


def _infer_grid(A: Any, n: int, dim: int) -> Grid:
    g = grid_of(A)
    if g is not None:
        return g
    side = round(n ** (1.0 / dim))
    if side ** dim == n:
        return Grid((side,) * dim, np.ones((side,) * dim, dtype=bool))
    raise InvalidInputError(
        f"DCDM with a network needs the grid of the unknowns: pass grid=nncert.solvers.Grid(shape, fluid_mask) "
        f"(matrices from poisson3d/poisson2d carry theirs); A is {n}x{n}, not a full {dim}-D cube")


class DCDM:
    """Deep conjugate-direction solver (Kaneda et al., ICML 2023).

    model: "pretrained" (the shipped 3D Poisson network), a path to a model file, a torch ``nn.Module``
    mapping (residual grid, fluid mask) to a direction (see :class:`~nncert.solvers.model.DCDMNet`), or a
    plain callable ``f(r) -> q`` on numpy vectors over the unknowns.
    k: the number of previous directions each new one is A-orthogonalised against.
    """

    def __init__(self, model: Any = "pretrained", k: int = 2, device: Any = None, dtype: str = "float32") -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InvalidInputError(f"k must be a nonnegative integer, got {k!r}")
        if dtype not in ("float32", "float64"):
            raise InvalidInputError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.k, self.device, self.dtype = int(k), device, dtype
        if isinstance(model, str):
            model = load_model(PRETRAINED if model == "pretrained" else model)
        if not (_is_module(model) or callable(model)):
            raise InvalidInputError(f"model must be 'pretrained', a path, an nn.Module or a callable, got {model!r}")
        self.model = model

    def _oracle(self, A: Any, n: int, grid: Grid | None, torch_device: Any = None) -> Callable:
        if not _is_module(self.model):
            return self.model
        import torch

        dim = getattr(self.model, "dim", 3)
        g = grid if grid is not None else _infer_grid(A, n, dim)
        if len(g.shape) != dim:
            raise ShapeError(f"the model is {dim}-D but the grid has shape {g.shape}")
        if int(g.fluid.sum()) != n:
            raise ShapeError(f"the grid has {int(g.fluid.sum())} fluid cells but A has {n} unknowns")
        dt = torch.float32 if self.dtype == "float32" else torch.float64
        dev = torch_device or torch.device("cpu")
        model = self.model.to(device=dev, dtype=dt).eval()
        index = torch.from_numpy(g.index).to(dev)
        mask = torch.from_numpy(g.fluid).to(device=dev, dtype=dt)[None, None]
        size, scale = int(np.prod(g.shape)), float(np.sqrt(n))

        def direction_t(r: Any) -> Any:
            full = torch.zeros(size, dtype=dt, device=dev)
            full[index] = r.to(dt) * scale
            with torch.inference_mode():
                q = model(full.view(1, 1, *g.shape), mask).view(-1)[index]
            return q

        if torch_device is not None:
            return direction_t
        return lambda r: direction_t(torch.from_numpy(r)).double().numpy()

    def solve(self, A: Any, b: Any, tol: float = 1e-6, maxiter: int | None = None, x0: Any = None,
              grid: Grid | None = None, time_limit: float | None = None, progress: Any = True,
              recompute_every: int = 50, backend: str | None = None) -> tuple[Any, SolveInfo]:
        """Solves the SPD system A x = b. Stops on the TRUE relative residual <= tol (re-checked after
        the solve). maxiter defaults to min(10 n, 10000). backend: None (Rust core on the CPU, torch on
        CUDA), "rust", or "torch" (the whole iteration in torch ops on ``device``)."""
        dev = resolve_device(self.device, A, b)
        if backend not in (None, "rust", "torch"):
            raise InvalidInputError(f"backend must be None, 'rust' or 'torch', got {backend!r}")
        if backend == "rust" and dev.type == "cuda":
            raise InvalidInputError("the Rust core runs on the CPU; use backend='torch' (or None) for CUDA")
        use_torch = backend == "torch" or (backend is None and dev.type == "cuda")
        op = prepare(A)
        if op.csr is None:
            raise InvalidInputError("DCDM needs an explicit matrix (scipy sparse, dense, or torch), not a LinearOperator")
        bb, xx, inner_tol, projected, b_orig = prepare_rhs(op, b, x0, tol)
        maxiter = min(10 * op.n, 10000) if maxiter is None else int(maxiter)
        if maxiter < 0:
            raise InvalidInputError(f"maxiter must be >= 0, got {maxiter}")
        if use_torch:
            from .torch_solvers import torch_dcdm
            tdev = dev.torch()
            oracle = self._oracle(A, op.n, grid, torch_device=tdev)
            if not _is_module(self.model):
                oracle = _wrap_numpy_oracle(self.model, tdev)
            x, raw, secs = torch_dcdm(op, bb, xx, oracle, self.k, inner_tol, maxiter, tdev, recompute_every,
                                      time_limit)
            info = finish(op, b_orig, x, raw, tol, projected, device=str(dev), seconds=secs)
            return as_output(x, b), info
        oracle = self._oracle(A, op.n, grid)
        return run_core(lambda cb: _core.csr_dcdm(*op.core_args(), bb, oracle, self.k, xx, inner_tol, maxiter,
                                                  recompute_every, time_limit, cb),
                        op, b, b_orig, tol, projected, progress, "dcdm")


def _wrap_numpy_oracle(f: Callable, dev: Any) -> Callable:
    import torch

    def g(r: Any) -> Any:
        q = np.asarray(f(r.detach().cpu().double().numpy()), dtype=np.float64)
        return torch.from_numpy(q).to(dev)
    return g
