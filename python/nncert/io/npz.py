"""``.npz`` files: nncert's own format (a JSON layer spec plus arrays) and plain weight files.

Plain weight files hold ``W0 .. W{L-1}`` (each out x in) and optionally ``b0 .. b{L-1}``; the caller
names the activation between layers. With ``residual=True`` the layout is the one of the Lipschitz
benchmark's residual MaxMin networks: x1 = W0 x; x_{j+1} = x_j + act(W_j x_j); y = W_{L-1} x_L.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError, UnsupportedModelError
from ..layers import (Dense, GroupSort, Householder, Implicit, Layer, LeakyReLU, MaxMin, ReLU, Residual, Sigmoid,
                      Tanh)

if TYPE_CHECKING:  # pragma: no cover
    from ..network import Network

FORMAT = "nncert.network/1"

_SIMPLE = {"ReLU": ReLU, "Tanh": Tanh, "Sigmoid": Sigmoid}
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "maxmin", "none")


def _encode(layers: tuple[Layer, ...], arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for l in layers:
        kind = type(l).__name__
        if isinstance(l, Dense):
            k = len(arrays)
            arrays[f"a{k}"], arrays[f"a{k + 1}"] = l.W, l.b
            out.append({"type": "Dense", "W": f"a{k}", "b": f"a{k + 1}"})
        elif isinstance(l, Implicit):
            k = len(arrays)
            arrays[f"a{k}"], arrays[f"a{k + 1}"], arrays[f"a{k + 2}"] = l.W, l.U, l.b
            entry = {"type": "Implicit", "W": f"a{k}", "U": f"a{k + 1}", "b": f"a{k + 2}",
                     "activation": _encode((l.activation,), arrays)[0]}
            if l.lam is not None:
                entry["lam"] = f"a{len(arrays)}"
                arrays[entry["lam"]] = l.lam
            out.append(entry)
        elif isinstance(l, Residual):
            entry: dict[str, Any] = {"type": "Residual", "layers": _encode(l.layers, arrays)}
            if l.skip is not None:
                k = len(arrays)
                arrays[f"a{k}"] = l.skip
                entry["skip"] = f"a{k}"
            out.append(entry)
        else:
            out.append({"type": kind, **l.params()})
    return out


def _decode(spec: list[dict[str, Any]], arrays: Any) -> list[Layer]:
    layers: list[Layer] = []
    for d in spec:
        kind = d["type"]
        if kind == "Dense":
            layers.append(Dense(arrays[d["W"]], arrays[d["b"]]))
        elif kind == "Implicit":
            layers.append(Implicit(arrays[d["W"]], arrays[d["U"]], arrays[d["b"]], _decode([d["activation"]], arrays)[0],
                                   arrays[d["lam"]] if d.get("lam") else None))
        elif kind == "Residual":
            layers.append(Residual(_decode(d["layers"], arrays), arrays[d["skip"]] if d.get("skip") else None))
        elif kind in _SIMPLE:
            layers.append(_SIMPLE[kind]())
        elif kind == "LeakyReLU":
            layers.append(LeakyReLU(d["slope"]))
        elif kind == "MaxMin":
            layers.append(MaxMin(d["pairing"]))
        elif kind == "GroupSort":
            layers.append(GroupSort(d["group_size"], d["pairing"]))
        elif kind == "Householder":
            layers.append(Householder(d["theta"], d["pairing"]))
        else:
            raise UnsupportedModelError(f"npz network spec: unknown layer type {kind!r}")
    return layers


def write_npz(net: "Network", path: str | os.PathLike) -> None:
    arrays: dict[str, np.ndarray] = {}
    spec = {"format": FORMAT, "input_dim": net.input_dim, "layers": _encode(net.layers, arrays)}
    if net.input_domain is not None:
        arrays["input_lo"], arrays["input_hi"] = net.input_domain
    np.savez(path, __nncert__=np.array(json.dumps(spec)), **arrays)


def _activation(name: str, pairing: str, slope: float = 0.01) -> Layer | None:
    if name == "relu":
        return ReLU()
    if name == "leaky_relu":
        return LeakyReLU(slope)
    if name == "tanh":
        return Tanh()
    if name == "sigmoid":
        return Sigmoid()
    if name == "maxmin":
        return MaxMin(pairing)
    if name == "none":
        return None
    raise InvalidInputError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def read_npz(path: str | os.PathLike, activation: str | None = None, residual: bool = False,
             pairing: str = "adjacent") -> "Network":
    from ..network import Network

    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    with np.load(path, allow_pickle=False) as data:
        if "__nncert__" in data.files:
            spec = json.loads(str(data["__nncert__"]))
            if spec.get("format") != FORMAT:
                raise UnsupportedModelError(f"{path}: npz format {spec.get('format')!r} is not {FORMAT!r}")
            dom = (data["input_lo"], data["input_hi"]) if "input_lo" in data.files else None
            return Network(_decode(spec["layers"], data), spec["input_dim"], dom)
        ws = sorted((k for k in data.files if k.startswith("W") and k[1:].isdigit()), key=lambda k: int(k[1:]))
        if not ws or [int(k[1:]) for k in ws] != list(range(len(ws))):
            raise UnsupportedModelError(
                f"{path}: neither an nncert network file nor a weight file with keys W0, W1, ... "
                f"(keys: {', '.join(data.files)})")
        if activation is None:
            raise InvalidInputError(
                f"{path} holds plain weights ({', '.join(ws)}); say which activation sits between layers, "
                f"e.g. Network.from_npz(path, activation='relu') (one of {ACTIVATIONS})")
        Ws = [data[k] for k in ws]
        bs = [data[f"b{i}"] if f"b{i}" in data.files else None for i in range(len(ws))]
    act = lambda: _activation(activation, pairing)  # noqa: E731 - a fresh layer each time
    layers: list[Layer] = []
    if residual:
        if len(Ws) < 3:
            raise InvalidInputError(f"{path}: a residual weight file needs at least 3 matrices, has {len(Ws)}")
        layers.append(Dense(Ws[0], bs[0]))
        for W, b in zip(Ws[1:-1], bs[1:-1]):
            a = act()
            layers.append(Residual([Dense(W, b)] + ([a] if a is not None else [])))
        layers.append(Dense(Ws[-1], bs[-1]))
    else:
        for i, (W, b) in enumerate(zip(Ws, bs)):
            layers.append(Dense(W, b))
            a = act() if i + 1 < len(Ws) else None
            if a is not None:
                layers.append(a)
    return Network(layers)
