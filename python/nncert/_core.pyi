"""Type stubs for the Rust extension ``nncert._core`` (hand-written; keep in step with rust/py/src)."""

from typing import Sequence

import numpy as np
import numpy.typing as npt

__version__: str

def _raise_core_error(kind: str) -> None:
    """Test hook: raises the exception a core error maps to ("shape", "invalid", "unsupported", "solver",
    "time"), or panics inside the core (any other kind), which surfaces as nncert.Error."""

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


# bound propagation and branch and bound (rust/py/src/bounds.rs)
def output_bounds(net: Network, lo: npt.NDArray[np.float64], hi: npt.NDArray[np.float64],
                  a_y: npt.NDArray[np.float64], a_x: npt.NDArray[np.float64], method: str = "crown",
                  slopes_: str = "adaptive") -> dict:
    """Lower bounds of the rows of a_y f(x) + a_x x over the box; keys lower, out_lo, out_hi, pre."""
def branch_and_bound(net: Network, problems: list[tuple], mode: str = "input", time_limit: float = 60.0,
                     max_nodes: int | None = None, margin: float = 1e-8, method: str = "crown",
                     slopes_: str = "adaptive", batch: int = 0, min_width: float = 1e-7,
                     max_leaves: int = 10000) -> dict:
    """Best-first parallel BaB over (lo, hi, a_y, a_x, c) problems; keys outcome, x, problem, leaves, stats."""
