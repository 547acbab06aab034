"""Model problems: the 7-point (3D) and 5-point (2D) Poisson matrices on a grid with solid obstacles.

The unknowns are the fluid cells in C order. A neighbour outside the box is a Dirichlet wall (it adds
1 to the diagonal); a solid neighbour is a Neumann wall (it adds nothing). Fluid pockets that touch
no Dirichlet wall would make the matrix singular, so ``"random"`` obstacles fill them in and an explicit
mask containing one is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._arrays import is_torch_tensor
from ..errors import InvalidInputError, ShapeError


@dataclass(frozen=True)
class Grid:
    """Where the unknowns of a grid matrix live: ``fluid`` is a boolean mask of ``shape``; unknown i is
    the i-th fluid cell in C order."""

    shape: tuple[int, ...]
    fluid: np.ndarray

    @property
    def index(self) -> np.ndarray:
        """Flat (C-order) grid positions of the unknowns."""
        return np.flatnonzero(self.fluid.ravel())

    def scatter(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros(self.fluid.size, dtype=v.dtype)
        out[self.index] = v
        return out.reshape(self.shape)


def grid_of(A: Any) -> Grid | None:
    """The grid a matrix from :func:`poisson3d` / :func:`poisson2d` lives on (None for other matrices)."""
    return getattr(A, "nncert_grid", None)


def random_obstacles(n: int, dim: int = 3, seed: int = 0) -> np.ndarray:
    """A procedural solid mask: a few spheres (disks) and boxes, at most about a third of the domain."""
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.arange(n) + 0.5 for _ in range(dim)], indexing="ij")
    solid = np.zeros((n,) * dim, dtype=bool)
    for _ in range(int(rng.integers(2, 6))):
        if rng.random() < 0.5:
            c = rng.uniform(0.15, 0.85, dim) * n
            r = rng.uniform(0.06, 0.18) * n
            shape = sum((a - ci) ** 2 for a, ci in zip(axes, c)) <= r * r
        else:
            lo = rng.uniform(0.05, 0.75, dim) * n
            size = rng.uniform(0.08, 0.3, dim) * n
            shape = np.ones_like(solid)
            for a, l, s in zip(axes, lo, size):
                shape &= (a >= l) & (a <= l + s)
        if (solid | shape).mean() <= 0.35:
            solid |= shape
    return _fill_enclosed(solid)


def _enclosed(solid: np.ndarray) -> np.ndarray:
    """Fluid cells in components that touch no face of the box."""
    from scipy import ndimage

    labels, _ = ndimage.label(~solid)
    border = np.zeros_like(solid)
    for ax in range(solid.ndim):
        idx = [slice(None)] * solid.ndim
        idx[ax] = 0
        border[tuple(idx)] = True
        idx[ax] = -1
        border[tuple(idx)] = True
    touching = np.unique(labels[border & ~solid])
    return (labels > 0) & ~np.isin(labels, touching)


def _fill_enclosed(solid: np.ndarray) -> np.ndarray:
    return solid | _enclosed(solid)


def _mask(n: Any, obstacles: Any, seed: int, dim: int) -> np.ndarray:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInputError(f"grid size n must be a positive integer, got {n!r}")
    n = int(n)
    if obstacles is None:
        return np.zeros((n,) * dim, dtype=bool)
    if isinstance(obstacles, str):
        if obstacles == "random":
            return random_obstacles(n, dim, seed)
        if obstacles == "none":
            return np.zeros((n,) * dim, dtype=bool)
        raise InvalidInputError(f"obstacles must be None, 'random' or a boolean mask, got {obstacles!r}")
    if is_torch_tensor(obstacles):
        obstacles = obstacles.detach().cpu().numpy()
    mask = np.asarray(obstacles)
    if mask.dtype != bool:
        raise InvalidInputError(f"an obstacle mask must be boolean (True = solid), got dtype {mask.dtype}")
    if mask.shape != (n,) * dim:
        raise ShapeError(f"obstacle mask has shape {mask.shape}, expected {(n,) * dim}")
    if mask.all():
        raise InvalidInputError("the obstacle mask marks every cell solid: there are no unknowns")
    enclosed = _enclosed(mask)
    if enclosed.any():
        raise InvalidInputError(
            f"{int(enclosed.sum())} fluid cells (first at {tuple(int(i) for i in np.argwhere(enclosed)[0])}) are "
            "enclosed by solid cells and touch no Dirichlet wall, so the matrix would be singular; mark them solid")
    return mask.copy()


def _laplacian(solid: np.ndarray) -> sp.csr_matrix:
    shape = solid.shape
    fluid = ~solid
    size = fluid.size
    number = np.full(size, -1, dtype=np.int64)
    fidx = np.flatnonzero(fluid.ravel())
    number[fidx] = np.arange(fidx.size)
    diag = np.zeros(fidx.size)
    rows, cols = [], []
    strides = np.array([int(np.prod(shape[a + 1:])) for a in range(len(shape))])
    coords = np.array(np.unravel_index(fidx, shape))
    for ax in range(len(shape)):
        for step in (-1, 1):
            nb = coords[ax] + step
            inside = (nb >= 0) & (nb < shape[ax])
            nflat = fidx + step * strides[ax]
            nfluid = np.zeros(fidx.size, dtype=bool)
            nfluid[inside] = fluid.ravel()[nflat[inside]]
            diag += (~inside) | nfluid  # Dirichlet wall or fluid neighbour
            rows.append(np.flatnonzero(nfluid))
            cols.append(number[nflat[nfluid]])
    r = np.concatenate(rows + [np.arange(fidx.size)])
    c = np.concatenate(cols + [np.arange(fidx.size)])
    v = np.concatenate([-np.ones(sum(len(x) for x in rows)), diag])
    A = sp.csr_matrix((v, (r, c)), shape=(fidx.size, fidx.size))
    A.sum_duplicates()
    A.sort_indices()
    A.nncert_grid = Grid(shape, fluid)
    return A


def poisson3d(n: int, obstacles: Any = None, seed: int = 0) -> sp.csr_matrix:
    """The 7-point Laplacian on an n^3 grid (Dirichlet box walls, Neumann obstacle walls) over the fluid cells.

    ``obstacles``: None (empty box), ``"random"`` (procedural spheres and boxes drawn from ``seed``), or a
    boolean (n, n, n) mask of solid cells. Returns an SPD ``scipy.sparse.csr_matrix``; its grid (shape and
    fluid mask) is ``nncert.solvers.grid_of(A)``.
    """
    return _laplacian(_mask(n, obstacles, seed, 3))


def poisson2d(n: int, obstacles: Any = None, seed: int = 0) -> sp.csr_matrix:
    """The 5-point Laplacian on an n^2 grid; as :func:`poisson3d` with an (n, n) obstacle mask."""
    return _laplacian(_mask(n, obstacles, seed, 2))
