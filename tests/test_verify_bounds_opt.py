"""Optimised bounds (alpha-CROWN slopes, beta-CROWN split multipliers): never looser than fixed-slope
CROWN and never above the exact minimum of the row over the (split-restricted) box, computed here by an
independent MILP (scipy.optimize.milp, big-M constants from numpy interval arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

import nncert
from nncert import _core


def exact_min(Ws, bs, lo, hi, a_y, a_x, splits):
    """min over x in [lo, hi] with the ReLU phases `splits` of a_y f(x) + a_x x (Dense-ReLU chain), or
    None when the splits make the domain empty. Variables: x, then per hidden layer z, y, d."""
    var_lo, var_hi, integ = list(lo), list(hi), [0] * len(lo)
    rows, rl, ru = [], [], []

    def new(l, u, i=0):
        var_lo.append(l), var_hi.append(u), integ.append(i)
        return len(var_lo) - 1

    cur = list(range(len(lo)))  # variable index per unit
    cl, cu = np.array(lo, float), np.array(hi, float)
    for li, (W, b) in enumerate(zip(Ws, bs)):
        Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
        zl, zu = Wp @ cl + Wn @ cu + b, Wp @ cu + Wn @ cl + b
        if li == len(Ws) - 1:
            return _solve(var_lo, var_hi, integ, rows, rl, ru, cur, W, b, a_y, a_x)
        for s_act, s_unit, active in splits:
            if s_act == li:
                if active:
                    zl[s_unit] = max(zl[s_unit], 0.0)
                else:
                    zu[s_unit] = min(zu[s_unit], 0.0)
        if np.any(zl > zu):
            return None
        nxt = []
        for i in range(W.shape[0]):
            z = new(zl[i], zu[i])
            r = {z: -1.0}
            for j, v in enumerate(cur):
                r[v] = r.get(v, 0.0) + W[i, j]
            rows.append(r), rl.append(-b[i]), ru.append(-b[i])
            if zl[i] >= 0:
                nxt.append(z)
                continue
            y = new(0.0, max(zu[i], 0.0))
            if zu[i] > 0:
                d = new(0, 1, 1)
                rows.append({y: 1.0, z: -1.0}), rl.append(0.0), ru.append(np.inf)
                rows.append({y: 1.0, z: -1.0, d: -zl[i]}), rl.append(-np.inf), ru.append(-zl[i])
                rows.append({y: 1.0, d: -zu[i]}), rl.append(-np.inf), ru.append(0.0)
            nxt.append(y)
        cur = nxt
        cl, cu = np.maximum(zl, 0), np.maximum(zu, 0)


def _solve(var_lo, var_hi, integ, rows, rl, ru, cur, W, b, a_y, a_x):
    nv = len(var_lo)
    cost = np.zeros(nv)
    const = float(a_y @ b)
    c_last = a_y @ W
    for j, v in enumerate(cur):
        cost[v] += c_last[j]
    cost[: len(a_x)] += a_x
    A = np.zeros((max(len(rows), 1), nv))
    for k, r in enumerate(rows):
        for v, a in r.items():
            A[k, v] += a
    cons = [LinearConstraint(A, rl, ru)] if rows else []
    res = milp(cost, constraints=cons, integrality=np.array(integ), bounds=Bounds(var_lo, var_hi),
               options={"mip_rel_gap": 0.0})
    if res.status == 2:  # infeasible
        return None
    assert res.success, res.message
    return float(res.fun) + const


def random_chain(rng):
    widths = [int(rng.integers(2, 5))] + [int(rng.choice([4, 6, 8])) for _ in range(int(rng.integers(1, 3)))] + [2]
    Ws = [rng.standard_normal((widths[k + 1], widths[k])) for k in range(len(widths) - 1)]
    bs = [0.5 * rng.standard_normal(widths[k + 1]) for k in range(len(widths) - 1)]
    layers = []
    for k, (W, b) in enumerate(zip(Ws, bs)):
        layers.append(nncert.Dense(W, b))
        if k + 1 < len(Ws):
            layers.append(nncert.ReLU())
    return nncert.Network(layers), Ws, bs, widths[0]


def test_optimised_bounds_between_crown_and_exact_minimum():
    rng = np.random.default_rng(3)
    gain, cases, with_splits = 0.0, 0, 0
    for _ in range(40):
        net, Ws, bs, n = random_chain(rng)
        centre, rad = rng.uniform(-1, 1, n), rng.uniform(0.2, 1.0, n)
        lo, hi = centre - rad, centre + rad
        a_y = rng.standard_normal((1, 2))
        a_x = np.where(rng.random((1, n)) < 0.3, 0.3 * rng.standard_normal((1, n)), 0.0)
        root = _core.output_bounds(net._core, lo, hi, a_y, a_x)
        splits = []
        for a, (l, u) in enumerate(root["pre"]):
            unst = np.flatnonzero((l < 0) & (u > 0))
            if len(unst) and rng.random() < 0.7:
                splits.append((a, int(rng.choice(unst)), bool(rng.random() < 0.5)))
        truth = exact_min(Ws, bs, lo, hi, a_y[0], a_x[0], splits)
        crown = _core.output_bounds(net._core, lo, hi, a_y, a_x, splits=splits)["lower"][0]
        opt = _core.output_bounds(net._core, lo, hi, a_y, a_x, opt_iters=60, splits=splits)["lower"][0]
        if truth is None:
            continue  # an empty sub-domain: any bound is vacuously sound
        cases += 1
        with_splits += bool(splits)
        assert crown - 1e-9 <= opt <= truth + 1e-7, (splits, crown, opt, truth)
        gain += opt - crown
    assert cases >= 25 and with_splits >= 10
    assert gain > 0.5, f"optimisation tightened the bounds by only {gain} in total"


def test_beta_uses_split_constraints():
    # y = relu(x) - x on [-1, 1] is -x on x <= 0 and 0 above, min 0 at x >= 0; with the split x >= 0 the
    # first-layer unit is stable, so only the split multiplier can move the bound of the row x (a_x) to 0.
    net = nncert.Network([nncert.Dense(np.array([[1.0]]), np.array([0.0])), nncert.ReLU(),
                          nncert.Dense(np.array([[1.0]]), np.array([0.0]))])
    lo, hi = np.array([-1.0]), np.array([1.0])
    a_y, a_x = np.array([[0.0]]), np.array([[1.0]])
    plain = _core.output_bounds(net._core, lo, hi, a_y, a_x, splits=[(0, 0, True)])["lower"][0]
    opt = _core.output_bounds(net._core, lo, hi, a_y, a_x, opt_iters=80, splits=[(0, 0, True)])["lower"][0]
    assert plain == pytest.approx(-1.0)
    assert -0.05 < opt <= 1e-12


def test_verify_with_and_without_optimised_bounds_agree():
    net, *_ = random_chain(np.random.default_rng(8))
    prop = nncert.Property([(np.full(net.input_dim, -0.5), np.full(net.input_dim, 0.5))],
                           [(np.array([[1.0, -1.0]]), np.zeros((1, net.input_dim)), np.array([-50.0]))])
    a = nncert.verify(net, prop, timeout=10, split="relu", attack=False)
    b = nncert.verify(net, prop, timeout=10, split="relu", attack=False, bound_iters=0)
    assert a.status == b.status == "holds"
    with pytest.raises(nncert.errors.InvalidInputError, match="bound_iters"):
        nncert.verify(net, prop, timeout=1, bound_iters=-1)


def test_bad_splits_raise_typed_errors():
    net, *_ = random_chain(np.random.default_rng(1))
    n = net.input_dim
    args = (net._core, -np.ones(n), np.ones(n), np.ones((1, 2)), np.zeros((1, n)))
    with pytest.raises(nncert.errors.InvalidInputError, match="unit 999"):
        _core.output_bounds(*args, opt_iters=5, splits=[(0, 999, True)])
    with pytest.raises(nncert.errors.InvalidInputError, match="activation layer 7"):
        _core.output_bounds(*args, opt_iters=5, splits=[(7, 0, True)])
