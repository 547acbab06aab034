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

# Lipschitz bounds (rust/py/src/lipschitz.rs)
def lipschitz_naive(net: Network, norm: str, c: npt.NDArray[np.float64] | None = None) -> float:
    """Product of layer norms (residual blocks: 1 + inner bound); norm '2' or 'inf'; c: scalar output c^T f."""
def spectral_norm(w: npt.NDArray[np.float64]) -> float:
    """Largest singular value, rounded up by a rounding-error guard."""
def lipschitz_chain(net: Network, c: npt.NDArray[np.float64] | None = None) -> dict:
    """The chain decomposition: {'stages': [{'W', 'kind', 'residual', 'scale', 'layer', 'alpha'/'beta' or
    'groups'/'E'}], 'final': rows, 'scale': product of powers of two, 'input_dim'}."""
def lipschitz_certify(net: Network, norm: str, rho: float, stages: list[dict],
                      d: npt.NDArray[np.float64] | None = None, c: npt.NDArray[np.float64] | None = None,
                      repair: bool = True) -> dict:
    """Evaluates and repairs the chain LMIs at the multipliers ({'t', 'gamma', 'X'} per stage):
    {'bound', 'certified', 'solver_bound', 'rho', 'repaired', 'message', 'lmis': [...]}."""
def lipschitz_lower(net: Network, norm: str, c: npt.NDArray[np.float64] | None = None, starts: int = 16,
                    steps: int = 100, seed: int = 0) -> tuple[float, npt.NDArray[np.float64]]:
    """Largest local Jacobian norm found by multi-start search, and the point (1, input_dim)."""
