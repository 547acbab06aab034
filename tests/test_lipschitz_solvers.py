"""The chain SDP's own solvers against cvxpy + CLARABEL (an independent formulation and interior-point solver):
nncert's barrier interior-point method (solver="IPM", the default for chains of grouped layers) and the direct
SCS problem data (solver="SCS", no cvxpy)."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert.errors import SolverError, UnsupportedModelError

from conftest import data_path
from test_lipschitz_invariants import random_net


def clarabel(net, **kw):
    return nncert.lipschitz(net, solver="CLARABEL", lower_bound_starts=1, lower_bound_steps=0, **kw)


def ours(net, solver, **kw):
    return nncert.lipschitz(net, solver=solver, lower_bound_starts=1, lower_bound_steps=0, **kw)


def test_ipm_is_the_default_for_grouped_chains_and_matches_clarabel_on_2fc_16():
    net = nncert.Network.from_npz(data_path("lipschitz", "maxmin_l2trained_2fc_16.npz"), activation="maxmin")
    r = nncert.lipschitz(net, method="nsr")
    assert r.solver == "IPM" and r.details["backend"] == "ipm" and r.certified
    # strictly feasible iterates: the certificate accepts them as they are
    assert not r.details["repaired"]
    ref = clarabel(net, method="nsr")
    assert r.bound == pytest.approx(ref.bound, rel=1e-6)
    assert r.bound == pytest.approx(22.5944, rel=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_ipm_matches_clarabel_on_random_grouped_networks(seed):
    net = random_net(100 + seed, "grouped")
    gamma = seed % 3 != 0
    a = ours(net, "IPM", method="nsr", gamma=gamma)
    b = clarabel(net, method="nsr", gamma=gamma)
    assert a.certified and b.certified
    assert a.bound == pytest.approx(b.bound, rel=1e-5)
    k = seed % net.output_dim
    a = ours(net, "IPM", method="nsr", norm="inf", output=k)
    b = clarabel(net, method="nsr", norm="inf", output=k)
    assert a.certified and a.bound == pytest.approx(b.bound, rel=1e-5)


def test_ipm_rejects_chains_it_does_not_handle(rng):
    net = nncert.Network([nncert.Dense(rng.standard_normal((4, 3))), nncert.ReLU(), nncert.Dense(np.ones((1, 4)))])
    with pytest.raises(UnsupportedModelError, match="IPM"):
        nncert.lipschitz(net, method="lipsdp-neuron", solver="IPM")
    assert nncert.lipschitz(net, method="lipsdp-neuron").solver == "SCS"  # the default where IPM does not apply


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("family", ["sector", "grouped"])
def test_direct_scs_matches_clarabel(seed, family):
    net = random_net(200 + seed, family, residual=seed % 2 == 1)
    method = "lipsdp-neuron" if family == "sector" else "nsr"
    a = ours(net, "SCS", method=method)
    b = clarabel(net, method=method)
    assert a.details["backend"] == "scs-direct" and a.certified
    # SCS runs at a loose tolerance; the certificate keeps the bound sound, tightness within 1e-3
    assert b.bound * (1 - 1e-6) <= a.bound * (1 + 1e-3) and a.bound <= b.bound * (1 + 1e-3)
    if family == "sector":
        a = ours(net, "SCS", method="lipsdp-layer", norm="inf", output=0)
        b = clarabel(net, method="lipsdp-layer", norm="inf", output=0)
        assert a.certified and a.bound == pytest.approx(b.bound, rel=1e-3)


def test_direct_scs_linear_stage(rng):
    # two Dense layers in a row: a linear stage with a free interface multiplier
    net = nncert.Network([nncert.Dense(rng.standard_normal((4, 3))), nncert.Dense(rng.standard_normal((4, 4))),
                          nncert.ReLU(), nncert.Dense(rng.standard_normal((2, 4)))])
    a = ours(net, "SCS", method="lipsdp-neuron")
    b = clarabel(net, method="lipsdp-neuron")
    assert a.certified and a.bound == pytest.approx(b.bound, rel=1e-3)


def test_cvxpy_backend_still_available_for_scs():
    net = nncert.Network.from_npz(data_path("lipschitz", "maxmin_l2trained_2fc_16.npz"), activation="maxmin")
    r = ours(net, "SCS", method="nsr", solver_options={"backend": "cvxpy"})
    assert "backend" not in r.details and r.certified and r.bound == pytest.approx(22.5944, rel=1e-4)
    with pytest.raises(nncert.errors.InvalidInputError):
        ours(net, "CLARABEL", method="nsr", solver_options={"backend": "direct"})
    with pytest.raises(nncert.errors.InvalidInputError):
        ours(net, "IPM", method="nsr", solver_options={"eps_abs": 1e-3})


def test_direct_scs_failure_is_an_error(monkeypatch):
    import scs

    net = nncert.Network([nncert.Dense(np.eye(2)), nncert.ReLU(), nncert.Dense(np.eye(2))])
    monkeypatch.setattr(scs, "solve", lambda *a, **k: {"x": None, "info": {"status": "infeasible"}})
    with pytest.raises(SolverError, match="infeasible"):
        nncert.lipschitz(net, method="lipsdp-neuron", solver="SCS")
