"""nncert: verification and analysis of neural networks.

One :class:`Network` (held by the Rust core) is read by every analysis: certified Lipschitz bounds
(:func:`lipschitz`), complete safety verification (:func:`verify`, :class:`Property`,
:func:`verify_region`), convex training of two-layer ReLU networks (:class:`ConvexReLU`), and Krylov /
learned linear solvers (:mod:`nncert.solvers`). See the README for a tour.
"""

from ._core import __version__
from .errors import (Error, InvalidInputError, PropertyFormatError, ShapeError, SolverError, TimeLimitError,
                     UnsupportedModelError)
from .layers import (Dense, Equilibrium, GroupSort, Householder, Implicit, Layer, LeakyReLU, MaxMin, ReLU, Residual,
                     Sigmoid, Tanh)
from .network import Network

from . import solvers  # noqa: E402  (nncert.solvers.cg, .DCDM, .poisson3d, ...)
from .convex import ConvexReLU  # noqa: E402
from .lipschitz import LipschitzResult, lipschitz  # noqa: E402
from .verify import Property, RegionResult, VerifyResult, verify, verify_region  # noqa: E402

__all__ = [
    "__version__",
    "Network",
    "Layer", "Dense", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "MaxMin", "GroupSort", "Householder", "Residual",
    "Implicit", "Equilibrium",
    "Error", "ShapeError", "InvalidInputError", "UnsupportedModelError", "SolverError", "TimeLimitError",
    "PropertyFormatError",
    "lipschitz", "LipschitzResult",
    "Property", "verify", "VerifyResult", "verify_region", "RegionResult",
    "ConvexReLU",
    "solvers",
]
