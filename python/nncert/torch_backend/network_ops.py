"""Forward pass, Jacobian and input gradients of a Network with torch ops (any torch device).

The Rust core stays CPU-only; this module mirrors its semantics with torch ops.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .._arrays import is_torch_tensor
from ..devices import Device
from ..errors import InvalidInputError, ShapeError

if TYPE_CHECKING:  # pragma: no cover
    from ..network import Network

_MODULE_CACHE: "weakref.WeakKeyDictionary[Network, dict[tuple[str, Any], Any]]" = weakref.WeakKeyDictionary()


def torch_module(net: "Network", device: Device, dtype: Any) -> Any:
    """The network as a torch module on ``device`` in ``dtype`` (cached per network, device and dtype)."""
    per_net = _MODULE_CACHE.setdefault(net, {})
    key = (str(device), dtype)
    if key not in per_net:
        module = net.to_torch(dtype=dtype, device=device.torch()).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        per_net[key] = module
    return per_net[key]


def forward(net: "Network", x: Any, device: Device) -> Any:
    """Forward pass on ``device``; returns the caller's type (numpy in, numpy out)."""
    import torch

    was_numpy = not is_torch_tensor(x)
    t = torch.as_tensor(np.asarray(x)) if was_numpy else x
    if t.dtype not in (torch.float32, torch.float64):
        if t.is_floating_point() or t.is_complex():
            raise InvalidInputError(f"x: dtype {t.dtype} is not supported (float32 or float64)")
        t = t.to(torch.float64)
    if t.ndim not in (1, 2) or t.shape[-1] != net.input_dim:
        raise ShapeError(f"x has shape {tuple(t.shape)}; expected (batch, {net.input_dim}) or ({net.input_dim},)")
    t = t.to(device.torch())
    if not bool(torch.isfinite(t).all()):
        raise InvalidInputError("x contains NaN or inf (inputs must be finite)")
    with torch.no_grad():
        y = torch_module(net, device, t.dtype)(t if t.ndim == 2 else t[None])
    y = y if t.ndim == 2 else y[0]
    return y.cpu().numpy() if was_numpy else y


def _as_device_tensor(x: Any, device: Device, name: str) -> tuple[Any, bool]:
    import torch

    was_numpy = not is_torch_tensor(x)
    t = torch.as_tensor(np.asarray(x, dtype=np.float64)) if was_numpy else x.detach()
    if not t.is_floating_point():
        t = t.to(torch.float64)
    t = t.to(device.torch())
    if not bool(torch.isfinite(t).all()):
        raise InvalidInputError(f"{name} contains NaN or inf (inputs must be finite)")
    return t, was_numpy


def jacobian(net: "Network", x: Any, device: Device) -> Any:
    """The Jacobian (output_dim, input_dim) at one point, by reverse-mode autodiff on ``device``."""
    import torch

    t, was_numpy = _as_device_tensor(x, device, "x")
    if t.shape != (net.input_dim,):
        raise ShapeError(f"x has shape {tuple(t.shape)}; expected ({net.input_dim},)")
    J = torch.autograd.functional.jacobian(torch_module(net, device, t.dtype), t)
    return J.cpu().numpy() if was_numpy else J


def input_gradient(net: "Network", x: Any, c: Any, device: Device) -> tuple[Any, Any]:
    """``(f(x), grad_x c^T f(x))`` for a batch on ``device`` (one backward pass for the whole batch)."""
    import torch

    t, was_numpy = _as_device_tensor(x, device, "x")
    single = t.ndim == 1
    t = t[None] if single else t
    if t.ndim != 2 or t.shape[1] != net.input_dim:
        raise ShapeError(f"x has shape {tuple(t.shape)}; expected (batch, {net.input_dim})")
    cc, _ = _as_device_tensor(c, device, "c")
    cc = cc.to(t.dtype)
    cc = cc[None] if cc.ndim == 1 else cc
    if cc.shape[1] != net.output_dim or cc.shape[0] not in (1, t.shape[0]):
        raise ShapeError(f"c has shape {tuple(cc.shape)}; expected ({net.output_dim},) or (batch, {net.output_dim})")
    t = t.clone().requires_grad_(True)
    y = torch_module(net, device, t.dtype)(t)
    (g,) = torch.autograd.grad((y * cc).sum(), t)
    y, g = y.detach(), g.detach()
    if single:
        y, g = y[0], g[0]
    return (y.cpu().numpy(), g.cpu().numpy()) if was_numpy else (y, g)
