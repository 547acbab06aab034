"""Falsification on a torch device: random points in each box, then projected sign-gradient descent on
the violation ``max_rows(A_y f(x) + A_x x - c)`` from the most promising ones, all restarts as one batch.
The same search as :func:`nncert.verify.attack.falsify`; every point it reports has passed
:func:`nncert.verify.attack.replay` (the network in float64 and float32 on the CPU)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..verify.attack import replay
from .network_ops import torch_module


def _try(net: Any, prop: Any, X: Any, worst: Any, k: int) -> np.ndarray | None:
    import torch

    for idx in torch.argsort(worst)[:k].tolist():
        if float(worst[idx]) <= 0:
            x = X[idx].detach().cpu().numpy().astype(np.float64)
            if replay(net, prop, x) is not None:
                return x
    return None


def falsify(net: Any, prop: Any, deadline: float, device: Any, seed: int = 0, n_random: int = 1024,
            restarts: int = 16, steps: int = 40, dtype: Any = None) -> np.ndarray | None:
    """A replayed counterexample, or None when the budget (``deadline``, time.monotonic) runs out first."""
    import torch

    dev = device.torch()
    dtype = dtype or torch.float64
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    module = torch_module(net, device, dtype)
    t = lambda v: torch.as_tensor(np.array(v, dtype=np.float64), dtype=dtype, device=dev)  # noqa: E731
    for i, j in prop.pairs:
        if time.monotonic() > deadline:
            return None
        lo, hi = (t(v) for v in prop.regions[i])
        a_y, a_x, c = (t(v) for v in prop.unsafe[j])
        width = hi - lo

        def violation(X: Any) -> tuple[Any, Any]:
            return (module(X) @ a_y.T + X @ a_x.T - c).max(1)

        with torch.no_grad():
            X = lo + width * torch.rand((n_random, prop.n_inputs), generator=gen, dtype=dtype, device=dev)
            X = torch.cat([X, (0.5 * (lo + hi))[None]])
            worst, _ = violation(X)
        x = _try(net, prop, X, worst, 8)
        if x is not None:
            return x
        X = X[torch.argsort(worst)[:restarts]]
        for s in range(steps):
            if time.monotonic() > deadline:
                return None
            X = X.detach().requires_grad_(True)
            worst, _ = violation(X)
            x = _try(net, prop, X, worst.detach(), 4)
            if x is not None:
                return x
            (g,) = torch.autograd.grad(worst.sum(), X)
            step = 0.1 * (1.0 - s / steps) + 1e-3
            X = torch.minimum(torch.maximum(X.detach() - step * width * torch.sign(g), lo), hi)
        with torch.no_grad():
            worst, _ = violation(X)
        x = _try(net, prop, X, worst, 4)
        if x is not None:
            return x
    return None
