"""method="nsr-full": the block-tridiagonal LipSDP-NSR LMI with the S and P multipliers. Checked against the
decoupled chain (method="nsr", cvxpy + CLARABEL), the sampled lower bound, the quadratic constraints on random
input pairs, and the Rust certificate's repair of perturbed multipliers."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert import _core
from nncert.errors import InvalidInputError, UnsupportedModelError
from nncert.lipschitz import sdp_full

from conftest import data_path


def grouped_net(seed: int, householder: bool = False) -> nncert.Network:
    rng = np.random.default_rng(seed)
    n_in, width, depth = int(rng.integers(2, 5)), int(rng.choice([4, 6])), int(rng.integers(1, 3))
    layers, d = [], n_in
    for k in range(depth):
        acts = [nncert.MaxMin(), nncert.MaxMin("halves")] + ([nncert.GroupSort(3)] if width % 3 == 0 else [])
        act = nncert.Householder(float(rng.uniform(0, 6))) if householder and k == 0 else acts[int(rng.integers(0, len(acts)))]
        layers += [nncert.Dense(rng.standard_normal((width, d)), rng.standard_normal(width)), act]
        d = width
    layers.append(nncert.Dense(rng.standard_normal((int(rng.integers(1, 3)), d))))
    return nncert.Network(layers)


def run(net, method, **kw):
    return nncert.lipschitz(net, method=method, solver="CLARABEL", lower_bound_starts=4, lower_bound_steps=30, **kw)


@pytest.mark.parametrize("layer", [nncert.MaxMin(), nncert.MaxMin("halves"), nncert.GroupSort(3)])
def test_quadratic_constraints_hold_on_random_pairs(layer):
    """Each QC term of sdp_full's docstring, evaluated on the layer's own outputs: lambda term >= 0, the sum
    of every group kept (so the S / P and gamma terms vanish)."""
    rng = np.random.default_rng(0)
    m = 6
    net = nncert.Network([nncert.Dense(np.eye(m)), layer])
    ch = _core.lipschitz_chain(net._core, None)
    groups = ch["stages"][0]["groups"]
    S, P = rng.standard_normal((m, len(groups))), rng.standard_normal((m, len(groups)))
    for _ in range(200):
        w, w2 = rng.standard_normal(m) * 3, rng.standard_normal(m) * 3
        if rng.random() < 0.3:  # near ties, where the sort order changes
            w2 = w + 1e-3 * rng.standard_normal(m)
        v, v2 = net(w[None])[0], net(w2[None])[0]
        dw, dv = w - w2, v - v2
        ell = np.array([dv[g].sum() - dw[g].sum() for g in groups])
        assert np.abs(ell).max() <= 1e-12 * (1 + np.abs(dw).sum())
        for g in groups:
            assert dw[g] @ dw[g] - dv[g] @ dv[g] >= -1e-12
            assert abs(dw[g].sum() ** 2 - dv[g].sum() ** 2) <= 1e-10 * (1 + dw[g] @ dw[g])
        assert abs(2 * ell @ (S.T @ dw + P.T @ dv)) <= 1e-10 * (1 + dw @ dw)


def test_2fc_16_full_is_tighter_than_the_chain_and_certified():
    net = nncert.Network.from_npz(data_path("lipschitz", "maxmin_l2trained_2fc_16.npz"), activation="maxmin")
    full = run(net, "nsr-full")
    assert full.certified and full.method == "nsr-full" and full.solver == "CLARABEL"
    assert full.lower_bound <= full.bound <= 22.5944 * (1 + 1e-5)
    assert full.bound < 22.5944 * 0.99  # the S / P coupling helps on this network (22.07)
    assert full.details["lmis"][0]["min_eig_after"] >= full.details["lmis"][0]["margin"]
    # the Rust matrix is the cvxpy one: the solver's multipliers need at most a tiny repair
    assert full.bound == pytest.approx(full.details["solver_bound"], rel=1e-4)
    # S = P = 0 gives back the chain's optimum
    ch = _core.lipschitz_chain(net._core, None)
    rho, *_ = sdp_full.solve(ch, "2", "CLARABEL", use_sp=False)
    assert np.sqrt(rho) * ch["scale"] == pytest.approx(22.5944, rel=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_random_grouped_nets_full_le_chain(seed):
    net = grouped_net(seed, householder=seed % 4 == 3)
    chain = run(net, "nsr")
    full = run(net, "nsr-full")
    assert full.certified and chain.certified
    assert full.lower_bound * (1 - 1e-9) <= full.bound <= chain.bound * (1 + 1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_linf_scalar_output_full_le_chain(seed):
    net = grouped_net(20 + seed)
    chain = run(net, "nsr", norm="inf", output=0)
    full = run(net, "nsr-full", norm="inf", output=0)
    assert full.certified and full.norm == "inf"
    assert full.lower_bound * (1 - 1e-9) <= full.bound <= chain.bound * (1 + 1e-5)


def test_perturbed_multipliers_are_repaired_into_a_valid_bound():
    net = grouped_net(3)
    ch = _core.lipschitz_chain(net._core, None)
    rho, d, mults, Ss, Ps, _, _ = sdp_full.solve(ch, "2", "CLARABEL")
    opt = np.sqrt(rho) * ch["scale"]
    rng = np.random.default_rng(1)
    bad = [{"t": m["t"] * 0.7, "gamma": m["gamma"] + 0.1} for m in mults]
    Sb = [s + 0.2 * rng.standard_normal(s.shape) for s in Ss]
    Pb = [p - 0.2 * rng.standard_normal(p.shape) for p in Ps]
    raw = _core.lipschitz_certify_full(net._core, "2", 0.8 * rho, bad, Sb, Pb, None, None, False)
    assert not raw["certified"] and raw["lmis"][0]["min_eig_before"] < 0
    cert = _core.lipschitz_certify_full(net._core, "2", 0.8 * rho, bad, Sb, Pb, None, None, True)
    assert cert["certified"] and cert["repaired"]
    assert cert["lmis"][0]["min_eig_after"] >= cert["lmis"][0]["margin"]
    assert cert["bound"] >= opt * (1 - 1e-6)  # never below the SDP optimum
    lower, _ = _core.lipschitz_lower(net._core, "2", None, 8, 50, 0)
    assert cert["bound"] >= lower


def test_rejects_what_it_does_not_handle():
    res = nncert.Network([nncert.Dense(np.eye(2)), nncert.MaxMin(),
                          nncert.Residual([nncert.Dense(0.5 * np.eye(2)), nncert.MaxMin()]), nncert.Dense(np.ones((1, 2)))])
    with pytest.raises(UnsupportedModelError):
        nncert.lipschitz(res, method="nsr-full")
    relu = nncert.Network([nncert.Dense(np.eye(2)), nncert.ReLU(), nncert.Dense(np.ones((1, 2)))])
    with pytest.raises(UnsupportedModelError):
        nncert.lipschitz(relu, method="nsr-full")
    with pytest.raises(InvalidInputError):
        nncert.lipschitz(grouped_net(0), method="nsr-full", solver="IPM")
    net = grouped_net(0)
    ch = _core.lipschitz_chain(net._core, None)
    with pytest.raises(nncert.errors.ShapeError):
        _core.lipschitz_certify_full(net._core, "2", 1.0, [{"t": np.ones(1), "gamma": np.zeros(1)}], [], [])
