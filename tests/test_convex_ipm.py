"""solver="ipm": the structured primal-dual interior-point method for the squared-loss convex program."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert.convex import formulation as F
from nncert.convex import ipm
from nncert.convex.patterns import sample_patterns
from nncert.convex.reference import solve_reference


def soc_interior(rng, m, k):
    v = rng.standard_normal((m, k))
    v[:, 0] = np.linalg.norm(v[:, 1:], axis=1) + rng.random(m) + 0.1
    return v


def data(seed, n, d, P, k=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Xa = np.hstack([X, np.ones((n, 1))])
    y = np.sin(X @ rng.standard_normal(d)) + 0.1 * rng.standard_normal(n)
    if k is not None:
        y = np.stack([y, np.cos(X[:, 0]) * y, X[:, -1]], axis=1)[:, :k]
    return X, Xa, y, sample_patterns(Xa, P, seed)


def test_nesterov_todd_scaling_identities():
    rng = np.random.default_rng(0)
    s, z = soc_interior(rng, 6, 5), soc_interior(rng, 6, 5)
    beta, wbar = ipm._soc_scaling(s, z)
    lam = ipm._soc_apply(beta, wbar, z)
    # W z = W^{-1} s, and the explicit matrices are inverse to each other.
    np.testing.assert_allclose(lam, ipm._soc_apply(beta, wbar, s, inverse=True), atol=1e-13)
    W, Wi = ipm._soc_matrix(beta, wbar), ipm._soc_matrix(beta, wbar, inverse=True)
    np.testing.assert_allclose(W @ Wi, np.broadcast_to(np.eye(5), W.shape), atol=1e-13)
    np.testing.assert_allclose(np.einsum("jkl,jl->jk", W, z), lam, atol=1e-13)
    v = rng.standard_normal((6, 5))
    np.testing.assert_allclose(ipm._soc_product(lam, ipm._soc_divide(lam, v)), v, atol=1e-12)
    # The step to the boundary stops exactly on it (one cone reaches it, none is left).
    ds = rng.standard_normal((6, 5))
    a = ipm._soc_step(s, ds)
    t = s + a * ds
    margin = t[:, 0] - np.linalg.norm(t[:, 1:], axis=1)
    assert margin.min() == pytest.approx(0.0, abs=1e-12) and np.all(margin > -1e-12)
    assert ipm._soc_step(s, np.abs(s)) == np.inf  # a direction inside the cone never leaves it


@pytest.mark.parametrize("system", ["pattern", "sample"])
def test_structured_newton_solve_equals_dense_solve(system):
    rng = np.random.default_rng(1)
    _, Xa, y, D = data(1, 30, 3, 5)
    solver = ipm.SquaredLossIPM(Xa, y, D, 0.1, system=system)
    P, d = D.shape[1], Xa.shape[1]
    omega = rng.random((30, 2 * P)) + 0.1
    q = soc_interior(rng, 2 * P, d + 1)
    Winv2 = np.stack([np.outer(v, v) + np.eye(d + 1) for v in q])
    bt, bu = rng.standard_normal(2 * P), rng.standard_normal((d, 2 * P))
    dt, du = solver.solve(solver.factor(omega, Winv2), bt, bu)
    H = solver.hessian_dense(omega, Winv2)
    stack = lambda t, u: np.concatenate([np.concatenate([[t[j]], u[:, j]]) for j in range(2 * P)])
    np.testing.assert_allclose(stack(dt, du), np.linalg.solve(H, stack(bt, bu)), rtol=1e-10, atol=1e-12)
    at, au = solver.apply(omega, Winv2, dt, du)
    np.testing.assert_allclose(stack(at, au), stack(bt, bu), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n,d,P,beta", [(40, 4, 8, 0.1), (40, 2, 6, 1.0), (100, 5, 12, 0.05), (25, 3, 10, 0.5)])
def test_ipm_matches_cvxpy(n, d, P, beta):
    X, Xa, y, D = data(n + d, n, d, P)
    model = nncert.ConvexReLU(solver="ipm", beta=beta, patterns=D, tol=1e-8).fit(X, y)
    ref = solve_reference(Xa, y, D, beta, "squared")
    fstar = F.objective(Xa, D, ref.V, ref.W, y, beta, "squared")
    assert model.status_ in ("converged", "stalled", "numerical_error")
    assert model.ipm_gap_ < 1e-6
    assert model.objective_ == pytest.approx(fstar, rel=1e-6)
    assert model.constraint_violation_ <= 1e-10
    # The dual certificate: a lower bound on the optimum, close to the returned objective.
    assert model.ipm_lower_bound_ <= fstar + 1e-7 * abs(fstar)
    assert model.objective_ - model.ipm_lower_bound_ <= 1e-4 * model.objective_
    # Any multipliers give a valid (looser) bound; zero multipliers bound from below too.
    P = D.shape[1]
    loose = ipm.dual_lower_bound(Xa, y, D, beta, model.V_[0], model.W_[0], np.zeros((len(y), 2 * P)))
    assert loose <= model.ipm_lower_bound_ + 1e-9 and loose <= fstar + 1e-9
    # The network it converts to has the same objective.
    net = model.to_network()
    f = net(X)[:, 0]
    Wt, b, A = model.hidden_weights()
    nonconvex = 0.5 * np.sum((f - y) ** 2) + 0.5 * beta * (np.sum(Wt ** 2) + np.sum(b ** 2) + np.sum(A ** 2))
    assert nonconvex == pytest.approx(model.objective_, rel=1e-9)


def test_both_newton_systems_and_the_admm_agree():
    X, Xa, y, D = data(3, 60, 4, 15)
    objs = []
    for system in ("pattern", "sample"):
        r = ipm.SquaredLossIPM(Xa, y, D, 0.2, system=system).run(tol=1e-9, feastol=1e-9)
        objs.append(F.objective(Xa, D, r.v, r.w, y, 0.2, "squared"))
    admm = nncert.ConvexReLU(solver="admm", beta=0.2, patterns=D, tol=1e-9, max_iter=200_000).fit(X, y)
    assert objs[0] == pytest.approx(objs[1], rel=1e-8)
    assert admm.objective_ == pytest.approx(objs[0], rel=1e-6)


def test_large_beta_gives_the_zero_network():
    X, Xa, y, D = data(4, 50, 3, 10)
    bmax = max(np.linalg.norm((D[:, [i]] * Xa).T @ y) for i in range(D.shape[1]))
    model = nncert.ConvexReLU(solver="ipm", beta=1.01 * bmax, patterns=D).fit(X, y)
    assert np.all(model.V_ == 0) and np.all(model.W_ == 0)
    assert model.objective_ == pytest.approx(0.5 * np.sum(y ** 2), rel=1e-12)


def test_several_outputs_and_classification():
    X, Xa, Y, D = data(5, 50, 3, 8, k=3)
    model = nncert.ConvexReLU(solver="ipm", beta=0.1, patterns=D, tol=1e-8).fit(X, Y)
    fstar = 0.0
    for c in range(3):
        ref = solve_reference(Xa, Y[:, c], D, 0.1, "squared")
        fstar += F.objective(Xa, D, ref.V, ref.W, Y[:, c], 0.1, "squared")
    assert model.objective_ == pytest.approx(fstar, rel=1e-6)
    assert set(model.history_["output"]) == {0, 1, 2}
    labels = (Y[:, 0] > np.median(Y[:, 0])).astype(int)
    clf = nncert.ConvexReLU(solver="ipm", beta=0.1, n_patterns=8).fit(X, labels)
    assert clf.score(X, labels) > 0.8


def test_history_time_limit_and_progress():
    X, Xa, y, D = data(6, 80, 4, 12)
    model = nncert.ConvexReLU(solver="ipm", beta=0.1, patterns=D, tol=1e-8).fit(X, y)
    h = model.history_
    assert h["iter"][0] == 0 and np.all(np.diff(h["iter"]) == 1)
    assert h["gap"][-1] < 1e-6 < h["gap"][0]
    assert model.ipm_system_ in ("pattern", "sample")
    quick = nncert.ConvexReLU(solver="ipm", beta=0.1, patterns=D, time_limit=0.0).fit(X, y)
    assert quick.status_ == "time_limit" and quick.n_iter_ == 0
    assert quick.constraint_violation_ <= 1e-8  # the projection keeps even an early point feasible
    capped = nncert.ConvexReLU(solver="ipm", beta=0.1, patterns=D, max_iter=3).fit(X, y)
    assert capped.status_ == "max_iter" and capped.n_iter_ == 3


def test_unsupported_settings_are_refused_before_work():
    X, Xa, y, D = data(7, 30, 3, 5)
    labels = (y > 0).astype(int)
    with pytest.raises(nncert.UnsupportedModelError, match="squared"):
        nncert.ConvexReLU(solver="ipm", loss="logistic").fit(X, labels)
    with pytest.raises(nncert.UnsupportedModelError, match="adversarial"):
        nncert.ConvexReLU(solver="ipm", adversarial_eps=0.1).fit(X, y)
    with pytest.raises(nncert.InvalidInputError, match="interior-point Newton system"):
        nncert.ConvexReLU(solver="ipm", patterns=D, memory_limit=1e3).fit(X, y)
    with pytest.raises(MemoryError):
        ipm.choose_system(60_000, 785, 50, memory_limit=8 * 2.0**30)
    assert ipm.choose_system(2000, 51, 50)[0] == "pattern"
    assert ipm.choose_system(2000, 51, 200)[0] == "sample"


def test_cones_without_interior():
    # Repeated samples with opposite patterns force x'u = 0 on them: cones with empty interior, which the
    # infeasible-start method handles (Slater's condition fails, the optimum is still reached).
    X, Xa, y, D = data(8, 40, 3, 8)
    X2, y2 = np.vstack([X, X[:5]]), np.concatenate([y, y[:5]])
    D2 = np.vstack([D, 1 - D[:5]])
    Xa2 = np.hstack([X2, np.ones((45, 1))])
    model = nncert.ConvexReLU(solver="ipm", beta=0.1, patterns=D2, tol=1e-8).fit(X2, y2)
    ref = solve_reference(Xa2, y2, D2, 0.1, "squared")
    assert model.objective_ == pytest.approx(F.objective(Xa2, D2, ref.V, ref.W, y2, 0.1, "squared"), rel=1e-6)
    assert model.constraint_violation_ <= 1e-9


def test_cli_convex_fit_with_ipm(tmp_path, capsys):
    import json

    from nncert.cli import main
    X, Xa, y, D = data(9, 40, 3, 8)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert main(["convex-fit", str(tmp_path / "d.npz"), "--patterns", "8", "--beta", "0.1", "--solver", "ipm",
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    same = nncert.ConvexReLU(solver="cvxpy", n_patterns=8, beta=0.1).fit(X, y)
    assert rep["status"] == "converged"
    assert rep["objective"] == pytest.approx(same.objective_, rel=1e-6)


@pytest.mark.parametrize("c", [1e-5, 1e4])
def test_target_scale_invariance(c):
    # The program for (c y, c beta) has the optimum c^2 times that for (y, beta), with weights c times larger.
    # Targets of size 1e-5 once stopped 1.5% above the optimum (an absolute gap tolerance and an absolute
    # pruning threshold); the solver now works on unit-size targets and prunes relative to the data's scale.
    X, Xa, y, D = data(10, 50, 3, 10)
    base = nncert.ConvexReLU(solver="ipm", beta=0.1, patterns=D, tol=1e-8).fit(X, y)
    scaled = nncert.ConvexReLU(solver="ipm", beta=0.1 * c, patterns=D, tol=1e-8).fit(X, c * y)
    assert scaled.objective_ == pytest.approx(c * c * base.objective_, rel=1e-7)
    np.testing.assert_allclose(scaled.V_, c * base.V_, rtol=1e-4, atol=1e-6 * c * np.abs(base.V_).max())
    assert scaled.constraint_violation_ <= 1e-12 * c


def test_exact_formulation_degenerate_run_returns_its_best_iterate(recwarn):
    # patterns="all" on 15 points: 211 patterns, many cones without interior; the run overflows after reaching a
    # gap of ~4e-6 and must return its best iterate (finite, feasible, near the optimum) without numpy warnings.
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((40, 2)) * [3, 0.1] + [5, -2])[:15]
    y = np.sin(X[:, 0])
    model = nncert.ConvexReLU(solver="ipm", patterns="all", beta=0.1, tol=1e-8).fit(X, y)
    ref = nncert.ConvexReLU(solver="cvxpy", patterns="all", beta=0.1).fit(X, y)
    assert np.all(np.isfinite(model.history_["objective"]))
    assert model.objective_ == pytest.approx(ref.objective_, rel=1e-6)
    assert model.constraint_violation_ <= 1e-10
    assert model.ipm_lower_bound_ <= ref.objective_ * (1 + 1e-7)
    assert not [w for w in recwarn.list if issubclass(w.category, RuntimeWarning)]
