"""DLV-style region search (Huang, Kwiatkowska, Wang, Wu, CAV 2017): an exhaustive search of a
*discretised* neighbourhood of an input, with sub-regions pruned by bound propagation.

Guarantee, stated exactly: the grid is every point ``x + step * k`` with ``k`` an integer vector
that is zero outside ``dims`` and has ``|k_d * step| <= eps`` (and, when given, the point lies inside
[lo, hi] coordinate-wise). The search is exhaustive for that finite grid: "robust" means no grid point
is misclassified. It says nothing about the continuous points between grid points; use
``nncert.verify`` with ``Property.robustness`` for the continuous box.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .._arrays import as_float_array, check_finite
from ..devices import resolve_device
from ..errors import InvalidInputError

#: Sub-grids with at most this many points are evaluated directly instead of bounded.
DIRECT_POINTS = 256


@dataclass
class RegionResult:
    """``status``: "robust" (no misclassified grid point), "misclassified" (``points`` holds them,
    each replayed through the network), or "timeout". ``n_grid`` points in the grid, ``n_evaluated``
    evaluated one by one, ``n_pruned`` covered by bound proofs."""

    status: str
    points: np.ndarray
    label: int
    n_grid: int
    n_evaluated: int
    n_pruned: int
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def exhaustive(self) -> bool:
        return self.status != "timeout"


def verify_region(net, x: Any, eps: float, step: float, dims: Sequence[int] | None = None, *, label: int | None = None,
                  lo: float | None = None, hi: float | None = None, find: str = "first", timeout: float = 60.0,
                  device: Any = None) -> RegionResult:
    """Searches every grid point ``x + step * k`` (see the module docstring) for one whose arg-max differs
    from ``label`` (default: the arg-max at x). ``find="first"`` stops at the first misclassified point,
    ``"all"`` returns all of them. Regions of the grid whose bounds prove the label are skipped."""
    from .. import _core

    from ..layers import reject_implicit

    t0 = time.monotonic()
    reject_implicit(getattr(net, "layers", ()), "verify_region")
    dev = resolve_device(device, x)
    if dev.type != "cpu":
        raise InvalidInputError(f"verify_region runs on the CPU; device {dev} is not supported yet")
    x = np.array(as_float_array(x, "x", ndim=1), dtype=np.float64)
    check_finite(x, "x")
    if x.shape[0] != net.input_dim:
        from ..errors import ShapeError
        raise ShapeError(f"x has {x.shape[0]} features but the network expects {net.input_dim}")
    eps, step = float(eps), float(step)
    if not (np.isfinite(eps) and eps >= 0):
        raise InvalidInputError(f"verify_region: eps must be finite and >= 0, got {eps}")
    if not (np.isfinite(step) and step > 0):
        raise InvalidInputError(f"verify_region: step must be finite and > 0, got {step}")
    if find not in ("first", "all"):
        raise InvalidInputError(f"verify_region: find must be 'first' or 'all', got {find!r}")
    dims = list(range(net.input_dim)) if dims is None else [int(d) for d in dims]
    if any(not 0 <= d < net.input_dim for d in dims) or len(set(dims)) != len(dims):
        raise InvalidInputError(f"verify_region: dims must be distinct indices in [0, {net.input_dim}), got {dims}")
    y0 = net(x)
    label = int(np.argmax(y0)) if label is None else int(label)
    m = net.output_dim
    if m < 2:
        raise InvalidInputError("verify_region: the network needs at least two outputs (classes)")
    if not 0 <= label < m:
        raise InvalidInputError(f"verify_region: label {label} out of range for {m} outputs")
    kmax = int(np.floor(eps / step + 1e-9))
    # integer range per chosen dim, restricted to [lo, hi]
    klo = np.full(len(dims), -kmax)
    khi = np.full(len(dims), kmax)
    for t, d in enumerate(dims):
        while klo[t] <= khi[t] and lo is not None and x[d] + klo[t] * step < lo:
            klo[t] += 1
        while khi[t] >= klo[t] and hi is not None and x[d] + khi[t] * step > hi:
            khi[t] -= 1
    n_grid = int(np.prod(khi - klo + 1)) if np.all(khi >= klo) else 0
    a_y = np.zeros((m - 1, m))
    others = [j for j in range(m) if j != label]
    for r, j in enumerate(others):
        a_y[r, label], a_y[r, j] = 1.0, -1.0
    a_x = np.zeros((m - 1, net.input_dim))
    dims_arr = np.array(dims, dtype=int)
    found: list[np.ndarray] = []
    n_eval = n_pruned = n_boxes = 0

    def points(kl, kh):
        axes = [np.arange(a, b + 1) for a, b in zip(kl, kh)]
        K = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(dims))
        P = np.repeat(x[None, :], len(K), axis=0)
        P[:, dims_arr] = x[dims_arr] + K * step
        return P

    stack = [(klo, khi)] if n_grid > 0 else []
    status = "robust"
    while stack:
        if time.monotonic() - t0 > timeout:
            status = "timeout"
            break
        kl, kh = stack.pop()
        count = int(np.prod(kh - kl + 1))
        if count <= DIRECT_POINTS:
            P = points(kl, kh)
            Y = net(P)
            bad = np.argmax(Y, axis=1) != label
            bad |= np.any(Y[:, others] >= Y[:, [label]], axis=1)
            n_eval += count
            if np.any(bad):
                found.extend(P[bad])
                if find == "first":
                    break
            continue
        blo, bhi = x.copy(), x.copy()
        blo[dims_arr] = x[dims_arr] + kl * step
        bhi[dims_arr] = x[dims_arr] + kh * step
        r = _core.output_bounds(net._core, blo, bhi, a_y, a_x)
        n_boxes += 1
        if np.all(r["lower"] > 1e-9):
            n_pruned += count
            continue
        t = int(np.argmax(kh - kl))
        mid = (kl[t] + kh[t]) // 2
        kh1, kl2 = kh.copy(), kl.copy()
        kh1[t], kl2[t] = mid, mid + 1
        stack.append((kl2, kh))
        stack.append((kl, kh1))
    pts = np.array(found).reshape(-1, net.input_dim)
    if len(pts):
        status = "misclassified"
    return RegionResult(status, pts, label, n_grid, n_eval, n_pruned, time.monotonic() - t0,
                        {"boxes_bounded": n_boxes, "grid_steps_per_dim": (khi - klo + 1).tolist()})
