"""The ``.nnet`` text format of the ACAS Xu networks (Julian et al.; used by Reluplex and Marabou).

Layout: ``//`` comment lines; a line "numLayers, inputSize, outputSize, maxLayerSize"; the layer sizes;
a flag line; input minimums; input maximums; means (inputs, then output); ranges (inputs, then output);
then for each layer its weight rows (comma separated) followed by its biases (one per line). All
hidden layers use ReLU.

With ``normalize=True`` the network takes physical inputs: ``(x - mean) / range`` is folded into the
first Dense layer and the output is scaled back (``y * range_out + mean_out``). The .nnet convention
of clipping inputs to [min, max] is not an affine map, so it is not folded in: the box is recorded as
``net.input_domain`` instead, and verification regions should lie inside it.
With ``normalize=False`` the network is exactly the stored one, on normalised inputs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ShapeError, UnsupportedModelError
from ..layers import Dense, Layer, ReLU

if TYPE_CHECKING:  # pragma: no cover
    from ..network import Network


def _numbers(line: str, path: str, lineno: int) -> list[float]:
    try:
        return [float(t) for t in line.replace(",", " ").split()]
    except ValueError as e:
        raise UnsupportedModelError(f"{path}:{lineno}: expected comma-separated numbers, got {line.strip()[:60]!r}") from e


def read_nnet(path: str | os.PathLike, normalize: bool = True) -> "Network":
    from ..network import Network

    path = str(path)
    with open(path) as f:
        raw = f.readlines()
    lines = [(i + 1, l) for i, l in enumerate(raw) if l.strip() and not l.lstrip().startswith("//")]
    it = iter(lines)

    def nxt(what: str) -> tuple[int, list[float]]:
        try:
            n, l = next(it)
        except StopIteration:
            raise UnsupportedModelError(f"{path}: file ends early, expected {what}") from None
        return n, _numbers(l, path, n)

    n, head = nxt("the header 'numLayers, inputSize, outputSize, maxLayerSize'")
    if len(head) < 3:
        raise UnsupportedModelError(f"{path}:{n}: header needs numLayers, inputSize, outputSize")
    n_layers, n_in, n_out = (int(v) for v in head[:3])
    n, sizes = nxt("the layer sizes")
    sizes = [int(s) for s in sizes]
    if len(sizes) != n_layers + 1 or sizes[0] != n_in or sizes[-1] != n_out:
        raise ShapeError(f"{path}:{n}: layer sizes {sizes} do not match the header ({n_layers} layers, "
                         f"{n_in} inputs, {n_out} outputs)")
    nxt("the flag line")
    _, mins = nxt("input minimums")
    _, maxs = nxt("input maximums")
    _, means = nxt("means")
    _, ranges = nxt("ranges")
    for name, v, want in (("minimums", mins, n_in), ("maximums", maxs, n_in), ("means", means, n_in + 1),
                          ("ranges", ranges, n_in + 1)):
        if len(v) < want:
            raise ShapeError(f"{path}: {name} has {len(v)} values, expected {want}")
    layers: list[Layer] = []
    for k in range(n_layers):
        rows = []
        for _ in range(sizes[k + 1]):
            n, r = nxt(f"a weight row of layer {k}")
            if len(r) != sizes[k]:
                raise ShapeError(f"{path}:{n}: weight row of layer {k} has {len(r)} values, expected {sizes[k]}")
            rows.append(r)
        bias = []
        for _ in range(sizes[k + 1]):
            n, r = nxt(f"a bias of layer {k}")
            if len(r) != 1:
                raise ShapeError(f"{path}:{n}: bias line of layer {k} has {len(r)} values, expected 1")
            bias.append(r[0])
        W, b = np.array(rows), np.array(bias)
        if normalize and k == n_layers - 1:
            W, b = W * ranges[n_in], b * ranges[n_in] + means[n_in]
        layers.append(Dense(W, b))
        if k + 1 < n_layers:
            layers.append(ReLU())
    net = Network(layers)
    lo, hi = np.array(mins[:n_in]), np.array(maxs[:n_in])
    if normalize:
        net = net.with_input_normalization(np.array(means[:n_in]), np.array(ranges[:n_in]))
        return Network(net.layers, n_in, (lo, hi))
    mu, rg = np.array(means[:n_in]), np.array(ranges[:n_in])
    return Network(layers, n_in, ((lo - mu) / rg, (hi - mu) / rg))


def write_nnet(net: "Network", path: str | os.PathLike) -> None:
    """Writes a Dense/ReLU chain in the .nnet format (identity normalisation; domain from input_domain or +-1e6)."""
    dense = list(net.layers[0::2])
    if not all(isinstance(l, Dense) for l in dense) or not all(isinstance(l, ReLU) for l in net.layers[1::2]) \
            or not isinstance(net.layers[-1], Dense):
        raise UnsupportedModelError(".nnet holds only alternating Dense/ReLU layers ending in Dense")
    sizes = [net.input_dim] + [l.out_features for l in dense]
    lo, hi = net.input_domain if net.input_domain is not None else (np.full(net.input_dim, -1e6),
                                                                      np.full(net.input_dim, 1e6))
    fmt = lambda v: ",".join(repr(float(x)) for x in v) + ","  # noqa: E731
    out = ["// written by nncert", f"{len(dense)},{net.input_dim},{net.output_dim},{max(sizes)},",
           fmt(sizes), "0,", fmt(lo), fmt(hi), fmt([0.0] * (net.input_dim + 1)), fmt([1.0] * (net.input_dim + 1))]
    for l in dense:
        out += [fmt(row) for row in l.W] + [f"{float(v)!r}," for v in l.b]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
