"""Invariants of nncert.lipschitz on 100+ random small networks (kept tiny so each SDP takes milliseconds)."""

from __future__ import annotations

import numpy as np
import pytest

import nncert

TOL = 1e-5  # relative slack between two certified, near-optimal SDP bounds


def random_net(seed: int, family: str, residual: bool = False) -> nncert.Network:
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(1, 3))
    n_in = int(rng.integers(1, 4))
    width = int(rng.choice([2, 4, 6])) if family == "grouped" else int(rng.integers(2, 6))
    if family == "grouped" and rng.random() < 0.3:
        width = 6
    def act():
        if family == "sector":
            return [nncert.ReLU(), nncert.LeakyReLU(0.1), nncert.Tanh(), nncert.Sigmoid()][int(rng.integers(0, 4))]
        choices = [nncert.MaxMin(), nncert.MaxMin("halves"), nncert.Householder(float(rng.uniform(0, 6)))]
        if width % 3 == 0:
            choices.append(nncert.GroupSort(3))
        return choices[int(rng.integers(0, len(choices)))]
    layers, d = [], n_in
    for _ in range(depth):
        layers += [nncert.Dense(rng.standard_normal((width, d)), rng.standard_normal(width)), act()]
        d = width
    if residual:
        layers.append(nncert.Residual([nncert.Dense(0.5 * rng.standard_normal((d, d))), act()]))
    layers.append(nncert.Dense(rng.standard_normal((int(rng.integers(1, 3)), d))))
    return nncert.Network(layers)


@pytest.mark.parametrize("seed", range(40))
def test_sector_networks_neuron_le_layer_le_naive(seed):
    net = random_net(seed, "sector", residual=seed % 4 == 0)
    neuron = nncert.lipschitz(net, method="lipsdp-neuron")
    layer = nncert.lipschitz(net, method="lipsdp-layer")
    assert neuron.certified and layer.certified
    assert neuron.bound <= layer.bound * (1 + TOL)
    if seed % 4:  # naive's 1 + ||f|| residual rule is not comparable to the SDP term by term
        assert layer.bound <= layer.naive_bound * (1 + TOL)
    assert neuron.lower_bound <= neuron.bound


@pytest.mark.parametrize("seed", range(40))
def test_grouped_networks_nsr_le_naive_and_gamma_helps(seed):
    net = random_net(1000 + seed, "grouped", residual=seed % 4 == 0)
    nsr = nncert.lipschitz(net, method="nsr")
    no_gamma = nncert.lipschitz(net, method="nsr", gamma=False)
    assert nsr.certified and no_gamma.certified
    if seed % 4:
        assert nsr.bound <= nsr.naive_bound * (1 + TOL)
    assert nsr.bound <= no_gamma.bound * (1 + TOL)  # dropping gamma never tightens
    assert nsr.lower_bound <= nsr.bound


@pytest.mark.parametrize("seed", range(20))
def test_scaling_weights_scales_the_bound(seed):
    family = "grouped" if seed % 2 else "sector"
    net = random_net(2000 + seed, family)
    rng = np.random.default_rng(seed)
    if family == "sector":  # positive homogeneity needs ReLU / LeakyReLU / MaxMin ...
        net = nncert.Network([l if isinstance(l, nncert.Dense) else nncert.ReLU() for l in net.layers])
    cs = rng.uniform(0.2, 5.0, size=len(net.dense_layers()))
    it = iter(cs)
    scaled = nncert.Network([nncert.Dense(next(it) * l.W, l.b) if isinstance(l, nncert.Dense) else l
                             for l in net.layers])
    method = "nsr" if family == "grouped" else "lipsdp-neuron"
    # the interior-point solver: an exact comparison needs the optimum, not SCS's first-order accuracy
    a = nncert.lipschitz(net, method=method, solver="CLARABEL").bound
    b = nncert.lipschitz(scaled, method=method, solver="CLARABEL").bound
    assert b == pytest.approx(a * np.prod(cs), rel=1e-4)


@pytest.mark.parametrize("seed", range(10))
def test_linf_scalar_bounds(seed):
    net = random_net(3000 + seed, "grouped" if seed % 2 else "sector")
    r = nncert.lipschitz(net, norm="inf", output=0)
    assert r.certified and r.lower_bound <= r.bound <= r.naive_bound * (1 + TOL)
