"""Adversarial (l-inf robust) convex training through the Rust ADMM: against the cvxpy version of the same program,
feasibility of the robust cone constraints, monotonicity in eps, eps = 0, and the robust loss checked against the
network's true worst case (nncert.verify, complete) on the training points."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import nncert
from nncert import _core
from nncert.convex import formulation as F
from nncert.convex.patterns import sample_patterns
from nncert.convex.reference import solve_reference

logging.getLogger("nncert.convex").setLevel(logging.ERROR)


def data(seed, n=25, d=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(X @ rng.standard_normal(d)) + 0.1 * rng.standard_normal(n)
    return X, y


def targets(y, loss):
    return y if loss == "squared" else np.where(y > 0, 1, -1)


def fit(X, y, **kw):
    base = dict(n_patterns=12, beta=0.05, max_iter=60000, tol=1e-10)
    base.update(kw)
    return nncert.ConvexReLU(**base).fit(X, y)


TIGHT = dict(tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9)  # Clarabel settings


@pytest.mark.parametrize("loss", ["squared", "hinge", "logistic"])
def test_robust_admm_matches_cvxpy(loss):
    X, y = data(8)
    t = targets(y, loss)
    Xa = np.hstack([X, np.ones((25, 1))])
    D = sample_patterns(Xa, 12, 0)
    feat = np.array([True] * 3 + [False])
    ref = solve_reference(Xa, t.astype(float), D, 0.05, loss, 0.05, feat, **TIGHT)
    ref_obj = F.objective(Xa, D, ref.V, ref.W, t, 0.05, loss, 0.05, feat)
    assert F.violation(Xa, D, ref.V, ref.W, 0.05, feat) < 1e-9
    m = fit(X, t, loss=loss, adversarial_eps=0.05, patterns=D)
    assert m.status_ == "converged" and m.device_ == "cpu (Rust core)"
    # The ADMM's result is projected onto the robust cones, so it is feasible and cannot be below the optimum.
    assert m.constraint_violation_ < 1e-12
    assert m.objective_ == pytest.approx(ref_obj, rel=1e-7)
    assert m.history_["objective"][-1] == pytest.approx(m.objective_, rel=1e-9)
    assert m.history_["violation"][-1] < 1e-12
    # The robust program costs more than the standard one on the same patterns.
    std = solve_reference(Xa, t.astype(float), D, 0.05, loss, **TIGHT)
    assert m.objective_ > std.objective * (1 + 1e-3)


def test_robust_admm_at_eps_zero_is_the_standard_program():
    X, y = data(3, 30, 4)
    Xa = np.hstack([X, np.ones((30, 1))])
    D = sample_patterns(Xa, 10, 0)
    feat = [True] * 4 + [False]
    ref = solve_reference(Xa, y, D, 0.05, "squared")
    r = _core.convex_admm_robust(Xa, y[:, None], D, feat, 0.0, 0.05, max_iter=60000, eps_abs=1e-11, eps_rel=1e-10)[0]
    assert r["status"] == "converged"
    obj = F.objective(Xa, D, r["v"], r["w"], y, 0.05, "squared")
    assert obj == pytest.approx(ref.objective, rel=1e-6)
    assert r["objective"] == pytest.approx(obj, rel=1e-12)  # the core evaluates the same program as numpy
    assert F.violation(Xa, D, r["v"], r["w"]) < 1e-12


def test_objective_non_decreasing_in_eps():
    X, y = data(5, 30, 3)
    Xa = np.hstack([X, np.ones((30, 1))])
    D = sample_patterns(Xa, 12, 1)
    objs = [fit(X, y, adversarial_eps=eps, patterns=D, tol=1e-9).objective_ for eps in (0.0, 0.02, 0.05, 0.1)]
    assert all(b >= a * (1 - 1e-8) for a, b in zip(objs, objs[1:])), objs
    assert objs[-1] > 1.05 * objs[0]


def test_robust_hinge_is_the_true_worst_case():
    """With the robust cone constraints the network is linear on each training point's eps-box, so the robust
    margin y f - eps ||g||_1 is exactly the worst-case margin: nncert.verify (complete) proves margin >= it - 1e-6
    on every point and finds a counterexample to margin >= it + 1e-3; the robust hinge sum is objective_ - beta * reg."""
    X, y = data(11, 14, 2)
    labels = np.where(y > 0, 1, -1)
    eps, beta = 0.1, 0.05
    m = fit(X, labels, loss="hinge", adversarial_eps=eps, beta=beta, n_patterns=8)
    assert m.status_ == "converged" and m.constraint_violation_ < 1e-12
    net = m.to_network()
    f = m.decision_function(X)
    G = m.patterns_ @ (m.V_[0] - m.W_[0])[:2].T
    robust_margin = labels * f - eps * np.abs(G).sum(axis=1)
    reg = beta * (np.linalg.norm(m.V_[0], axis=0).sum() + np.linalg.norm(m.W_[0], axis=0).sum())
    assert np.sum(np.maximum(0.0, 1.0 - robust_margin)) + reg == pytest.approx(m.objective_, rel=1e-12)
    tight = 0
    for k in range(X.shape[0]):
        box = (X[k] - eps, X[k] + eps)
        below = nncert.Property([box], [(np.array([[float(labels[k])]]), np.array([robust_margin[k] - 1e-6]))])
        assert nncert.verify(net, below, timeout=20.0).status == "holds", k
        if np.abs(G[k]).sum() > 1e-6:
            above = nncert.Property([box], [(np.array([[float(labels[k])]]), np.array([robust_margin[k] + 1e-3]))])
            r = nncert.verify(net, above, timeout=20.0)
            assert r.status == "violated", k
            tight += 1
    assert tight > 0


def test_unsupported_combinations():
    X, y = data(12, 30, 3)
    with pytest.raises(nncert.UnsupportedModelError, match="Woodbury"):
        nncert.ConvexReLU(adversarial_eps=0.1, u_solver="woodbury").fit(X, y)
    for solver in ("scp", "admm-approx"):
        with pytest.raises(nncert.UnsupportedModelError, match="'admm'"):
            nncert.ConvexReLU(adversarial_eps=0.1, solver=solver).fit(X, y)
    with pytest.raises(nncert.ShapeError, match="feat"):
        Xa = np.hstack([X, np.ones((30, 1))])
        _core.convex_admm_robust(Xa, y[:, None], np.ones((30, 1)), [True], 0.1, 0.05)


def test_torch_backend_request_runs_in_the_core():
    pytest.importorskip("torch")
    X, y = data(13, 20, 2)
    kw = dict(adversarial_eps=0.05, max_iter=500, tol=1e-6)
    a = fit(X, y, backend="torch", device="cpu", **kw)
    b = fit(X, y, **kw)
    assert a.device_ == "cpu (Rust core)"
    assert a.objective_ == b.objective_
    with pytest.raises(nncert.InvalidInputError, match="float32"):
        fit(X, y, backend="torch", device="cpu", dtype="float32", **kw)


def test_degenerate_robust_cones_are_screened_out():
    """Two noisy half-moons: most sampled patterns cannot hold on an eps-box around every point, so their robust
    cone is {0}. The LP screen drops exactly columns that the cvxpy optimum leaves at zero, and the ADMM on the
    rest converges to the cvxpy optimum over all the patterns."""
    rng = np.random.default_rng(0)
    n = 40
    lab = rng.integers(0, 2, n)
    t = rng.uniform(0, np.pi, n)
    X = np.stack([np.where(lab == 0, np.cos(t), 1 - np.cos(t)), np.where(lab == 0, np.sin(t), 0.5 - np.sin(t))], 1)
    X = X + 0.15 * rng.standard_normal((n, 2))
    y = np.where(lab == 1, 1, -1)
    Xa = np.hstack([X, np.ones((n, 1))])
    D = sample_patterns(Xa, 20, 0)
    feat = np.array([True, True, False])
    ref = solve_reference(Xa, y.astype(float), D, 0.05, "hinge", 0.1, feat, **TIGHT)
    ref_obj = F.objective(Xa, D, ref.V, ref.W, y, 0.05, "hinge", 0.1, feat)
    m = fit(X, y, loss="hinge", adversarial_eps=0.1, patterns=D, tol=1e-9)
    keep = m.robust_patterns_
    assert 0 < keep.sum() < D.shape[1] // 2
    dropped = np.linalg.norm(np.hstack([ref.V[:, ~keep], ref.W[:, ~keep]]), axis=0)
    assert dropped.max() < 1e-6
    assert np.all(m.V_[0][:, ~keep] == 0) and np.all(m.W_[0][:, ~keep] == 0)
    assert m.status_ == "converged" and m.constraint_violation_ < 1e-12
    assert m.objective_ == pytest.approx(ref_obj, rel=1e-6)


def test_no_feasible_pattern_gives_the_zero_network():
    X, y = data(14, 30, 3)
    Xa = np.hstack([X, np.ones((30, 1))])
    D = sample_patterns(Xa, 6, 0)
    D = D[:, (D.sum(axis=0) > 3) & (D.sum(axis=0) < 27)]  # mixed patterns only: none survives a large eps
    m = fit(X, y, adversarial_eps=2.0, patterns=D)
    ref = solve_reference(Xa, y, D, 0.05, "squared", 2.0, np.array([True] * 3 + [False]), **TIGHT)
    assert not m.robust_patterns_.any()
    assert np.all(m.V_ == 0) and np.all(m.W_ == 0) and m.n_iter_ == 0 and m.status_ == "converged"
    assert m.objective_ == pytest.approx(0.5 * np.sum(y ** 2), rel=1e-12)
    assert ref.objective == pytest.approx(m.objective_, rel=1e-7)
