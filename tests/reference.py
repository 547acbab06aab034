"""An independent numpy forward pass used as the reference in tests (written from the layer definitions,
sharing no code with the Rust core or nncert.torch)."""

from __future__ import annotations

import numpy as np

import nncert


def forward(layers, x: np.ndarray) -> np.ndarray:
    h = np.array(x, dtype=np.float64, copy=True)
    for l in layers:
        if isinstance(l, nncert.Dense):
            h = h @ l.W.T + l.b
        elif isinstance(l, nncert.ReLU):
            h = np.maximum(h, 0)
        elif isinstance(l, nncert.LeakyReLU):
            h = np.where(h > 0, h, l.slope * h)
        elif isinstance(l, nncert.Tanh):
            h = np.tanh(h)
        elif isinstance(l, nncert.Sigmoid):
            h = 1 / (1 + np.exp(-h))
        elif isinstance(l, nncert.GroupSort):
            out = h.copy()
            for g in l.groups(h.shape[1]):
                out[:, g] = -np.sort(-h[:, g], axis=1)
            h = out
        elif isinstance(l, nncert.Householder):
            v = np.array([np.sin(l.theta / 2), -np.cos(l.theta / 2)])
            out = h.copy()
            for a, b in l.groups(h.shape[1]):
                z = h[:, [a, b]]
                d = z @ v
                refl = z - 2 * d[:, None] * v[None, :]
                out[:, [a, b]] = np.where((d > 0)[:, None], z, refl)
            h = out
        elif isinstance(l, nncert.Residual):
            h = (h if l.skip is None else h @ l.skip.T) + forward(l.layers, h)
        else:
            raise TypeError(l)
    return h


def random_network(rng: np.random.Generator, kinds=("relu", "leaky", "tanh", "sigmoid", "maxmin", "maxmin_h",
                                                   "groupsort", "householder", "residual"), n_in: int = 4,
                   width: int = 6, depth: int = 3) -> nncert.Network:
    layers = []
    d = n_in
    for _ in range(depth):
        layers.append(nncert.Dense(rng.standard_normal((width, d)), rng.standard_normal(width)))
        d = width
        k = kinds[rng.integers(len(kinds))]
        layers.append({
            "relu": lambda: nncert.ReLU(),
            "leaky": lambda: nncert.LeakyReLU(0.1),
            "tanh": lambda: nncert.Tanh(),
            "sigmoid": lambda: nncert.Sigmoid(),
            "maxmin": lambda: nncert.MaxMin(),
            "maxmin_h": lambda: nncert.MaxMin("halves"),
            "groupsort": lambda: nncert.GroupSort(3, "halves"),
            "householder": lambda: nncert.Householder(float(rng.uniform(0, 2 * np.pi))),
            "residual": lambda: nncert.Residual([nncert.Dense(0.3 * rng.standard_normal((width, width))),
                                                 nncert.MaxMin()]),
        }[k]())
    layers.append(nncert.Dense(rng.standard_normal((3, d)), rng.standard_normal(3)))
    return nncert.Network(layers)
