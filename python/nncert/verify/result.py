"""The result of a verification call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STATUSES = ("holds", "violated", "timeout", "unknown")


@dataclass
class VerifyResult:
    """``status``: "holds" (proved: no input of the region reaches the unsafe set), "violated" (a
    counterexample was found and replayed through the network in float64 and float32), "timeout" or
    "unknown" (neither). ``counterexample`` is ``(x, y)`` when violated. ``method`` says what decided it
    ("attack", "bab", "bab+attack": falsification in the boxes a branch and bound left open, "bab+z3",
    "smt"); ``stats`` has nodes, leaves sent to Z3, stable/unstable units
    at the root, seconds per phase, the device it ran on, the split mode and, on the torch path, ``relu_nodes``
    (nodes with ReLU phases fixed), ``memory_limit`` (the queue outgrew its share of the device's memory) and
    ``memory_retries`` (batches retried in halves after the device ran out of memory)."""

    status: str
    counterexample: tuple[np.ndarray, np.ndarray] | None = None
    seconds: float = 0.0
    method: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    violated: dict[str, Any] | None = None

    @property
    def certified(self) -> bool:
        """True when the status is a proof (holds) or a replayed counterexample (violated)."""
        return self.status in ("holds", "violated")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status, "seconds": self.seconds, "method": self.method,
                             "stats": self.stats, "message": self.message}
        if self.counterexample is not None:
            d["x"] = self.counterexample[0].tolist()
            d["y"] = self.counterexample[1].tolist()
        return d

    def __repr__(self) -> str:
        extra = ""
        if self.counterexample is not None:
            extra = f", x={np.array2string(self.counterexample[0], precision=4, max_line_width=200, threshold=12)}"
        return (f"VerifyResult(status={self.status!r}, method={self.method!r}, seconds={self.seconds:.3f}, "
                f"nodes={self.stats.get('nodes', 0)}, z3_leaves={self.stats.get('z3_leaves', 0)}{extra})")


def counterexample_text(x: np.ndarray, y: np.ndarray) -> str:
    """The VNN-COMP counterexample format: ``((X_0 v) ... (Y_0 v) ...)``."""
    parts = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x)] + [f"(Y_{j} {float(v)!r})" for j, v in enumerate(y)]
    return "(" + "\n".join(parts) + ")\n"
