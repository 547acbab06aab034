"""A Network's layers as tensors on one device in one dtype (cached per network, device and dtype)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnsupportedModelError
from ..layers import Dense, GroupSort, LeakyReLU, ReLU, Residual, Sigmoid, Tanh

_CACHE: "weakref.WeakKeyDictionary[Any, dict[tuple[str, Any], list]]" = weakref.WeakKeyDictionary()


@dataclass
class TDense:
    W: Any  # (out, in)
    b: Any  # (out,)


@dataclass
class TAct:
    kind: str  # "relu" | "leaky_relu" | "tanh" | "sigmoid" | "groupsort"
    slope: float = 0.0
    groups: Any = None  # (G, g) long tensor of unit indices for GroupSort


@dataclass
class TResidual:
    inner: list
    skip: Any = None  # TDense (W = S, b = 0) of y = S x + f(x); None: the identity


def _groups(layer: GroupSort, n: int, device: Any) -> Any:
    import torch
    return torch.as_tensor(np.asarray(layer.groups(n), dtype=np.int64).reshape(-1, layer.group_size), device=device)


def _compile(layers, width: int, device: Any, dtype: Any) -> tuple[list, int]:
    import torch

    out = []
    for l in layers:
        if isinstance(l, Dense):
            out.append(TDense(torch.tensor(np.array(l.W), dtype=dtype, device=device),
                              torch.tensor(np.array(l.b), dtype=dtype, device=device)))
            width = l.out_features
        elif isinstance(l, Residual):
            inner, _ = _compile(l.layers, width, device, dtype)
            skip = None
            if l.skip is not None:
                skip = TDense(torch.tensor(np.array(l.skip), dtype=dtype, device=device),
                              torch.zeros(l.skip.shape[0], dtype=dtype, device=device))
            out.append(TResidual(inner, skip))
        elif isinstance(l, LeakyReLU):
            out.append(TAct("leaky_relu", slope=l.slope))
        elif isinstance(l, ReLU):
            out.append(TAct("relu"))
        elif isinstance(l, Tanh):
            out.append(TAct("tanh"))
        elif isinstance(l, Sigmoid):
            out.append(TAct("sigmoid"))
        elif isinstance(l, GroupSort):
            out.append(TAct("groupsort", groups=_groups(l, width, device)))
        else:
            raise UnsupportedModelError(f"the torch bound propagation does not support {type(l).__name__} layers "
                                        f"(supported: Dense, ReLU, LeakyReLU, Tanh, Sigmoid, GroupSort/MaxMin, "
                                        f"Residual); use the CPU path")
    return out, width


def compiled(net: Any, device: Any, dtype: Any) -> list:
    """The layers of ``net`` as :class:`TDense` / :class:`TAct` / :class:`TResidual` on ``device``."""
    per_net = _CACHE.setdefault(net, {})
    key = (str(device), dtype)
    if key not in per_net:
        per_net[key] = _compile(net.layers, net.input_dim, device, dtype)[0]
    return per_net[key]
