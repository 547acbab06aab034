"""Falsification: random sampling and projected gradient descent on the violation of an unsafe
conjunction, plus the replay check every reported counterexample must pass."""

from __future__ import annotations

import time

import numpy as np


def replay(net, prop, x: np.ndarray) -> dict | None:
    """Confirms ``x`` is a counterexample: inside a box of the region and, with the network evaluated in
    float64 *and* float32, inside the paired unsafe conjunction. Returns what was checked, or None."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (prop.n_inputs,) or not np.all(np.isfinite(x)):
        return None
    y64 = np.asarray(net(x), dtype=np.float64)
    y32 = np.asarray(net(x.astype(np.float32)), dtype=np.float64)
    for i, j in prop.pairs:
        if not prop.in_region(i, x):
            continue
        v64 = prop.conj_values(j, x, y64)
        v32 = prop.conj_values(j, x, y32)
        if np.all(v64 <= 0) and np.all(v32 <= 0):
            return {"x": x, "y": y64, "y32": y32, "region": i, "conjunction": j, "values": v64}
    return None


def _violation(prop, j, X, Y):
    """Per point: the largest row of A_y y + A_x x - c (<= 0 on the unsafe set) and which row it is."""
    v = prop.conj_values(j, X, Y)
    return v.max(axis=1), v.argmax(axis=1)


def pgd(net, prop, i: int, j: int, X: np.ndarray, steps: int, deadline: float, step0: float = 0.1) -> np.ndarray | None:
    """Projected sign-gradient descent of the violation from the rows of X (a batch inside box i)."""
    lo, hi = prop.regions[i]
    a_y, a_x, _ = prop.unsafe[j]
    width = hi - lo
    X = np.clip(X, lo, hi)
    for t in range(steps):
        if time.monotonic() > deadline:
            return None
        C = a_y[np.zeros(len(X), dtype=int)]
        Y = net(X)
        worst, rows = _violation(prop, j, X, Y)
        for k in np.argsort(worst)[:4]:
            if worst[k] <= 0:
                r = replay(net, prop, X[k])
                if r is not None:
                    return X[k].copy()
        C = a_y[rows]
        _, G = net.input_gradient(X, C)
        G = G + a_x[rows]
        step = step0 * (1.0 - t / steps) + 1e-3
        X = np.clip(X - step * width * np.sign(G), lo, hi)
    Y = net(X)
    worst, _ = _violation(prop, j, X, Y)
    for k in np.argsort(worst)[:4]:
        if worst[k] <= 0 and replay(net, prop, X[k]) is not None:
            return X[k].copy()
    return None


def falsify(net, prop, deadline: float, rng: np.random.Generator, n_random: int = 1024, restarts: int = 16,
            steps: int = 40) -> np.ndarray | None:
    """Random points in each box, then PGD from the most promising ones. Returns a replayed x or None."""
    for i, j in prop.pairs:
        if time.monotonic() > deadline:
            return None
        lo, hi = prop.regions[i]
        X = lo + (hi - lo) * rng.random((n_random, prop.n_inputs))
        X = np.vstack([X, 0.5 * (lo + hi)])
        worst, _ = _violation(prop, j, X, net(X))
        for k in np.argsort(worst)[:8]:
            if worst[k] <= 0 and replay(net, prop, X[k]) is not None:
                return X[k]
        start = X[np.argsort(worst)[:restarts]]
        x = pgd(net, prop, i, j, start, steps, deadline)
        if x is not None:
            return x
    return None


def deepen(net, prop, x: np.ndarray, deadline: float) -> np.ndarray | None:
    """From a point at the edge of the unsafe set (e.g. a Z3 model), a few small PGD steps inward, so
    that it replays in both precisions."""
    x = np.asarray(x, dtype=np.float64)
    if replay(net, prop, x) is not None:
        return x
    for i, j in prop.pairs:
        if not prop.in_region(i, x):
            continue
        for step0 in (1e-6, 1e-4, 1e-2):
            r = pgd(net, prop, i, j, x[None, :], 20, deadline, step0=step0)
            if r is not None:
                return r
    return None


def falsify_boxes(net, prop, boxes, deadline: float, rng: np.random.Generator, per_box: int = 8,
                  steps: int = 15, step0: float = 0.2) -> np.ndarray | None:
    """Falsification guided by a branch and bound: projected sign-gradient descent of the violation from
    ``per_box`` random points in each of ``boxes`` (a list of (pair index, lo, hi), sub-boxes of the pair's
    region that bounds could not prove), each point kept in its own box with steps scaled to that box.
    A counterexample hiding in a sliver of the region (ACAS Xu 5_3 / property 2: 5e-7 of the box) is
    out of reach of steps scaled to the whole region, and of random points, but not of steps inside the
    small boxes a search left open. Returns a replayed x or None."""
    by_pair: dict[int, list] = {}
    for k, lo, hi in boxes:
        by_pair.setdefault(int(k), []).append((np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)))
    for k, bs in by_pair.items():
        i, j = prop.pairs[k]
        a_y, a_x, _ = prop.unsafe[j]
        lo = np.repeat(np.array([b[0] for b in bs]), per_box, axis=0)
        hi = np.repeat(np.array([b[1] for b in bs]), per_box, axis=0)
        width = hi - lo
        X = lo + width * rng.random(lo.shape)
        for t in range(steps + 1):
            if time.monotonic() > deadline:
                return None
            worst, rows = _violation(prop, j, X, net(X))
            for p in np.argsort(worst)[:4]:
                if worst[p] <= 0 and replay(net, prop, X[p]) is not None:
                    return X[p].copy()
            if t == steps:
                break
            _, G = net.input_gradient(X, a_y[rows])
            G = G + a_x[rows]
            step = step0 * (1.0 - t / steps) + 1e-3
            X = np.clip(X - step * width * np.sign(G), lo, hi)
    return None
