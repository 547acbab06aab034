"""verify_region (DLV-style discretised search): exhaustive for the grid, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import nncert
from nncert.errors import InvalidInputError, ShapeError


def brute_force(net, x, eps, step, dims, label):
    k = int(np.floor(eps / step + 1e-9))
    bad = []
    for ks in itertools.product(range(-k, k + 1), repeat=len(dims)):
        p = x.copy()
        p[dims] += np.array(ks) * step
        y = net(p)
        if np.any(np.delete(y, label) >= y[label]):
            bad.append(p)
    return np.array(bad).reshape(-1, len(x))


@pytest.mark.parametrize("seed", range(6))
def test_grid_search_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    net = nncert.Network([nncert.Dense(rng.standard_normal((10, 3))), nncert.ReLU(),
                          nncert.Dense(rng.standard_normal((3, 10)))])
    x = rng.uniform(-0.5, 0.5, 3)
    label = int(np.argmax(net(x)))
    eps, step = 0.6, 0.05
    dims = [0, 2]
    r = nncert.verify_region(net, x, eps, step, dims=dims, find="all")
    want = brute_force(net, x, eps, step, np.array(dims), label)
    assert r.n_grid == 25 * 25 and r.label == label
    got = {tuple(np.round(p, 9)) for p in r.points}
    assert got == {tuple(np.round(p, 9)) for p in want}
    assert r.status == ("misclassified" if len(want) else "robust")
    assert r.n_evaluated + r.n_pruned <= r.n_grid


def test_pruning_skips_provably_safe_regions():
    net = nncert.Network([nncert.Dense(np.eye(2) * 3.0, [1.0, 0.0])])  # y0 - y1 = 3(x0 - x1) + 1
    r = nncert.verify_region(net, np.array([0.5, 0.2]), 0.1, 0.001, find="all")
    assert r.status == "robust" and r.n_grid == 201 * 201
    assert r.n_pruned == r.n_grid and r.n_evaluated == 0


def test_first_stops_early_and_points_replay():
    net = nncert.Network([nncert.Dense(np.eye(2))])
    x = np.array([0.5, 0.45])
    r = nncert.verify_region(net, x, 0.2, 0.01, find="first")
    assert r.status == "misclassified" and len(r.points) >= 1
    for p in r.points:
        assert net(p)[1] >= net(p)[0] and np.all(np.abs(p - x) <= 0.2 + 1e-12)


def test_region_bad_inputs():
    net = nncert.Network([nncert.Dense(np.eye(2))])
    with pytest.raises(InvalidInputError):
        nncert.verify_region(net, np.zeros(2), 0.1, 0.0)
    with pytest.raises(InvalidInputError):
        nncert.verify_region(net, np.zeros(2), 0.1, 0.01, dims=[5])
    with pytest.raises(ShapeError):
        nncert.verify_region(net, np.zeros(3), 0.1, 0.01)
    with pytest.raises(InvalidInputError, match="two outputs"):
        nncert.verify_region(nncert.Network([nncert.Dense(np.ones((1, 2)))]), np.zeros(2), 0.1, 0.01)
