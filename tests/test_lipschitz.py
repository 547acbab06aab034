"""nncert.lipschitz: exact cases, published values, the certificate, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert import _core
from nncert.errors import InvalidInputError, ShapeError, SolverError, UnsupportedModelError

from conftest import data_path


def orth(rng, n):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return q


# ---------------------------------------------------------------- exact cases
@pytest.mark.parametrize("method", ["naive", "lipsdp-neuron", "lipsdp-layer", "nsr"])
def test_single_dense_l2_is_spectral_norm(rng, method):
    W = rng.standard_normal((3, 5))
    r = nncert.lipschitz(nncert.Network([nncert.Dense(W, rng.standard_normal(3))]), method=method)
    s = np.linalg.svd(W, compute_uv=False)[0]
    assert r.certified
    assert s <= r.bound <= s * (1 + 1e-6)
    assert r.lower_bound == pytest.approx(s, rel=1e-12)


def test_single_dense_linf_is_row_l1_norm(rng):
    W = rng.standard_normal((3, 5))
    net = nncert.Network([nncert.Dense(W)])
    for k in range(3):
        r = nncert.lipschitz(net, norm="inf", output=k, method="nsr")
        l1 = np.abs(W[k]).sum()
        assert r.certified and l1 <= r.bound <= l1 * (1 + 1e-5)
        assert nncert.lipschitz(net, norm="inf", output=k, method="naive").bound == pytest.approx(l1, rel=1e-12)


def test_maxmin_with_orthogonal_weights_is_one(rng):
    layers = []
    for _ in range(3):
        layers += [nncert.Dense(orth(rng, 6)), nncert.MaxMin()]
    net = nncert.Network(layers + [nncert.Dense(orth(rng, 6))])
    r = nncert.lipschitz(net, method="nsr")
    assert r.certified and 1.0 <= r.bound <= 1 + 1e-6
    assert r.lower_bound == pytest.approx(1.0, rel=1e-9)
    assert nncert.lipschitz(net, method="auto").method == "nsr"


def test_groupsort_and_householder_orthogonal_are_one(rng):
    for act in (nncert.GroupSort(3), nncert.GroupSort(2, pairing="halves"), nncert.Householder(0.7)):
        net = nncert.Network([nncert.Dense(orth(rng, 6)), act, nncert.Dense(orth(rng, 6))])
        r = nncert.lipschitz(net, method="nsr")
        assert r.certified and 1.0 - 1e-9 <= r.bound <= 1 + 1e-6, (act, r)


def test_relu_rewrite_of_maxmin_is_looser_under_lipsdp(rng):
    # MaxMin(z) = P z + u relu(v^T z); written with ReLU units (identity passes as relu(s) - relu(-s)).
    q = orth(rng, 2)
    maxmin = nncert.Network([nncert.Dense(q), nncert.MaxMin()])
    P, u, v = np.array([[0, 1], [1, 0.0]]), np.array([1, -1.0]), np.array([1, -1.0])
    A = np.vstack([P @ q, -P @ q, (v @ q)[None]])
    B = np.hstack([np.eye(2), -np.eye(2), u[:, None]])
    relu = nncert.Network([nncert.Dense(A), nncert.ReLU(), nncert.Dense(B)])
    x = rng.standard_normal((20, 2))
    np.testing.assert_allclose(maxmin(x), relu(x), atol=1e-12)
    nsr = nncert.lipschitz(maxmin, method="nsr")
    neuron = nncert.lipschitz(relu, method="lipsdp-neuron")
    assert nsr.bound == pytest.approx(1.0, rel=1e-6)
    assert neuron.bound == pytest.approx(2.0, rel=1e-4)  # the constraint family cannot see the MaxMin structure


def test_residual_relu_rewrite_of_maxmin(rng):
    # MaxMin(z) = z + u relu(w^T z), w = (-1, 1), u = (1, -1): a residual block x + G act(W x). Here LipSDP-Neuron
    # is exact: ||dz + u dphi||^2 = ||dz||^2 - 2 dphi (dv - dphi) <= ||dz||^2 by the sector constraint (t = 2).
    q = orth(rng, 2)
    maxmin = nncert.Network([nncert.Dense(q), nncert.MaxMin()])
    res = nncert.Network([nncert.Dense(q), nncert.Residual([nncert.Dense(np.array([[-1.0, 1.0]])), nncert.ReLU(),
                                                            nncert.Dense(np.array([[1.0], [-1.0]]))])])
    x = rng.standard_normal((20, 2))
    np.testing.assert_allclose(maxmin(x), res(x), atol=1e-12)
    r = nncert.lipschitz(res, method="lipsdp-neuron")
    assert r.certified and 1.0 <= r.bound <= 1 + 1e-6
    assert r.naive_bound == pytest.approx(3.0)


def test_residual_relu_rewrite_with_skip_gives_sqrt2_under_lipsdp_but_nsr_gives_one(rng):
    # The exact case of Pauli et al. (ICLR 2024): max(a, b) = a + relu(b - a), min(a, b) = a - relu(a - b), i.e.
    # y = S x + G relu(W x) with a non-identity skip S. LipSDP-Neuron on this rewrite gives sqrt(2); LipSDP-NSR on
    # the MaxMin form gives the true constant 1.
    S = np.array([[1.0, 0.0], [1.0, 0.0]])
    W = np.array([[-1.0, 1.0], [1.0, -1.0]])
    G = np.array([[1.0, 0.0], [0.0, -1.0]])
    res = nncert.Network([nncert.Residual([nncert.Dense(W), nncert.ReLU(), nncert.Dense(G)], skip=S)])
    maxmin = nncert.Network([nncert.MaxMin()], input_dim=2)
    x = rng.standard_normal((50, 2))
    np.testing.assert_allclose(res(x), np.stack([x.max(1), x.min(1)], axis=1), atol=1e-12)
    np.testing.assert_allclose(maxmin(x), res(x), atol=1e-12)
    for solver in (None, "CLARABEL"):
        r = nncert.lipschitz(res, method="lipsdp-neuron", solver=solver)
        assert r.certified and np.sqrt(2) <= r.bound <= np.sqrt(2) * (1 + 1e-5), (solver, r.bound)
        assert r.lower_bound == pytest.approx(1.0, rel=1e-9)
    assert nncert.lipschitz(res, method="auto").method == "lipsdp-neuron"
    n = nncert.lipschitz(maxmin, method="nsr")
    assert n.certified and 1.0 <= n.bound <= 1 + 1e-6


def test_sum_through_maxmin_linf_is_two():
    net = nncert.Network([nncert.Dense(np.eye(2)), nncert.MaxMin(), nncert.Dense(np.ones((1, 2)))])
    r = nncert.lipschitz(net, norm="inf", output=0, method="nsr")
    assert r.certified and 2.0 <= r.bound <= 2.0 * (1 + 1e-5)
    assert r.lower_bound == pytest.approx(2.0)


def test_output_vector_equals_output_row(rng):
    net = nncert.network.sequential([3, 6, 4], nncert.ReLU, seed=3)
    a = nncert.lipschitz(net, output=2, method="lipsdp-neuron").bound
    b = nncert.lipschitz(net, output=np.eye(4)[2], method="lipsdp-neuron").bound
    assert a == pytest.approx(b, rel=1e-5)
    import torch
    c = nncert.lipschitz(net, output=torch.tensor(np.eye(4)[2]), method="lipsdp-neuron").bound
    assert c == pytest.approx(a, rel=1e-5)


def test_residual_maxmin_exact_and_below_naive(rng):
    n = 4
    net = nncert.Network([nncert.Dense(rng.standard_normal((n, 3))),
                          nncert.Residual([nncert.Dense(0.3 * rng.standard_normal((n, n))), nncert.MaxMin()]),
                          nncert.Residual([nncert.Dense(0.3 * rng.standard_normal((n, n))), nncert.MaxMin()]),
                          nncert.Dense(rng.standard_normal((2, n)))])
    r = nncert.lipschitz(net, method="nsr")
    assert r.certified and r.lower_bound <= r.bound <= r.naive_bound
    assert r.bound < 0.999 * r.naive_bound


def test_mixed_network(rng):
    net = nncert.Network([nncert.Dense(rng.standard_normal((4, 3))), nncert.ReLU(),
                          nncert.Dense(rng.standard_normal((4, 4))), nncert.MaxMin(),
                          nncert.Dense(rng.standard_normal((4, 4))), nncert.Tanh(),
                          nncert.Dense(rng.standard_normal((2, 4)))])
    r = nncert.lipschitz(net)
    assert r.method == "nsr" and r.certified and r.lower_bound <= r.bound <= r.naive_bound


# ---------------------------------------------------------------- published values
@pytest.mark.parametrize("method,value", [("lipsdp-neuron", 36.482), ("lipsdp-layer", 39.839)])
def test_relu_random_weights_published(method, value):
    net = nncert.Network.from_npz(data_path("lipschitz", "relu_random_weights.npz"), activation="relu")
    r = nncert.lipschitz(net, method=method)
    assert r.certified
    assert r.bound == pytest.approx(value, rel=1e-3)
    assert r.lower_bound <= r.bound <= r.naive_bound


def test_maxmin_2fc_16_published():
    net = nncert.Network.from_npz(data_path("lipschitz", "maxmin_l2trained_2fc_16.npz"), activation="maxmin")
    r = nncert.lipschitz(net, method="nsr")
    assert r.certified and r.details["rowspace_restricted"]
    assert r.bound == pytest.approx(22.594, rel=1e-3)
    assert r.lower_bound <= r.bound


# ---------------------------------------------------------------- the certificate
def test_certificate_repairs_bad_multipliers(rng):
    W = rng.standard_normal((3, 4))
    net = nncert.Network([nncert.Dense(W)])
    s = np.linalg.svd(W, compute_uv=False)[0]
    cert = _core.lipschitz_certify(net._core, "2", 0.0, [])
    assert cert["certified"] and cert["repaired"]
    assert s <= cert["bound"] <= s * (1 + 1e-6)
    assert cert["lmis"][0]["min_eig_before"] < 0 <= cert["lmis"][0]["margin"] <= cert["lmis"][0]["min_eig_after"]
    unrepaired = _core.lipschitz_certify(net._core, "2", 0.0, [], repair=False)
    assert not unrepaired["certified"]


def test_certificate_never_below_truth_with_perturbed_multipliers(rng):
    net = nncert.Network([nncert.Dense(orth(rng, 4)), nncert.MaxMin(), nncert.Dense(orth(rng, 4))])
    # exact optimum: rho = 1 (in rescaled units), lambda = 1, gamma = 0; perturb it downwards
    for eps in (1e-3, 1e-7, 1e-12):
        mults = [{"t": np.full(2, 1.0 - eps), "gamma": rng.standard_normal(2) * eps}]
        cert = _core.lipschitz_certify(net._core, "2", 1.0 - eps, mults)
        assert cert["certified"] and cert["bound"] >= 1.0


def test_certificate_rejects_nonfinite_multipliers():
    net = nncert.Network([nncert.Dense(np.eye(2)), nncert.ReLU(), nncert.Dense(np.eye(2))])
    with pytest.raises(SolverError):
        _core.lipschitz_certify(net._core, "2", 1.0, [{"t": np.array([np.nan, 1.0]), "X": np.eye(2)}])
    with pytest.raises(ShapeError):
        _core.lipschitz_certify(net._core, "2", 1.0, [{"t": np.ones(3), "X": np.eye(2)}])


# ---------------------------------------------------------------- bad input
def test_lipsdp_rejects_grouped_activations(rng):
    net = nncert.Network([nncert.Dense(rng.standard_normal((4, 3))), nncert.MaxMin(), nncert.Dense(np.ones((1, 4)))])
    for m in ("lipsdp-neuron", "lipsdp-layer"):
        with pytest.raises(UnsupportedModelError, match="nsr"):
            nncert.lipschitz(net, method=m)


def test_unsupported_residual_block(rng):
    net = nncert.Network([nncert.Dense(rng.standard_normal((4, 3))),
                          nncert.Residual([nncert.Dense(np.eye(4)), nncert.ReLU(), nncert.Dense(np.eye(4)),
                                           nncert.ReLU()])])
    with pytest.raises(UnsupportedModelError, match="Residual"):
        nncert.lipschitz(net, method="nsr")
    r = nncert.lipschitz(net)  # auto falls back to the naive bound and says why
    assert r.method == "naive" and "Residual" in r.details["auto_reason"] and r.certified
    # naive: ||W0|| * (1 + ||I|| ||I||)
    assert r.bound == pytest.approx(2 * np.linalg.svd(net.layers[0].W, compute_uv=False)[0], rel=1e-9)


def test_bad_arguments(rng):
    net = nncert.Network([nncert.Dense(rng.standard_normal((2, 3))), nncert.ReLU(), nncert.Dense(np.ones((2, 2)))])
    with pytest.raises(InvalidInputError):
        nncert.lipschitz(net, norm=1)
    with pytest.raises(InvalidInputError):
        nncert.lipschitz(net, method="lipsdp-network")
    with pytest.raises(InvalidInputError):
        nncert.lipschitz(net, solver="NOPE")
    with pytest.raises(ShapeError):
        nncert.lipschitz(net, output=5)
    with pytest.raises(ShapeError):
        nncert.lipschitz(net, output=np.ones(3))
    with pytest.raises(InvalidInputError):
        nncert.lipschitz(net, output=np.array([np.inf, 1.0]))
    with pytest.raises(UnsupportedModelError, match="scalar output"):
        nncert.lipschitz(net, norm="inf", method="lipsdp-neuron")
    assert nncert.lipschitz(net, norm="inf").method == "naive"
    with pytest.raises(InvalidInputError):
        nncert.lipschitz("not a network")
    with pytest.raises(InvalidInputError):
        nncert.lipschitz(net, method="lipsdp-neuron", time_limit=0)
    r = nncert.lipschitz(net, method="lipsdp-neuron", time_limit=30)
    assert r.certified and r.lower_bound <= r.bound
    with pytest.raises(InvalidInputError):
        nncert.Network([nncert.Dense(np.array([[np.nan, 1.0]]))])


def test_solver_failure_is_an_error(monkeypatch):
    import cvxpy as cp

    net = nncert.Network([nncert.Dense(np.eye(2)), nncert.ReLU(), nncert.Dense(np.eye(2))])

    def fake_solve(self, *a, **k):
        self._status = "infeasible"
        return np.inf

    monkeypatch.setattr(cp.Problem, "solve", fake_solve)
    monkeypatch.setattr(cp.Problem, "status", property(lambda self: getattr(self, "_status", None)))
    with pytest.raises(SolverError, match="infeasible"):
        nncert.lipschitz(net, method="lipsdp-neuron", solver="CLARABEL")  # the cvxpy path (SCS: direct, no cvxpy)


def test_cli_lipschitz(capsys):
    import json

    from nncert.cli import main

    path = str(data_path("lipschitz", "maxmin_l2trained_2fc_16.npz"))
    assert main(["lipschitz", path, "--activation", "maxmin", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "nsr" and out["certified"] and out["bound"] == pytest.approx(22.594, rel=1e-3)
    assert main(["lipschitz", path, "--activation", "maxmin", "--method", "naive", "--norm", "inf"]) == 0
    assert "naive" in capsys.readouterr().out
    assert main(["lipschitz", path, "--activation", "maxmin", "--method", "lipsdp-neuron"]) == 1


def test_certify_false_reports_the_solver_bound_uncertified():
    net = nncert.Network.from_npz(data_path("lipschitz", "relu_random_weights.npz"), activation="relu")
    r = nncert.lipschitz(net, method="lipsdp-layer", certify=False)
    assert not r.certified and r.bound == pytest.approx(39.839, rel=1e-3)
    assert r.details["solver_bound"] == r.bound


@pytest.mark.slow
def test_maxmin_residual_benchmark_network():
    net = nncert.Network.from_npz(data_path("lipschitz", "maxmin_residual_5_32.npz"), activation="maxmin",
                                  residual=True)
    r = nncert.lipschitz(net, method="nsr", solver="CLARABEL")
    assert r.certified and r.lower_bound <= r.bound < r.naive_bound
    assert r.bound == pytest.approx(23.175, rel=1e-3)  # our measurement (CLARABEL), not a published value
