"""The one network representation every analysis reads."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from . import _core
from ._arrays import as_float_array, frozen_copy, is_torch_tensor
from .devices import resolve_device
from .errors import InvalidInputError, ShapeError
from .layers import Dense, Implicit, Layer, Residual, walk

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Network:
    """A feed-forward network: a validated sequence of layers, held by the Rust core.

    >>> import numpy as np, nncert
    >>> net = nncert.Network([nncert.Dense(np.eye(2)), nncert.ReLU()])
    >>> net(np.array([1.0, -1.0]))
    array([1., 0.])

    ``input_domain`` optionally records the box (lo, hi) the model was meant for (``.nnet`` files carry one).
    """

    def __init__(self, layers: Iterable[Layer], input_dim: int | None = None,
                 input_domain: tuple[Any, Any] | None = None):
        layers = tuple(layers)
        for k, l in enumerate(layers):
            if not isinstance(l, Layer):
                raise InvalidInputError(f"layer {k} is {type(l).__name__}, not an nncert layer "
                                        f"(use nncert.Dense, nncert.ReLU, ...)")
        self._layers = layers
        self._core = _core.Network([l.spec() for l in layers], input_dim)
        self._input_domain = None
        if input_domain is not None:
            lo = frozen_copy(input_domain[0], "input_domain lo", ndim=1)
            hi = frozen_copy(input_domain[1], "input_domain hi", ndim=1)
            if lo.shape != (self.input_dim,) or hi.shape != (self.input_dim,):
                raise ShapeError(f"input_domain bounds have shapes {lo.shape} and {hi.shape}, "
                                 f"expected ({self.input_dim},)")
            if np.any(lo > hi):
                raise InvalidInputError("input_domain: lo > hi in some coordinate")
            self._input_domain = (lo, hi)

    # ------------------------------------------------------------------ structure
    @property
    def layers(self) -> tuple[Layer, ...]:
        return self._layers

    @property
    def input_dim(self) -> int:
        return self._core.input_dim

    @property
    def output_dim(self) -> int:
        return self._core.output_dim

    @property
    def num_params(self) -> int:
        return self._core.num_params

    @property
    def input_domain(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self._input_domain

    def dense_layers(self) -> list[Dense]:
        """The Dense layers in order, including those inside Residual blocks."""
        return [l for l in walk(self._layers) if isinstance(l, Dense)]

    def implicit_info(self) -> list[dict[str, Any]]:
        """For each Implicit layer, how its well-posedness was certified: a dict with ``path`` ("layer 2"),
        ``units``, ``activation``, ``certificate`` ("contraction": beta ||W||_2 < 1, or "monotone":
        lambda_min(I - (W + W^T)/2) > 0 with a monotone activation of slope <= 1, or "weighted-monotone": the same
        in the metric of the layer's ``lam``), ``contraction`` (beta ||W||_2,
        rounded up), ``monotone_margin`` (lambda_min(I - (W + W^T)/2), rounded down; None when the activation
        does not admit that certificate), ``rate`` (guaranteed contraction factor of the forward iteration) and
        ``max_iters`` (its iteration cap)."""
        return list(self._core.implicit_info())

    def widths(self) -> list[tuple[str, int]]:
        """(layer name, output width) for each top-level layer."""
        out, d = [], self.input_dim
        for l in self._layers:
            if isinstance(l, (Dense, Implicit)):
                d = l.out_features
            out.append((type(l).__name__, d))
        return out

    def summary(self) -> str:
        """A table of the layers with their shapes and parameter counts."""
        rows = [("#", "layer", "shape", "params")]
        d = self.input_dim
        for k, l in enumerate(self._layers):
            if isinstance(l, Dense):
                shape, n = f"{l.in_features} -> {l.out_features}", l.W.size + l.b.size
                d = l.out_features
            elif isinstance(l, Implicit):
                n = l.W.size + l.U.size + l.b.size
                info = {i["path"]: i for i in self.implicit_info()}.get(f"layer {k}")
                cert = f"; {info['certificate']}" if info else ""
                shape = f"{l.in_features} -> {l.out_features}  [z = {type(l.activation).__name__}(Wz + Ux + b){cert}]"
                d = l.out_features
            elif isinstance(l, Residual):
                n = sum(x.W.size + x.b.size for x in walk(l.layers) if isinstance(x, Dense))
                n += 0 if l.skip is None else l.skip.size
                inner = ", ".join(type(x).__name__ for x in l.layers)
                shape = f"{d} -> {d}  [{'x' if l.skip is None else 'S x'} + f(x); f = {inner}]"
            else:
                shape, n = f"{d}", 0
            rows.append((str(k), repr(l) if not isinstance(l, (Dense, Residual, Implicit)) else type(l).__name__, shape,
                         str(n)))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        head = (f"Network: {self.input_dim} inputs -> {self.output_dim} outputs, {len(self._layers)} layers, "
                f"{self.num_params:,} parameters")
        return head + "\n" + "\n".join(lines)

    def __repr__(self) -> str:
        inner = ", ".join(repr(l) for l in self._layers)
        return f"Network([{inner}])  # {self.input_dim} -> {self.output_dim}, {self.num_params:,} params"

    def __len__(self) -> int:
        return len(self._layers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Network):
            return NotImplemented
        return self.input_dim == other.input_dim and list(self._layers) == list(other._layers)

    __hash__ = object.__hash__

    def __reduce__(self):
        return (Network, (self._layers, self.input_dim, self._input_domain))

    # ------------------------------------------------------------------ evaluation
    def __call__(self, x: Any, device: str | None = None) -> Any:
        """Forward pass. ``x`` is (batch, input_dim) or (input_dim,), float64 or float32 (computed in that
        precision), numpy or torch. numpy arrays are read in place whatever their memory order."""
        dev = resolve_device(device, x)
        if dev.type == "cuda":
            from . import torch_backend
            return torch_backend.forward(self, x, dev)
        return _like(self._forward_numpy(as_float_array(x, "x", ndim=(1, 2), allow_float32=True)), x)

    def _forward_numpy(self, x: np.ndarray) -> np.ndarray:
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.shape[1] != self.input_dim:
            raise ShapeError(f"x has {x.shape[1]} features per row (shape {x.shape if not single else x.shape[1:]}) "
                             f"but the network expects {self.input_dim}")
        y = self._core.forward_f32(x) if x.dtype == np.float32 else self._core.forward_f64(x)
        return y[0] if single else y

    def jacobian(self, x: Any, device: str | None = None) -> Any:
        """The Jacobian of the network at ``x`` (input_dim,), shape (output_dim, input_dim), float64.
        Computed in the Rust core, or by torch autodiff on a CUDA device."""
        dev = resolve_device(device, x)
        if dev.type == "cuda":
            from . import torch_backend
            return torch_backend.jacobian(self, x, dev)
        xa = np.ascontiguousarray(as_float_array(x, "x", ndim=1), dtype=np.float64)
        J = self._core.jacobian(xa)
        return _like(J, x)

    def input_gradient(self, x: Any, c: Any, device: str | None = None) -> tuple[Any, Any]:
        """``(f(x), grad_x c^T f(x))`` for a batch ``x`` (batch, input_dim); ``c`` is (output_dim,) or
        (batch, output_dim). Computed in parallel in the core (float64), or with torch on a CUDA device."""
        dev = resolve_device(device, x, c)
        if dev.type == "cuda":
            from . import torch_backend
            return torch_backend.input_gradient(self, x, c, dev)
        orig = x
        x = as_float_array(x, "x", ndim=(1, 2))
        single = x.ndim == 1
        x2 = np.atleast_2d(x).astype(np.float64, copy=False)
        c2 = np.atleast_2d(as_float_array(c, "c", ndim=(1, 2))).astype(np.float64, copy=False)
        if c2.shape[1] != self.output_dim or c2.shape[0] not in (1, x2.shape[0]):
            raise ShapeError(f"c has shape {c2.shape}; expected ({self.output_dim},) or ({x2.shape[0]}, {self.output_dim})")
        y, g = self._core.vjp_batch(x2, c2)
        y, g = (y[0], g[0]) if single else (y, g)
        return _like(y, orig), _like(g, orig)

    # ------------------------------------------------------------------ transformations
    def with_input_normalization(self, mean: Any, std: Any) -> "Network":
        """The network applied to ``(x - mean) / std``, folded into the first Dense layer (exact).

        ``mean`` and ``std`` are scalars or vectors of length input_dim; std must be non-zero.
        """
        n = self.input_dim
        mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), (n,))
        std = np.broadcast_to(np.asarray(std, dtype=np.float64), (n,))
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))) or np.any(std == 0):
            raise InvalidInputError("normalisation mean/std must be finite and std non-zero")
        first = self._layers[0]
        if isinstance(first, Dense):
            W = first.W / std[None, :]
            b = first.b - W @ mean
            layers = (Dense(W, b),) + self._layers[1:]
        else:
            layers = (Dense(np.diag(1.0 / std), -mean / std),) + self._layers
        dom = self._input_domain
        if dom is not None:
            dom = (dom[0] * std + mean, dom[1] * std + mean)
            dom = (np.minimum(*dom), np.maximum(*dom))
        return Network(layers, n, dom)

    # ------------------------------------------------------------------ readers and writers
    @classmethod
    def from_onnx(cls, path: str | os.PathLike) -> "Network":
        """Reads an ONNX model (fully connected feed-forward graphs; see ``nncert.io.onnx``)."""
        from .io.onnx import read_onnx
        return read_onnx(path)

    @classmethod
    def from_nnet(cls, path: str | os.PathLike, normalize: bool = True) -> "Network":
        """Reads the ACAS Xu ``.nnet`` text format; see ``nncert.io.nnet``."""
        from .io.nnet import read_nnet
        return read_nnet(path, normalize=normalize)

    @classmethod
    def from_npz(cls, path: str | os.PathLike, activation: str | None = None, residual: bool = False,
                 pairing: str = "adjacent") -> "Network":
        """Reads a network saved by :meth:`save_npz`, or a plain weight file (W0, W1, ... and optional
        b0, b1, ...) given the ``activation`` between layers; see ``nncert.io.npz``."""
        from .io.npz import read_npz
        return read_npz(path, activation=activation, residual=residual, pairing=pairing)

    def save_npz(self, path: str | os.PathLike) -> None:
        from .io.npz import write_npz
        write_npz(self, path)

    @classmethod
    def from_torch(cls, module: "torch.nn.Module", input_dim: int | None = None) -> "Network":
        """Converts an ``nn.Sequential`` tree of supported modules; see ``nncert.io.torch``."""
        from .io.torch import read_torch
        return read_torch(module, input_dim=input_dim)

    def to_torch(self, dtype: Any = None, device: Any = None) -> "torch.nn.Sequential":
        """An equivalent ``torch.nn.Sequential`` (float64 by default) built from nncert.torch modules."""
        from .io.torch import write_torch
        return write_torch(self, dtype=dtype, device=device)


def _like(result: np.ndarray, template: Any) -> Any:
    """``result`` as the caller's type: a torch tensor when ``template`` is one (CPU: shares memory)."""
    if is_torch_tensor(template):
        import torch
        return torch.from_numpy(result)
    return result


def sequential(widths: Sequence[int], activation: type[Layer] | Layer, *, seed: int | None = 0,
               scale: float = 1.0) -> Network:
    """A random fully connected network (He-style initialisation) with the given widths, for examples
    and tests. ``activation`` is a layer class (``nncert.ReLU``) or instance."""
    rng = np.random.default_rng(seed)
    layers: list[Layer] = []
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        W = rng.standard_normal((n_out, n_in)) * scale * np.sqrt(2.0 / n_in)
        layers.append(Dense(W, 0.1 * scale * rng.standard_normal(n_out)))
        if k + 2 < len(widths):
            layers.append(activation() if isinstance(activation, type) else activation)
    return Network(layers)
