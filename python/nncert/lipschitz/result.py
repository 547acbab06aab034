"""The result object of :func:`nncert.lipschitz`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LipschitzResult:
    """What was proved and how.

    ``bound`` is an upper bound on the Lipschitz constant; it is a mathematical certificate when
    ``certified`` is True (every LMI re-checked in float64 with a rounding margin, see ``details['lmis']``).
    ``lower_bound`` is the largest local Jacobian norm found by the multi-start search (random search and
    gradient ascent on difference quotients), so the true constant lies in
    ``[lower_bound, bound]``. ``naive_bound`` is ``inf`` where no naive bound exists (an implicit layer that is
    not a contraction; ``details["naive_unavailable"]`` says why).
    """

    bound: float
    certified: bool
    naive_bound: float
    lower_bound: float
    method: str
    norm: str
    seconds: float
    solver_status: str | None = None
    solver: str | None = None
    output: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """bound / lower_bound (1 means the bound is tight)."""
        return self.bound / self.lower_bound if self.lower_bound > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("bound", "certified", "naive_bound", "lower_bound", "method", "norm",
                                             "seconds", "solver_status", "solver")}
        if not math.isfinite(out["naive_bound"]):  # unavailable (implicit layer without a contraction): JSON null
            out["naive_bound"] = None
        out["output"] = self.output if self.output is None or isinstance(self.output, int) else list(map(float, self.output))
        out["details"] = self.details
        return out

    def summary(self) -> str:
        rows = [("method", self.method), ("norm", self.norm), ("bound", f"{self.bound:.6g}"),
                ("certified", str(self.certified)), ("naive bound", f"{self.naive_bound:.6g}" if math.isfinite(self.naive_bound) else "unavailable"),
                ("lower bound", f"{self.lower_bound:.6g}"), ("seconds", f"{self.seconds:.3f}")]
        if self.solver:
            rows.append(("solver", f"{self.solver} ({self.solver_status})"))
        w = max(len(r[0]) for r in rows)
        return "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows)

    def __repr__(self) -> str:
        return (f"LipschitzResult(bound={self.bound:.6g}, certified={self.certified}, method={self.method!r}, "
                f"naive_bound={self.naive_bound:.6g}, lower_bound={self.lower_bound:.6g}, seconds={self.seconds:.3f})")
