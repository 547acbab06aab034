"""ConvexReLU solvers 'scp' (sampled convex program) and 'admm-approx' against cvxpy versions of their own
formulations, and the SCP's place relative to the cone-constrained program."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import nncert
from nncert.convex import formulation as F
from nncert.convex.patterns import sample_gates

logging.getLogger("nncert.convex").setLevel(logging.ERROR)
cp = pytest.importorskip("cvxpy")


def data(seed, n=30, d=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(X @ rng.standard_normal(d)) + 0.1 * rng.standard_normal(n)
    return X, y


def scp_reference(Xa, y, H, beta, loss):
    """The SCP's own formulation in cvxpy: min loss((X H)_+ a, y) + beta ||a||_1 (Clarabel)."""
    A = np.maximum(Xa @ H, 0.0)
    a = cp.Variable(H.shape[1])
    f = A @ a
    data_term = {"squared": lambda: 0.5 * cp.sum_squares(f - y),
                 "logistic": lambda: cp.sum(cp.logistic(-cp.multiply(y, f))),
                 "hinge": lambda: cp.sum(cp.pos(1 - cp.multiply(y, f)))}[loss]()
    prob = cp.Problem(cp.Minimize(data_term + beta * cp.norm1(a)))
    prob.solve(solver="CLARABEL")
    return prob.value


@pytest.mark.parametrize("seed,n,d,loss", [(0, 30, 4, "squared"), (1, 40, 5, "squared"), (2, 20, 2, "squared"),
                                           (3, 30, 3, "logistic"), (4, 30, 3, "hinge")])
def test_scp_matches_cvxpy_of_its_formulation(seed, n, d, loss):
    X, y = data(seed, n, d)
    if loss != "squared":
        y = np.where(y > 0, 1, -1)
    m = nncert.ConvexReLU(solver="scp", n_patterns=15, beta=0.05, loss=loss, tol=1e-10, max_iter=100000,
                          random_state=seed).fit(X, y)
    Xa = np.hstack([X, np.ones((n, 1))])
    H = sample_gates(d + 1, 15, seed)
    yt = y if loss == "squared" else y.astype(float)
    ref = scp_reference(Xa, yt, H, 0.05, loss)
    assert m.status_ == "converged"
    assert m.objective_ == pytest.approx(ref, rel=1e-6)
    # every neuron is a multiple of its sampled direction, so the cone constraints hold exactly
    assert m.constraint_violation_ <= 1e-12 * max(1.0, np.abs(m.V_).max())
    np.testing.assert_allclose(m.patterns_, (Xa @ H >= 0).astype(float))
    # the network it builds realises the objective
    assert m.network_objective_ == pytest.approx(m.objective_, rel=1e-9)


def test_scp_never_below_the_cone_program_with_its_patterns():
    X, y = data(5, 35, 3)
    m = nncert.ConvexReLU(solver="scp", n_patterns=10, beta=0.05, tol=1e-10, max_iter=100000).fit(X, y)
    ref = nncert.ConvexReLU(solver="cvxpy", patterns=m.patterns_, beta=0.05).fit(X, y)
    assert m.objective_ >= ref.objective_ * (1 - 1e-6)
    # and strictly above it here (the SCP fixes each neuron's direction)
    assert m.objective_ > ref.objective_ * (1 + 1e-4)


def test_scp_large_beta_gives_zero_network_and_multiclass():
    X, y = data(6, 30, 3)
    m = nncert.ConvexReLU(solver="scp", n_patterns=8, beta=1e6).fit(X, y)
    assert np.all(m.V_ == 0) and np.all(m.W_ == 0)
    assert m.objective_ == pytest.approx(0.5 * np.sum(y ** 2), rel=1e-12)
    labels = np.digitize(y, [-0.5, 0.5])  # three classes
    c = nncert.ConvexReLU(solver="scp", n_patterns=8, beta=0.01, loss="squared").fit(X, labels)
    assert c.V_.shape[0] == 3 and set(np.unique(c.predict(X))) <= set(np.unique(labels))


def test_admm_approx_matches_cvxpy():
    X, y = data(7, 40, 5)
    ref = nncert.ConvexReLU(solver="cvxpy", n_patterns=12, beta=0.05).fit(X, y)
    m = nncert.ConvexReLU(solver="admm-approx", patterns=ref.patterns_, beta=0.05, tol=1e-10,
                          max_iter=40000).fit(X, y)
    assert m.u_solver_ == "woodbury"
    assert m.status_ == "converged"
    assert m.objective_ == pytest.approx(ref.objective_, rel=1e-6)
    assert m.constraint_violation_ < 1e-6 * max(1.0, np.abs(m.V_).max())


@pytest.mark.parametrize("kw,exc,match", [
    (dict(solver="scp", patterns=np.ones((30, 2))), nncert.UnsupportedModelError, "own hidden neurons"),
    (dict(solver="scp", adversarial_eps=0.1), nncert.UnsupportedModelError, "cvxpy"),
    (dict(solver="admm-approx", adversarial_eps=0.1), nncert.UnsupportedModelError, "cvxpy"),
    (dict(solver="scp", n_patterns=0), nncert.InvalidInputError, "n_patterns"),
])
def test_bad_input(kw, exc, match):
    X, y = data(8, 30, 3)
    with pytest.raises(exc, match=match):
        nncert.ConvexReLU(**kw).fit(X, y)


def test_cli_convex_fit_scp(tmp_path, capsys):
    import json

    from nncert.cli import main
    X, y = data(9, 30, 3)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert main(["convex-fit", str(tmp_path / "d.npz"), "--solver", "scp", "--patterns", "8", "--beta", "0.1",
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    ref = nncert.ConvexReLU(solver="scp", n_patterns=8, beta=0.1).fit(X, y)
    assert rep["objective"] == pytest.approx(ref.objective_, rel=1e-12)
    assert rep["constraint_violation"] == 0.0 or rep["constraint_violation"] < 1e-12
