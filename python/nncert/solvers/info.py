"""The result record every solver returns next to x."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SolveInfo:
    """What a solve achieved and how.

    ``converged`` is True only when the final TRUE relative residual ``||b - A x|| / ||b||`` (recomputed
    in Python with scipy after the solver returned, ``true_residual``) is at most ``tol``.
    ``residuals`` holds the relative residual after each iteration (index 0: the initial one).
    """

    iterations: int
    residuals: np.ndarray
    converged: bool
    seconds: float
    reason: str  # "converged" | "maxiter" | "time_limit" | "interrupted" | "unconfirmed"
    method: str
    tol: float
    true_residual: float
    matvecs: int = 0
    false_convergences: int = 0  # recursive residual said "converged", the true residual refuted it
    fallbacks: int = 0  # DCDM: iterations whose learned direction was replaced by the residual
    null_space_projected: bool = False
    device: str = "cpu"
    bytes_per_matvec: int = 0
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"SolveInfo(method={self.method!r}, converged={self.converged}, reason={self.reason!r}, "
                f"iterations={self.iterations}, true_residual={self.true_residual:.3e}, tol={self.tol:g}, "
                f"seconds={self.seconds:.4f}, device={self.device!r})")
