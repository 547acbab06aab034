"""Type stubs for the Rust extension ``nncert._core`` (hand-written; keep in step with rust/py/src)."""

from typing import Sequence

import numpy as np
import numpy.typing as npt

__version__: str

class Network:
    """The core network. Built from layer specs produced by ``nncert.layers.Layer.spec()``."""

    def __init__(self, specs: Sequence[tuple], input_dim: int | None = None) -> None: ...
    @property
    def input_dim(self) -> int: ...
    @property
    def output_dim(self) -> int: ...
    @property
    def num_params(self) -> int: ...
    def forward_f64(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Batched forward pass of a 2-D float64 array (any memory order, read in place; GIL released)."""
    def forward_f32(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Batched forward pass of a 2-D float32 array, computed in float32."""
    def jacobian(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The Jacobian (output_dim, input_dim) at one point."""
    def vjp_batch(self, xs: npt.NDArray[np.float64], cs: npt.NDArray[np.float64]
                  ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(f(x_i), grad of c_i^T f at x_i) for each row; cs has 1 row or one per row of xs."""

# --- convex training (rust/py/src/convex.rs) ---
def convex_admm(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], patterns: npt.NDArray[np.float64],
                beta: float, loss: str = "squared", rho: float = 1.0, max_iter: int = 10000,
                eps_abs: float = 1e-7, eps_rel: float = 1e-6, u_solver: str = "auto", pcg_tol: float = 1e-10,
                memory_limit: float = 4294967296.0, time_limit: float = ..., callback: object | None = None,
                callback_every: int = 50, adapt_every: int = 25, relaxation: float = 1.6,
                z_weight: float = 1.0) -> list[dict]:
    """ADMM for each column of y (n, C), sharing one u-step factorisation. Each dict has v, w (d, P),
    objective, iterations, status, u_solver, factor_seconds, solve_seconds and history (k, 7): iter,
    objective, primal_residual, dual_residual, violation, seconds, inner_iterations."""
def convex_ustep_memory(kind: str, n: int, d: int, p: int) -> float:
    """Bytes the 'dense' | 'woodbury' | 'pcg' u-step would allocate."""
