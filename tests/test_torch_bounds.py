"""The torch bound propagation (nncert.torch_backend.propagate) against the Rust core's bounds binding:
the same interval and CROWN bounds (1e-8 in float64, 1e-4 relative in float32) on random nets of each
layer type, batched over boxes; and the bounds enclose sampled outputs."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert import _core
from nncert.errors import InvalidInputError, ShapeError, UnsupportedModelError

torch = pytest.importorskip("torch")
from nncert.torch_backend.propagate import output_bounds  # noqa: E402

ACTS = [nncert.ReLU(), nncert.LeakyReLU(0.2), nncert.LeakyReLU(2.0), nncert.LeakyReLU(-0.5), nncert.Tanh(),
        nncert.Sigmoid(), nncert.MaxMin(), nncert.MaxMin("halves"), nncert.GroupSort(3)]


def random_net(rng, act, residual, widths=(3, 6, 6, 2)):
    layers = []
    for k in range(len(widths) - 1):
        n, m = widths[k], widths[k + 1]
        layers.append(nncert.Dense(rng.normal(size=(m, n)), 0.5 * rng.normal(size=m)))
        if k + 2 < len(widths):
            layers.append(act)
            if residual:
                layers.append(nncert.Residual([nncert.Dense(0.5 * rng.normal(size=(m, m))), act]))
    return nncert.Network(layers)


def boxes(rng, b, n, scale=1.5):
    lo = rng.uniform(-1, 0.5, size=(b, n))
    return lo, lo + rng.uniform(0, scale, size=(b, n))


@pytest.mark.parametrize("act", ACTS, ids=repr)
@pytest.mark.parametrize("residual", [False, True])
def test_bounds_match_the_rust_core(act, residual):
    rng = np.random.default_rng(7)
    net = random_net(rng, act, residual)
    lo, hi = boxes(rng, 6, 3)
    lo[0] = hi[0]  # a point box: every unit stable, constant relaxations
    a_y, a_x = rng.normal(size=(4, 2)), rng.normal(size=(4, 3))
    for method in ("crown", "interval"):
        t64 = output_bounds(net, lo, hi, a_y, a_x, method=method)
        t32 = output_bounds(net, lo, hi, a_y, a_x, method=method, dtype=torch.float32)
        for b in range(len(lo)):
            r = _core.output_bounds(net._core, lo[b], hi[b], a_y, a_x, method=method)
            np.testing.assert_allclose(t64["lower"][b], r["lower"], rtol=0, atol=1e-8)
            np.testing.assert_allclose(t64["out_lo"][b], r["out_lo"], rtol=0, atol=1e-8)
            np.testing.assert_allclose(t64["out_hi"][b], r["out_hi"], rtol=0, atol=1e-8)
            assert len(t64["pre"]) == len(r["pre"])
            for (tl, tu), (rl, ru) in zip(t64["pre"], r["pre"]):
                np.testing.assert_allclose(tl[b], rl, rtol=0, atol=1e-8)
                np.testing.assert_allclose(tu[b], ru, rtol=0, atol=1e-8)
            np.testing.assert_allclose(t32["lower"][b], r["lower"], rtol=1e-4, atol=1e-4)
        assert not t64["infeasible"].any()


@pytest.mark.parametrize("act", [nncert.ReLU(), nncert.Tanh(), nncert.MaxMin()], ids=repr)
def test_bounds_enclose_sampled_outputs_and_crown_is_tighter(act):
    rng = np.random.default_rng(3)
    net = random_net(rng, act, True, widths=(4, 8, 8, 3))
    lo, hi = boxes(rng, 4, 4)
    a_y, a_x = rng.normal(size=(2, 3)), np.zeros((2, 4))
    crown = output_bounds(net, lo, hi, a_y, a_x)
    ibp = output_bounds(net, lo, hi, a_y, a_x, method="interval")
    for b in range(4):
        X = lo[b] + (hi[b] - lo[b]) * rng.random((4000, 4))
        vals = net(X) @ a_y.T
        assert np.all(vals.min(0) >= crown["lower"][b] - 1e-9)
        assert np.all(crown["lower"][b] >= ibp["lower"][b] - 1e-12)
    assert np.any(crown["lower"] > ibp["lower"] + 1e-6)


def test_bad_inputs_raise_typed_errors():
    rng = np.random.default_rng(0)
    net = random_net(rng, nncert.ReLU(), False)
    lo, hi = np.zeros(3), np.ones(3)
    with pytest.raises(ShapeError):
        output_bounds(net, lo, hi, np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(InvalidInputError, match="empty"):
        output_bounds(net, hi, lo, np.ones((1, 2)), np.ones((1, 3)))
    with pytest.raises(InvalidInputError, match="method"):
        output_bounds(net, lo, hi, np.ones((1, 2)), np.ones((1, 3)), method="magic")
    hh = nncert.Network([nncert.Dense(np.ones((2, 3))), nncert.Householder(0.3), nncert.Dense(np.ones((1, 2)))])
    with pytest.raises(UnsupportedModelError, match="Householder"):
        output_bounds(hh, lo, hi, np.ones((1, 1)), np.ones((1, 3)))


@pytest.mark.gpu
def test_bounds_on_cuda_match_the_rust_core():
    rng = np.random.default_rng(11)
    for act in ACTS:
        net = random_net(rng, act, True)
        lo, hi = boxes(rng, 8, 3)
        a_y, a_x = rng.normal(size=(3, 2)), rng.normal(size=(3, 3))
        t = output_bounds(net, lo, hi, a_y, a_x, device="cuda")
        for b in range(len(lo)):
            r = _core.output_bounds(net._core, lo[b], hi[b], a_y, a_x)
            np.testing.assert_allclose(t["lower"][b], r["lower"], rtol=0, atol=1e-8)


@pytest.mark.parametrize("act", [nncert.ReLU(), nncert.LeakyReLU(0.2), nncert.LeakyReLU(2.0), nncert.MaxMin()],
                         ids=repr)
@pytest.mark.parametrize("residual", [False, True])
def test_optimised_slopes_match_the_rust_core(act, residual):
    """alpha-CROWN on the torch path (nncert.torch_backend.optimize), 12 boxes and 2 rows at once: the core's
    optimised bounds (same projected Adam, 20 steps, per row) to 1e-9, never below fixed-slope CROWN, never above
    a sampled output; warm-started from its own best slopes a box can only improve, and boxes outside
    ``warm_mask`` repeat the cold run exactly."""
    from nncert.torch_backend.bab import _acts
    from nncert.torch_backend.compiled import compiled
    from nncert.torch_backend.optimize import optimise
    from nncert.torch_backend.propagate import objective, propagate

    rng = np.random.default_rng(11)
    net = random_net(rng, act, residual)
    lo, hi = boxes(rng, 12, 3)
    a_y, a_x = rng.normal(size=(2, 2)), 0.3 * rng.normal(size=(2, 3))
    t = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64))  # noqa: E731
    p = propagate(net, t(lo), t(hi))
    A_y, A_x = t(a_y).expand(12, 2, 2), t(a_x).expand(12, 2, 3)
    crown, _ = objective(p, A_y, A_x)
    acts = _acts(compiled(net, torch.device("cpu"), torch.float64), [])
    inf = torch.full((12, 2), float("inf"), dtype=torch.float64)
    opt, _, params, _ = optimise(p, acts, A_y, A_x, inf, iters=20)
    got = torch.maximum(opt, crown).numpy()
    xs = rng.uniform(lo[:, None], hi[:, None], size=(12, 400, 3))
    for b in range(12):
        core = _core.output_bounds(net._core, lo[b], hi[b], a_y, a_x, opt_iters=20)["lower"]
        np.testing.assert_allclose(got[b], core, rtol=0, atol=1e-9)
        vals = net(xs[b]) @ a_y.T + xs[b] @ a_x.T
        assert np.all(got[b] <= vals.min(0) + 1e-9)
    assert np.all(got >= crown.numpy() - 1e-12)
    if act == nncert.ReLU() and not residual:
        assert (got - crown.numpy()).sum() > 1e-3  # the optimisation does something here
    half = torch.arange(12) < 6
    again, _, _, _ = optimise(p, acts, A_y, A_x, inf, warm=params, warm_mask=half, iters=20)
    again = torch.maximum(again, crown).numpy()
    assert np.all(again[:6] >= got[:6] - 1e-12)
    np.testing.assert_array_equal(again[6:], got[6:])


@pytest.mark.gpu
@pytest.mark.parametrize("residual", [False, True])
def test_optimised_slopes_on_cuda_replay_one_graph_and_match_the_core(monkeypatch, residual):
    """On CUDA the Adam steps of alpha-CROWN replay one captured graph: the same bounds as the eager steps on the
    device and as the core, and the capture does not fall back."""
    from nncert.torch_backend import optimize
    from nncert.torch_backend.bab import _acts
    from nncert.torch_backend.compiled import compiled
    from nncert.torch_backend.propagate import objective, propagate

    graphed = []
    real = optimize._graphed_steps
    monkeypatch.setattr(optimize, "_graphed_steps", lambda *a: graphed.append(real(*a)) or graphed[-1])
    rng = np.random.default_rng(5)
    net = random_net(rng, nncert.ReLU(), residual)
    lo, hi = boxes(rng, 16, 3)
    a_y, a_x = rng.normal(size=(2, 2)), 0.3 * rng.normal(size=(2, 3))
    dev = torch.device("cuda")
    t = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64), device=dev)  # noqa: E731
    p = propagate(net, t(lo), t(hi))
    A_y, A_x = t(a_y).expand(16, 2, 2), t(a_x).expand(16, 2, 3)
    crown, _ = objective(p, A_y, A_x)
    acts = _acts(compiled(net, dev, torch.float64), [])
    inf = torch.full((16, 2), float("inf"), dtype=torch.float64, device=dev)
    got = torch.maximum(optimize.optimise(p, acts, A_y, A_x, inf, iters=20)[0], crown).cpu().numpy()
    assert graphed == [20] and optimize._graphs["enabled"]
    monkeypatch.setitem(optimize._graphs, "enabled", False)
    eager = torch.maximum(optimize.optimise(p, acts, A_y, A_x, inf, iters=20)[0], crown).cpu().numpy()
    assert graphed == [20]
    np.testing.assert_allclose(got, eager, rtol=0, atol=1e-12)
    for b in range(16):
        core = _core.output_bounds(net._core, lo[b], hi[b], a_y, a_x, opt_iters=20)["lower"]
        np.testing.assert_allclose(got[b], core, rtol=0, atol=1e-9)
