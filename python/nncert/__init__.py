"""nncert: verification and analysis of neural networks.

One :class:`Network` (held by the Rust core) is read by every analysis: certified Lipschitz bounds,
complete safety verification, convex training of two-layer ReLU networks, and Krylov / learned
linear solvers. See the README for a tour.
"""

from ._core import __version__
from .errors import (Error, InvalidInputError, PropertyFormatError, ShapeError, SolverError, TimeLimitError,
                     UnsupportedModelError)
from .layers import Dense, GroupSort, Householder, Layer, LeakyReLU, MaxMin, ReLU, Residual, Sigmoid, Tanh
from .network import Network

__all__ = [
    "__version__",
    "Network",
    "Layer", "Dense", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "MaxMin", "GroupSort", "Householder", "Residual",
    "Error", "ShapeError", "InvalidInputError", "UnsupportedModelError", "SolverError", "TimeLimitError",
    "PropertyFormatError",
]

# verification (issue 4)
from .verify import Property, RegionResult, VerifyResult, verify, verify_region  # noqa: E402

__all__ += ["Property", "verify", "VerifyResult", "verify_region", "RegionResult"]

from . import solvers  # noqa: E402  (Krylov and learned linear solvers: nncert.solvers.cg, .DCDM, .poisson3d)

__all__ += ["solvers"]

from .convex import ConvexReLU  # noqa: E402

__all__ += ["ConvexReLU"]

# Certified Lipschitz bounds (issue 3).
from .lipschitz import LipschitzResult, lipschitz  # noqa: E402

__all__ += ["lipschitz", "LipschitzResult"]
