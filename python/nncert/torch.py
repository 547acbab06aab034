"""torch modules for the activations nncert analyses, so users can build and train such networks.

``Network.from_torch`` reads them and ``Network.to_torch`` writes them; their semantics match the Rust
core exactly (GroupSort sorts each group in descending order; the pairings are the ones of
``nncert.GroupSort``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .errors import InvalidInputError, ShapeError
from .layers import PAIRINGS


def _check(n: int, g: int, pairing: str, what: str) -> None:
    if pairing not in PAIRINGS:
        raise InvalidInputError(f"{what}: pairing must be one of {PAIRINGS}, got {pairing!r}")
    if n % g:
        raise ShapeError(f"{what}: width {n} is not a multiple of the group size {g}")


class GroupSort(nn.Module):
    """Sorts each group of ``group_size`` features in descending order (last dimension)."""

    def __init__(self, group_size: int, pairing: str = "adjacent"):
        super().__init__()
        if int(group_size) != group_size or group_size < 2:
            raise InvalidInputError(f"GroupSort: group_size must be an integer >= 2, got {group_size!r}")
        if pairing not in PAIRINGS:
            raise InvalidInputError(f"GroupSort: pairing must be one of {PAIRINGS}, got {pairing!r}")
        self.group_size, self.pairing = int(group_size), pairing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, g = x.shape[-1], self.group_size
        _check(n, g, self.pairing, type(self).__name__)
        lead = x.shape[:-1]
        if self.pairing == "adjacent":
            return x.reshape(*lead, n // g, g).sort(dim=-1, descending=True).values.reshape(*lead, n)
        return x.reshape(*lead, g, n // g).sort(dim=-2, descending=True).values.reshape(*lead, n)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, pairing={self.pairing!r}"


class MaxMin(GroupSort):
    """GroupSort with groups of two: (a, b) -> (max, min)."""

    def __init__(self, pairing: str = "adjacent"):
        super().__init__(2, pairing)

    def extra_repr(self) -> str:
        return f"pairing={self.pairing!r}"


class Householder(nn.Module):
    """Order-1 Householder activation on pairs with a learnable angle ``theta``:
    z if v.z > 0 else (I - 2 v v^T) z, v = (sin(theta/2), -cos(theta/2))."""

    def __init__(self, theta: float = math.pi / 2, pairing: str = "adjacent"):
        super().__init__()
        if pairing not in PAIRINGS:
            raise InvalidInputError(f"Householder: pairing must be one of {PAIRINGS}, got {pairing!r}")
        self.theta = nn.Parameter(torch.tensor(float(theta), dtype=torch.float64))
        self.pairing = pairing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        _check(n, 2, self.pairing, "Householder")
        lead = x.shape[:-1]
        if self.pairing == "adjacent":
            pairs = x.reshape(*lead, n // 2, 2)
            a, b = pairs[..., 0], pairs[..., 1]
        else:
            a, b = x[..., : n // 2], x[..., n // 2:]
        th = self.theta.to(x.dtype)
        v0, v1 = torch.sin(th / 2), -torch.cos(th / 2)
        dot = v0 * a + v1 * b
        keep = dot > 0
        ra, rb = a - 2 * dot * v0, b - 2 * dot * v1
        a2, b2 = torch.where(keep, a, ra), torch.where(keep, b, rb)
        if self.pairing == "adjacent":
            return torch.stack((a2, b2), dim=-1).reshape(*lead, n)
        return torch.cat((a2, b2), dim=-1)

    def extra_repr(self) -> str:
        return f"theta={float(self.theta):.6g}, pairing={self.pairing!r}"


class Residual(nn.Module):
    """``y = S x + f(x)``; ``f`` is the given module, or an ``nn.Sequential`` of the given modules. ``skip``: None
    (the identity, ``y = x + f(x)``), a bias-free ``nn.Linear(d, d)`` (trainable S), or a (d, d) tensor / array
    (wrapped in such a Linear)."""

    def __init__(self, *modules: nn.Module, skip: Any = None):
        super().__init__()
        self.f = modules[0] if len(modules) == 1 else nn.Sequential(*modules)
        if skip is not None and not isinstance(skip, nn.Linear):
            S = torch.as_tensor(skip)
            if S.ndim != 2 or S.shape[0] != S.shape[1]:
                raise ShapeError(f"Residual: skip must be a square (d, d) matrix, got shape {tuple(S.shape)}")
            lin = nn.Linear(S.shape[1], S.shape[0], bias=False, dtype=S.dtype if S.is_floating_point() else None)
            with torch.no_grad():
                lin.weight.copy_(S)
            skip = lin
        if skip is not None and (skip.bias is not None or skip.in_features != skip.out_features):
            raise ShapeError("Residual: skip must be a square nn.Linear without bias")
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x if self.skip is None else self.skip(x)) + self.f(x)


__all__ = ["GroupSort", "MaxMin", "Householder", "Residual"]
