"""ConvexReLU: ADMM against the cvxpy reference, exactness of to_network, invariants, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import nncert
from nncert.convex import formulation as F
from nncert.convex.patterns import sample_patterns

logging.getLogger("nncert.convex").setLevel(logging.ERROR)


def data(seed, n=30, d=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(X @ rng.standard_normal(d)) + 0.1 * rng.standard_normal(n)
    return X, y


def fit(X, y, **kw):
    base = dict(n_patterns=12, beta=0.05, max_iter=40000, tol=1e-10)
    base.update(kw)
    return nncert.ConvexReLU(**base).fit(X, y)


def network_objective(net, X, y, beta, loss="squared"):
    """The weight-decay objective of the two-layer ReLU network, computed from its layers."""
    d1, _, d2 = net.layers
    f = net(X)
    reg = 0.5 * beta * (np.sum(d1.W ** 2) + np.sum(d1.b ** 2) + np.sum(d2.W ** 2))
    if f.shape[1] == 1:
        f = f[:, 0]
    return F.loss_value(loss, f, y) + reg


@pytest.mark.parametrize("seed,n,d", [(0, 30, 4), (1, 40, 5), (2, 20, 2)])
def test_admm_matches_cvxpy_squared(seed, n, d):
    X, y = data(seed, n, d)
    ref = fit(X, y, solver="cvxpy")
    m = fit(X, y, patterns=ref.patterns_)
    assert m.status_ == "converged"
    assert m.objective_ == pytest.approx(ref.objective_, rel=1e-6)
    # Primal feasibility of the returned weights, relative to the size of X v.
    assert m.constraint_violation_ < 1e-6 * max(1.0, np.abs(m.V_).max())
    assert ref.constraint_violation_ < 1e-6
    # history_ records the objective and residuals at each convergence check (every check_every = 10 iterations by
    # default, and at the last one); the last objective is the fitted one.
    assert m.history_["iter"][-1] == m.n_iter_
    assert np.all(np.diff(m.history_["iter"]) > 0) and np.all(m.history_["iter"][:-1] % 5 == 0)
    assert m.history_["objective"][-1] == pytest.approx(m.objective_, rel=1e-9)


@pytest.mark.parametrize("loss", ["hinge", "logistic"])
def test_admm_matches_cvxpy_classification(loss):
    X, y = data(3, 30, 3)
    labels = np.where(y > 0, 1, -1)
    ref = fit(X, labels, loss=loss, solver="cvxpy", beta=0.1)
    m = fit(X, labels, loss=loss, patterns=ref.patterns_, beta=0.1, max_iter=60000)
    # Non-smooth losses converge slowly under ADMM: agreement to 1e-4 here (1e-6 for the squared loss).
    assert m.objective_ == pytest.approx(ref.objective_, rel=1e-4)
    assert m.objective_ >= ref.objective_ - 1e-6 * ref.objective_ - 10 * m.constraint_violation_


@pytest.mark.parametrize("u_solver", ["dense", "woodbury", "pcg"])
def test_usteps_agree(u_solver):
    X, y = data(4, 35, 4)
    base = fit(X, y, u_solver="dense")
    m = fit(X, y, u_solver=u_solver)
    assert m.u_solver_ == u_solver
    assert m.objective_ == pytest.approx(base.objective_, rel=1e-8)
    np.testing.assert_allclose(m.predict(X), base.predict(X), atol=1e-5)


@pytest.mark.parametrize("solver", ["admm", "cvxpy"])
def test_to_network_is_exact(solver):
    X, y = data(5, 30, 3)
    m = fit(X, y, solver=solver)
    net = m.to_network()
    assert isinstance(net, nncert.Network)
    np.testing.assert_allclose(net(X)[:, 0], m.predict(X), atol=1e-9)
    # The convex predictions on the training patterns agree with the ReLU network up to feasibility.
    Xa = np.hstack([X, np.ones((30, 1))])
    conv = F.predictions(Xa, m.patterns_, m.V_[0], m.W_[0])
    np.testing.assert_allclose(conv, m.predict(X), atol=1e-5)
    assert network_objective(net, X, y, m.beta) == pytest.approx(m.objective_, rel=1e-5)
    # Pruning: only neurons with non-zero groups.
    nonzero = (np.linalg.norm(m.V_[0], axis=0) > 0).sum() + (np.linalg.norm(m.W_[0], axis=0) > 0).sum()
    assert net.layers[0].W.shape[0] == nonzero


def test_more_patterns_never_raise_optimum():
    X, y = data(6, 30, 3)
    Xa = np.hstack([X, np.ones((30, 1))])
    D = sample_patterns(Xa, 20, 0)
    objs = [fit(X, y, solver="cvxpy", patterns=D[:, :k]).objective_ for k in (3, 8, D.shape[1])]
    assert objs[0] >= objs[1] - 1e-7 * objs[0] >= objs[2] - 2e-7 * objs[0]
    admm = [fit(X, y, patterns=D[:, :k]).objective_ for k in (3, 8, D.shape[1])]
    np.testing.assert_allclose(admm, objs, rtol=1e-6)


@pytest.mark.parametrize("solver", ["admm", "cvxpy"])
def test_large_beta_gives_zero_network(solver):
    X, y = data(7, 25, 3)
    Xa = np.hstack([X, np.ones((25, 1))])
    D = sample_patterns(Xa, 10, 0)
    bmax = max(np.linalg.norm((D[:, i:i + 1] * Xa).T @ y) for i in range(D.shape[1]))
    m = fit(X, y, solver=solver, patterns=D, beta=1.001 * bmax)
    assert np.abs(m.V_).max() < 1e-7 and np.abs(m.W_).max() < 1e-7
    assert m.objective_ == pytest.approx(0.5 * np.sum(y ** 2), rel=1e-6)
    # Just below the threshold, some neuron is active.
    m2 = fit(X, y, solver="cvxpy", patterns=D, beta=0.9 * bmax)
    assert m2.objective_ < 0.5 * np.sum(y ** 2)


@pytest.mark.parametrize("loss", ["squared", "hinge"])
def test_adversarial_objective_monotone_and_sound(loss):
    X, y = data(8, 25, 3)
    target = y if loss == "squared" else np.where(y > 0, 1, -1)
    std = fit(X, target, solver="cvxpy", loss=loss)
    objs = []
    for eps in (0.0, 0.02, 0.05, 0.1):
        m = fit(X, target, solver="cvxpy", loss=loss, adversarial_eps=eps, patterns=std.patterns_)
        objs.append(m.objective_)
    assert objs[0] == pytest.approx(std.objective_, rel=1e-7)
    assert all(b >= a - 1e-7 * abs(a) for a, b in zip(objs, objs[1:]))
    assert objs[-1] > objs[0]
    # Soundness of the robust loss: random corners of the eps-box never exceed the certified worst case,
    # and the network's patterns do not change within the box (the robust constraints).
    net = m.to_network()
    rng = np.random.default_rng(0)
    feat = np.array([True] * 3 + [False])
    Xa = np.hstack([X, np.ones((25, 1))])
    G = m.patterns_ @ (m.V_[0] - m.W_[0])[feat].T
    f0 = m.predict(X) if loss == "squared" else m.decision_function(X)
    for _ in range(20):
        delta = 0.1 * rng.choice([-1.0, 1.0], size=X.shape)
        f = net(X + delta)[:, 0]
        assert np.all(np.abs(f - f0) <= 0.1 * np.abs(G).sum(axis=1) + 1e-7)
        d1 = net.layers[0]
        z1, z0 = (X + delta) @ d1.W.T + d1.b, X @ d1.W.T + d1.b
        # Constraints may be tight: a pre-activation can reach 0 exactly at a corner, which is no flip.
        assert np.all((np.sign(z1) == np.sign(z0)) | (np.abs(z1) < 1e-7) | (np.abs(z0) < 1e-7))


def test_multiclass_one_output_per_class():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((36, 2))
    y = np.digitize(X[:, 0] + 0.3 * X[:, 1], [-0.5, 0.5])  # classes 0, 1, 2
    m = fit(X, y, beta=0.01, max_iter=20000, tol=1e-7)
    assert list(m.classes_) == [0, 1, 2]
    assert m.decision_function(X).shape == (36, 3)
    assert m.score(X, y) > 0.9
    net = m.to_network()
    np.testing.assert_allclose(net(X), m.decision_function(X), atol=1e-9)
    Y = np.where(y[:, None] == np.arange(3)[None, :], 1.0, -1.0)
    assert network_objective(net, X, Y, m.beta) == pytest.approx(m.objective_, rel=1e-4)


def test_binary_labels_and_torch_inputs():
    torch = pytest.importorskip("torch")
    X, y = data(10, 30, 3)
    labels = np.where(y > 0, "pos", "neg")
    m = fit(X, labels, loss="hinge", max_iter=5000, tol=1e-6)
    assert set(m.predict(X)) <= {"pos", "neg"}
    assert m.score(X, labels) > 0.8
    mt = fit(torch.from_numpy(X), torch.from_numpy(y), max_iter=5000, tol=1e-6)
    mn = fit(X, y, max_iter=5000, tol=1e-6)
    assert mt.objective_ == pytest.approx(mn.objective_, rel=1e-12)


def test_standardize_folds_into_network():
    X, y = data(11, 30, 3)
    X = X * np.array([100.0, 0.01, 1.0]) + 5.0
    m = fit(X, y, standardize=True, max_iter=20000, tol=1e-8)
    net = m.to_network()
    np.testing.assert_allclose(net(X)[:, 0], m.predict(X), atol=1e-8)
    # objective_ is on the data as given: it is the objective of the network on the original X
    assert m.objective_ == pytest.approx(network_objective(net, X, y, 0.05), rel=1e-6)
    plain = fit(X, y, max_iter=20000, tol=1e-8, patterns=m.patterns_)
    assert not np.isclose(m.objective_, plain.objective_)  # a different regulariser geometry, not a relabelling
    with pytest.raises(nncert.InvalidInputError, match="fit_intercept"):
        fit(X, y, standardize=True, fit_intercept=False)
    with pytest.raises(nncert.InvalidInputError, match="standardized units"):
        fit(X, y, standardize=True, adversarial_eps=0.1, solver="cvxpy")


def test_sklearn_protocol():
    m = nncert.ConvexReLU(beta=0.5)
    assert m.get_params()["beta"] == 0.5
    assert m.set_params(n_patterns=7) is m and m.n_patterns == 7
    with pytest.raises(nncert.InvalidInputError, match="no parameter"):
        m.set_params(nope=1)
    sklearn = pytest.importorskip("sklearn.base")
    c = sklearn.clone(m)
    assert c.get_params() == m.get_params()
    assert "beta=0.5" in repr(m)


@pytest.mark.parametrize("kw,y_fn,exc,match", [
    (dict(beta=0.0), None, nncert.InvalidInputError, "beta"),
    (dict(beta=-1.0), None, nncert.InvalidInputError, "beta"),
    (dict(loss="l1"), None, nncert.InvalidInputError, "loss"),
    (dict(solver="sgd"), None, nncert.InvalidInputError, "solver"),
    (dict(loss="hinge"), lambda y: y, nncert.InvalidInputError, "class labels"),
    (dict(loss="logistic"), lambda y: np.ones_like(y, dtype=int), nncert.InvalidInputError, "single class"),
    (dict(), lambda y: y[:-1], nncert.ShapeError, "rows"),
    (dict(adversarial_eps=0.1, u_solver="woodbury"), None, nncert.UnsupportedModelError, "Woodbury"),
    (dict(adversarial_eps=-0.1, solver="cvxpy"), None, nncert.InvalidInputError, "adversarial_eps"),
    (dict(patterns=np.full((30, 3), 0.5)), None, nncert.InvalidInputError, "0/1"),
    (dict(patterns=np.ones((29, 3))), None, nncert.ShapeError, "rows"),
    (dict(memory_limit=1000.0), None, nncert.InvalidInputError, "GiB"),
    (dict(u_solver="dense", memory_limit=3e5), None, nncert.InvalidInputError, "GiB"),
    (dict(device="cuda"), None, nncert.InvalidInputError, "cuda|CUDA"),
])
def test_bad_input(kw, y_fn, exc, match):
    X, y = data(12, 30, 3)
    if y_fn is not None:
        y = y_fn(y)
    with pytest.raises(exc, match=match):
        nncert.ConvexReLU(**kw).fit(X, y)


def test_bad_data():
    X, y = data(13, 30, 3)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(nncert.InvalidInputError, match="finite"):
        nncert.ConvexReLU().fit(Xn, y)
    yn = y.copy()
    yn[0] = np.inf
    with pytest.raises(nncert.InvalidInputError, match="finite"):
        nncert.ConvexReLU().fit(X, yn)
    with pytest.raises(nncert.InvalidInputError, match="not fitted"):
        nncert.ConvexReLU().predict(X)
    m = fit(X, y, max_iter=200, tol=1e-4)
    with pytest.raises(nncert.ShapeError, match="features"):
        m.predict(X[:, :2])


def test_progress_and_time_limit(caplog):
    X, y = data(14, 40, 5)
    m = fit(X, y, max_iter=100000, tol=1e-14, time_limit=0.05, verbose=True)
    assert m.status_ == "time_limit"
    assert m.n_iter_ < 100000


def test_network_objective_matches_convex_objective():
    X, y = data(15, 30, 3)
    m = fit(X, y)
    net = m.to_network()
    assert m.network_objective_ == pytest.approx(network_objective(net, X, y, m.beta), rel=1e-9)
    assert m.network_objective_ == pytest.approx(m.objective_, rel=1e-6)


def test_cli_convex_fit(tmp_path, capsys):
    import json

    from nncert.cli import main
    X, y = data(16, 30, 3)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = tmp_path / "net.npz"
    assert main(["convex-fit", str(tmp_path / "d.npz"), "--patterns", "8", "--beta", "0.1", "--json",
                 "--save", str(out)]) == 0
    rep = json.loads(capsys.readouterr().out)
    net = nncert.Network.from_npz(out)
    assert rep["neurons"] == net.layers[0].W.shape[0]
    assert rep["objective"] > 0 and rep["status"] in ("converged", "max_iter")
    assert main(["convex-fit", str(tmp_path / "missing.csv")]) == 1


@pytest.mark.parametrize("loss", ["squared", "hinge"])
def test_anderson_acceleration_same_optimum_fewer_iterations(loss):
    # The Anderson-accelerated ADMM (default on the core) and the plain ADMM (anderson=0) reach the cvxpy
    # optimum on the same patterns; the accelerated run needs fewer iterations and reports its steps.
    X, y = data(5, 40, 3)
    target = y if loss == "squared" else np.where(y > 0, 1, -1)
    ref = fit(X, target, loss=loss, solver="cvxpy", beta=0.1)
    plain = fit(X, target, loss=loss, patterns=ref.patterns_, beta=0.1, anderson=0, tol=1e-8, max_iter=100000)
    acc = fit(X, target, loss=loss, patterns=ref.patterns_, beta=0.1, anderson=10, tol=1e-8, max_iter=100000)
    rel = 1e-6 if loss == "squared" else 1e-4
    for m in (plain, acc):
        assert m.status_ == "converged"
        assert m.objective_ == pytest.approx(ref.objective_, rel=rel)
        assert m.constraint_violation_ < 1e-9 * max(1.0, np.abs(m.V_).max())
    assert plain.anderson_ == {"memory": 0, "accepted": 0, "rejected": 0}
    assert acc.anderson_["memory"] == 10 and acc.anderson_["accepted"] > 0
    assert acc.n_iter_ < plain.n_iter_
    assert nncert.ConvexReLU().get_params()["anderson"] is None


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_anderson_bad_values(bad):
    X, y = data(0)
    with pytest.raises(nncert.InvalidInputError, match="anderson"):
        nncert.ConvexReLU(n_patterns=4, anderson=bad).fit(X, y)


def test_sparse_checks_same_optimum_and_history():
    # check_every thins out the convergence checks (three GEMMs each) without changing the iterates: the sparse run
    # stops at a later check, never earlier, at the same optimum; history_ has one row per check.
    X, y = data(3, 40, 4)
    kw = dict(n_patterns=8, beta=1e-2, tol=1e-8, max_iter=100000)
    every = nncert.ConvexReLU(check_every=1, **kw).fit(X, y)
    sparse = nncert.ConvexReLU(**kw).fit(X, y)
    assert every.status_ == sparse.status_ == "converged"
    assert every.n_iter_ <= sparse.n_iter_ < every.n_iter_ + 10
    assert sparse.objective_ == pytest.approx(every.objective_, rel=1e-7)
    assert len(every.history_["iter"]) == every.n_iter_
    assert len(sparse.history_["iter"]) < sparse.n_iter_ / 4
    with pytest.raises(nncert.InvalidInputError, match="check_every"):
        nncert.ConvexReLU(check_every=0).fit(X, y)
    with pytest.raises(nncert.InvalidInputError, match="pcg_decay"):
        nncert.ConvexReLU(pcg_decay=-1.0).fit(X, y)
