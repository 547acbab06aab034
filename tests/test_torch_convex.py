"""ConvexReLU's ADMM on the torch path (backend="torch" on the CPU here; device="cuda" on a GPU) against the Rust
core on the same data, patterns and settings: objective_ to 1e-8 relative in float64, the same weights, iteration
count and history; float32 to 1e-4 relative; the device and backend errors."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert import _core

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny problems: torch's thread pool only adds contention on a shared machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def data(seed=1, n=30, d=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X @ np.linspace(1.0, -2.0, d)) + 0.1 * rng.normal(size=n)
    return X, y


# Settings where the core's ADMM converges or runs smoothly (the torch path must then follow it iterate by iterate).
CASES = {
    "squared": dict(loss="squared", beta=1e-2, tol=1e-6, max_iter=600),
    "hinge": dict(loss="hinge", beta=1e-1, tol=1e-6, max_iter=600),
    "logistic": dict(loss="logistic", beta=1.0, rho=1.0, tol=1e-7, max_iter=1000),
}


def both(X, y, **kw):
    # The torch path mirrors the plain ADMM; Anderson acceleration (on by default in the core) is core-only, and so
    # are the sparser convergence checks (check_every, 10 by default in the core) and the inexact PCG u-steps
    # (pcg_decay): compare iteration by iteration with exact solves.
    kw = dict(n_patterns=6, anderson=0, check_every=1, pcg_decay=0, **kw)
    core = nncert.ConvexReLU(backend="core", **kw).fit(X, y)
    dev = nncert.ConvexReLU(backend="torch", device="cpu", **kw).fit(X, y)
    return core, dev


def assert_same(core, dev, rel=1e-8, weights=1e-6):
    assert dev.objective_ == pytest.approx(core.objective_, rel=rel, abs=0)
    np.testing.assert_allclose(dev.V_, core.V_, atol=weights)
    np.testing.assert_allclose(dev.W_, core.W_, atol=weights)
    assert dev.u_solver_ == core.u_solver_
    assert dev.status_ == core.status_
    assert dev.device_.startswith("cpu (torch") and core.device_ == "cpu (Rust core)"


@pytest.mark.parametrize("name", list(CASES))
def test_each_loss_matches_the_core(name):
    X, y = data()
    kw = CASES[name]
    target = y if kw["loss"] == "squared" else np.where(y > 0, 1, -1)
    core, dev = both(X, target, **kw)
    assert_same(core, dev)
    # Same iterations (the same updates in the same order; rounding differences stay at 1e-14 here).
    assert dev.n_iter_ == core.n_iter_
    for k in core.history_:
        assert dev.history_[k].shape == core.history_[k].shape
    np.testing.assert_array_equal(dev.history_["iter"], core.history_["iter"])
    np.testing.assert_allclose(dev.history_["objective"], core.history_["objective"], rtol=1e-8)
    np.testing.assert_allclose(dev.history_["primal_residual"], core.history_["primal_residual"], rtol=1e-6,
                               atol=1e-12)
    if name == "logistic":
        assert core.status_ == "converged"


@pytest.mark.parametrize("u_solver", ["dense", "woodbury", "pcg"])
def test_each_u_step_matches_the_core(u_solver):
    X, y = data(2)
    core, dev = both(X, y, beta=1e-2, tol=1e-7, max_iter=150, u_solver=u_solver)
    assert core.u_solver_ == u_solver
    assert_same(core, dev)
    np.testing.assert_array_equal(dev.history_["inner_iterations"] > 0, core.history_["inner_iterations"] > 0)
    np.testing.assert_allclose(dev.history_["dual_residual"], core.history_["dual_residual"], rtol=1e-6)


def test_converged_run_is_projected_like_the_core():
    X, y = data(3)
    core, dev = both(X, y, beta=0.1, tol=1e-5, max_iter=5000)
    assert core.status_ == "converged"
    assert_same(core, dev)
    assert dev.constraint_violation_ <= 1e-9  # the core's cone projection was applied
    assert dev.history_["violation"][-1] == pytest.approx(core.history_["violation"][-1], abs=1e-12)


def test_several_outputs_and_admm_approx():
    X, y = data(4, n=36)
    labels = np.digitize(y, [-0.4, 0.4])  # three classes: one output each
    core, dev = both(X, labels, beta=1e-2, solver="admm-approx", tol=1e-6, max_iter=300)
    assert core.V_.shape[0] == 3 and core.u_solver_ == "woodbury"
    assert_same(core, dev)
    np.testing.assert_array_equal(dev.predict(X), core.predict(X))


@pytest.mark.parametrize("loss", ["squared", "hinge"])
def test_float32_within_1e4(loss):
    X, y = data(5)
    target = y if loss == "squared" else np.where(y > 0, 1, -1)
    kw = dict(n_patterns=6, loss=loss, beta=1e-2, tol=1e-12, max_iter=300, anderson=0)  # a fixed number of iterations
    core = nncert.ConvexReLU(**kw).fit(X, target)
    f32 = nncert.ConvexReLU(backend="torch", dtype="float32", **kw).fit(X, target)
    assert f32.n_iter_ == core.n_iter_ == 300
    assert f32.objective_ == pytest.approx(core.objective_, rel=1e-4)
    assert "float32" in f32.device_


def test_torch_tensor_inputs_on_the_torch_path():
    X, y = data(6)
    ref = nncert.ConvexReLU(n_patterns=6, beta=1e-2, max_iter=200, anderson=0, check_every=1).fit(X, y)
    m = nncert.ConvexReLU(n_patterns=6, beta=1e-2, max_iter=200, backend="torch").fit(torch.from_numpy(X),
                                                                                        torch.from_numpy(y))
    assert m.objective_ == pytest.approx(ref.objective_, rel=1e-8)
    out = m.decision_function(torch.from_numpy(X))
    assert isinstance(out, np.ndarray)  # as for every input type: predictions are numpy
    np.testing.assert_allclose(out, ref.decision_function(X), atol=1e-6)


def test_scp_and_cvxpy_stay_on_the_cpu():
    X, y = data(7)
    kw = dict(n_patterns=6, beta=1e-2, solver="scp", max_iter=300)
    a = nncert.ConvexReLU(**kw).fit(X, y)
    b = nncert.ConvexReLU(backend="torch", **kw).fit(X, y)
    assert b.device_ == "cpu (Rust core)" and b.objective_ == a.objective_


def test_params_round_trip():
    m = nncert.ConvexReLU(device="cpu", backend="torch", dtype="float32")
    p = m.get_params()
    assert (p["device"], p["backend"], p["dtype"]) == ("cpu", "torch", "float32")
    m.set_params(backend="core", dtype="float64")
    assert (m.backend, m.dtype) == ("core", "float64")
    assert "backend='core'" not in repr(nncert.ConvexReLU())


@pytest.mark.parametrize("kw,match", [
    (dict(backend="gpu"), "backend"),
    (dict(dtype="float16", backend="torch"), "dtype"),
    (dict(dtype="float32"), "float32"),  # the core runs in float64
    (dict(dtype="float32", backend="torch", solver="scp"), "float32"),
    (dict(device="cuda:7"), "CUDA|cuda"),
    (dict(device="tpu"), "device"),
])
def test_bad_backend_settings(kw, match):
    if "cuda" in str(kw.get("device", "")) and torch.cuda.device_count() > 7:
        pytest.skip("has a cuda:7")
    X, y = data(8)
    with pytest.raises(nncert.InvalidInputError, match=match):
        nncert.ConvexReLU(**kw).fit(X, y)


def test_core_backend_refuses_a_gpu():
    if not torch.cuda.is_available():
        with pytest.raises(nncert.InvalidInputError, match="CUDA"):
            nncert.ConvexReLU(device="cuda", backend="core").fit(*data(9))
    else:
        with pytest.raises(nncert.InvalidInputError, match="backend='core'"):
            nncert.ConvexReLU(device="cuda", backend="core").fit(*data(9))


def test_project_cones_binding():
    rng = np.random.default_rng(10)
    X = np.hstack([rng.normal(size=(25, 3)), np.ones((25, 1))])
    D = (X @ rng.normal(size=(4, 5)) >= 0).astype(float)
    U = rng.normal(size=(4, 10))
    P, worst = _core.convex_project_cones(X, D, U)
    S = 2 * np.hstack([D, D]) - 1
    assert worst <= 1e-10 and (S * (X @ P)).min() >= -1e-10
    assert np.linalg.norm(P - U) > 1e-3  # random groups violate their cones, so they moved
    P2, _ = _core.convex_project_cones(X, D, P)
    np.testing.assert_allclose(P2, P, atol=1e-12)  # feasible points stay put
    with pytest.raises(nncert.ShapeError):
        _core.convex_project_cones(X, D, U[:, :9])
    # the smaller factorisation: n x n (Woodbury) while n <= dP, else the dP x dP system of V - W
    assert _core.convex_ustep_choose("auto", 20, 4, 5, 1e9) == "woodbury"
    assert _core.convex_ustep_choose("auto", 21, 4, 5, 1e9) == "dense"
    assert _core.convex_ustep_choose("auto", 2000, 4, 5, 1e9) == "dense"
    # n = 60,000, d = 51, P = 50: forming and factoring the dense u-step costs ~4e11 flops, less than 1,000 PCG
    # iterations, so it is factored, unless the run's time limit is too short to afford it (not interruptible)
    assert _core.convex_ustep_choose("auto", 60000, 51, 50, 8e9) == "dense"
    assert _core.convex_ustep_choose("auto", 60000, 51, 50, 8e9, 100.0) == "dense"
    assert _core.convex_ustep_choose("auto", 60000, 51, 50, 8e9, 10.0) == "pcg"
    assert _core.convex_ustep_choose("dense", 60000, 51, 50, 8e9, 10.0) == "dense"  # an explicit choice stands
    with pytest.raises(nncert.InvalidInputError, match="GiB"):
        _core.convex_ustep_choose("dense", 2000, 400, 50, 1e6)


@pytest.mark.gpu
def test_cuda_matches_the_core():
    X, y = data(11, n=200, d=5)
    kw = dict(n_patterns=20, beta=1e-2, tol=1e-6, max_iter=500, anderson=0, check_every=1)
    core = nncert.ConvexReLU(**kw).fit(X, y)
    gpu = nncert.ConvexReLU(device="cuda", **kw).fit(X, y)
    assert gpu.device_.startswith("cuda")
    assert gpu.objective_ == pytest.approx(core.objective_, rel=1e-8)
    assert abs(gpu.n_iter_ - core.n_iter_) <= 3
    gpu32 = nncert.ConvexReLU(device="cuda", dtype="float32", **dict(kw, tol=1e-12, max_iter=200)).fit(X, y)
    core200 = nncert.ConvexReLU(**dict(kw, tol=1e-12, max_iter=200)).fit(X, y)
    assert gpu32.objective_ == pytest.approx(core200.objective_, rel=1e-4)


def test_anderson_is_core_only():
    X, y = data(12)
    with pytest.raises(nncert.UnsupportedModelError, match="anderson"):
        nncert.ConvexReLU(n_patterns=6, anderson=5, backend="torch", device="cpu").fit(X, y)
    # The default (None) runs the plain ADMM on the torch path.
    m = nncert.ConvexReLU(n_patterns=6, beta=1e-2, max_iter=50, backend="torch", device="cpu").fit(X, y)
    assert m.anderson_["memory"] == 0
