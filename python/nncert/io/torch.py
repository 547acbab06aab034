"""Conversion between ``torch.nn`` modules and :class:`nncert.Network`.

Supported: ``nn.Sequential`` trees of Linear, ReLU, LeakyReLU, Tanh, Sigmoid, Flatten (start_dim=1),
Identity, Dropout (inference) and nncert.torch's MaxMin, GroupSort, Householder and Residual. Weights
are converted to float64 exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError, UnsupportedModelError
from ..layers import (Dense, GroupSort, Householder, Implicit, Layer, LeakyReLU, MaxMin, ReLU, Residual, Sigmoid,
                      Tanh)

if TYPE_CHECKING:  # pragma: no cover
    from ..network import Network


def _np(t: Any) -> np.ndarray:
    return t.detach().to("cpu").double().numpy()


def _convert(module: Any, path: str) -> list[Layer]:
    import torch.nn as nn

    from .. import torch as nt

    if isinstance(module, nn.Sequential):
        out: list[Layer] = []
        for name, child in module.named_children():
            out += _convert(child, f"{path}.{name}" if path else name)
        return out
    where = path or "<root>"
    if isinstance(module, nn.Linear):
        return [Dense(_np(module.weight), None if module.bias is None else _np(module.bias))]
    if isinstance(module, nn.ReLU):
        return [ReLU()]
    if isinstance(module, nn.LeakyReLU):
        return [LeakyReLU(module.negative_slope)]
    if isinstance(module, nn.Tanh):
        return [Tanh()]
    if isinstance(module, nn.Sigmoid):
        return [Sigmoid()]
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return []
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise UnsupportedModelError(f"{where}: Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}) "
                                        f"would mix the batch dimension; only Flatten(1, -1) is supported")
        return []
    if isinstance(module, nt.GroupSort):
        if module.group_size == 2:
            return [MaxMin(module.pairing)]
        return [GroupSort(module.group_size, module.pairing)]
    if isinstance(module, nt.Householder):
        return [Householder(float(module.theta.detach()), module.pairing)]
    if isinstance(module, nt.Residual):
        skip = getattr(module, "skip", None)
        S = None if skip is None else skip.weight.detach().cpu().double().numpy()
        return [Residual(_convert(module.f, f"{where}.f"), S)]
    raise UnsupportedModelError(
        f"{where}: torch module {type(module).__module__}.{type(module).__name__} is not supported "
        f"(supported: Sequential, Linear, ReLU, LeakyReLU, Tanh, Sigmoid, Flatten, Identity, Dropout, "
        f"nncert.torch.MaxMin/GroupSort/Householder/Residual)")


def read_torch(module: Any, input_dim: int | None = None) -> "Network":
    from ..network import Network

    try:
        import torch.nn as nn
    except ImportError as e:  # pragma: no cover
        raise InvalidInputError("Network.from_torch needs torch (pip install 'nncert[torch]')") from e
    if not isinstance(module, nn.Module):
        raise InvalidInputError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    layers = _convert(module, "")
    if not layers:
        raise UnsupportedModelError("the module has no layers nncert can represent (only identities)")
    return Network(layers, input_dim)


def _module(layer: Layer, dtype: Any, device: Any) -> Any:
    import torch
    import torch.nn as nn

    from .. import torch as nt

    if isinstance(layer, Dense):
        lin = nn.Linear(layer.in_features, layer.out_features, dtype=dtype, device=device)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(layer.W))
            lin.bias.copy_(torch.tensor(layer.b))
        return lin
    if isinstance(layer, ReLU):
        return nn.ReLU()
    if isinstance(layer, LeakyReLU):
        return nn.LeakyReLU(layer.slope)
    if isinstance(layer, Tanh):
        return nn.Tanh()
    if isinstance(layer, Sigmoid):
        return nn.Sigmoid()
    if isinstance(layer, MaxMin):
        return nt.MaxMin(layer.pairing)
    if isinstance(layer, GroupSort):
        return nt.GroupSort(layer.group_size, layer.pairing)
    if isinstance(layer, Householder):
        return nt.Householder(layer.theta, layer.pairing).to(device=device)
    if isinstance(layer, Implicit):
        raise UnsupportedModelError("to_torch (and the torch/CUDA paths built on it) does not support implicit "
                                    "(equilibrium) layers; use the CPU path")
    if isinstance(layer, Residual):
        skip = None
        if layer.skip is not None:
            skip = nn.Linear(layer.skip.shape[1], layer.skip.shape[0], bias=False, dtype=dtype, device=device)
            with torch.no_grad():
                skip.weight.copy_(torch.tensor(layer.skip))
        return nt.Residual(nn.Sequential(*[_module(l, dtype, device) for l in layer.layers]), skip=skip)
    raise UnsupportedModelError(f"no torch module for layer {layer!r}")  # pragma: no cover


def write_torch(net: "Network", dtype: Any = None, device: Any = None) -> Any:
    import torch
    import torch.nn as nn

    dtype = torch.float64 if dtype is None else dtype
    return nn.Sequential(*[_module(l, dtype, device) for l in net.layers])
