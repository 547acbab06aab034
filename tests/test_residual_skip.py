"""Residual blocks with a linear skip, y = S x + f(x): forward pass and Jacobian against numpy, bad input,
files and torch round trips, bound propagation and verification against an exact MILP oracle (the block
flattened into a plain ReLU network: S x = relu(S x) - relu(-S x)), and Lipschitz bounds."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert import _core
from nncert.errors import InvalidInputError, ShapeError

from reference import forward as ref_forward
from test_verify_oracle import milp_margin


def D(rng, m, n, s=1.0, bias=True):
    return nncert.Dense(s * rng.standard_normal((m, n)), 0.3 * rng.standard_normal(m) if bias else None)


def skip_net(rng, act=nncert.ReLU, n=3, m=4, h=6, out=2, s=0.8):
    """Dense -> act -> Residual([Dense, act, Dense], skip=S) -> Residual([Dense, act], skip=S2) -> Dense."""
    return nncert.Network([
        D(rng, m, n), act(),
        nncert.Residual([D(rng, h, m, 0.6), act(), D(rng, m, h, 0.6)], skip=s * rng.standard_normal((m, m))),
        nncert.Residual([D(rng, m, m, 0.5), act()], skip=s * rng.standard_normal((m, m))),
        D(rng, out, m)])


# ------------------------------------------------------------------ network
def test_forward_and_jacobian_match_numpy(rng):
    for act in (nncert.ReLU, nncert.Tanh, nncert.MaxMin, nncert.Sigmoid):
        net = skip_net(rng, act)
        x = rng.standard_normal((50, 3))
        np.testing.assert_allclose(net(x), ref_forward(net.layers, x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(net(x.astype(np.float32)), ref_forward(net.layers, x), rtol=1e-4, atol=1e-4)
        h = 1e-6
        for x0 in x[:5]:
            J = net.jacobian(x0)
            fd = np.stack([(ref_forward(net.layers, (x0 + h * e)[None]) - ref_forward(net.layers, (x0 - h * e)[None]))[0]
                           / (2 * h) for e in np.eye(3)], axis=1)
            np.testing.assert_allclose(J, fd, rtol=1e-5, atol=1e-6)


def test_identity_skip_is_the_plain_residual_and_params_count_s(rng):
    inner = [D(rng, 4, 4), nncert.Tanh()]
    a = nncert.Residual(inner)
    b = nncert.Residual(inner, skip=np.eye(4))
    assert b.skip is None and a == b and a.spec() == b.spec()
    c = nncert.Residual(inner, skip=2 * np.eye(4))
    assert c != a and "skip=4x4" in repr(c)
    net = nncert.Network([c])
    assert net.num_params == 4 * 4 + 4 + 16 and "S x + f(x)" in net.summary()
    x = rng.standard_normal((7, 4))
    np.testing.assert_allclose(net(x), 2 * x + np.tanh(x @ inner[0].W.T + inner[0].b), atol=1e-12)


def test_skip_alone_fixes_the_input_width():
    S = np.array([[0.0, 1.0], [1.0, 0.0]])
    net = nncert.Network([nncert.Residual([nncert.ReLU()], skip=S)])
    assert net.input_dim == 2
    np.testing.assert_allclose(net(np.array([-1.0, 2.0])), [2.0 + 0.0, -1.0 + 2.0])


def test_bad_skips_raise_typed_errors(rng):
    inner = [nncert.Dense(np.ones((3, 3)))]
    with pytest.raises(ShapeError, match="square"):
        nncert.Residual(inner, skip=np.ones((3, 2)))
    with pytest.raises(ShapeError):
        nncert.Residual(inner, skip=np.ones(3))
    with pytest.raises(InvalidInputError, match="skip"):
        nncert.Residual(inner, skip=np.array([[1.0, np.nan, 0], [0, 1, 0], [0, 0, 1]]))
    with pytest.raises(ShapeError, match="width"):
        nncert.Network([nncert.Residual(inner, skip=np.eye(4) * 2)])
    with pytest.raises(ShapeError, match="skip matrix"):
        nncert.Network([nncert.Dense(np.ones((3, 2))), nncert.Residual([nncert.ReLU()], skip=2 * np.eye(4))])


def test_npz_round_trip(tmp_path, rng):
    net = skip_net(rng)
    p = tmp_path / "skip.npz"
    net.save_npz(p)
    back = nncert.Network.from_npz(p)
    assert back == net
    assert back.layers[2].skip is not None
    np.testing.assert_array_equal(back.layers[2].skip, net.layers[2].skip)
    x = rng.standard_normal((9, 3))
    np.testing.assert_array_equal(back(x), net(x))


def test_torch_round_trip_and_trainable_skip(rng):
    torch = pytest.importorskip("torch")
    from nncert import torch as nt

    net = skip_net(rng, nncert.MaxMin)
    mod = net.to_torch()
    x = rng.standard_normal((11, 3))
    np.testing.assert_allclose(mod(torch.tensor(x)).detach().numpy(), net(x), rtol=1e-12, atol=1e-12)
    back = nncert.Network.from_torch(mod)
    assert back == net
    # a module built by hand: a skip given as a tensor becomes a bias-free Linear
    S = rng.standard_normal((4, 4))
    m = torch.nn.Sequential(torch.nn.Linear(3, 4).double(),
                            nt.Residual(torch.nn.Linear(4, 4).double(), torch.nn.ReLU(), skip=torch.tensor(S)))
    conv = nncert.Network.from_torch(m)
    np.testing.assert_array_equal(conv.layers[1].skip, S)
    np.testing.assert_allclose(conv(x), m(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ShapeError):
        nt.Residual(torch.nn.ReLU(), skip=torch.ones(2, 3))


# ------------------------------------------------------------------ bounds and verification
@pytest.mark.parametrize("act", [nncert.ReLU, nncert.LeakyReLU, nncert.Tanh, nncert.MaxMin])
def test_bounds_enclose_samples(act):
    rng = np.random.default_rng(3)
    for _ in range(3):
        net = skip_net(rng, act)
        lo = rng.uniform(-1, 0.3, 3)
        hi = lo + rng.uniform(0.05, 1.0, 3)
        a_y, a_x = rng.standard_normal((3, 2)), 0.3 * rng.standard_normal((3, 3))
        X = lo + (hi - lo) * rng.random((3000, 3))
        X[:8] = np.array(np.meshgrid(*zip(lo, hi))).reshape(3, -1).T  # the vertices
        vals = net(X) @ a_y.T + X @ a_x.T
        for method in ("interval", "crown"):
            r = _core.output_bounds(net._core, lo, hi, a_y, a_x, method=method)
            assert np.all(vals >= r["lower"] - 1e-9), method
            Y = net(X)
            assert np.all(Y >= r["out_lo"] - 1e-9) and np.all(Y <= r["out_hi"] + 1e-9)
        crown = _core.output_bounds(net._core, lo, hi, a_y, a_x, method="crown")["lower"]
        ibp = _core.output_bounds(net._core, lo, hi, a_y, a_x, method="interval")["lower"]
        assert np.all(crown >= ibp - 1e-9)


def test_torch_bounds_match_the_core(rng):
    pytest.importorskip("torch")
    from nncert.torch_backend.propagate import output_bounds

    for act in (nncert.ReLU, nncert.MaxMin):
        net = skip_net(rng, act)
        lo = rng.uniform(-1, 0.3, (4, 3))
        hi = lo + rng.uniform(0.05, 1.0, (4, 3))
        a_y, a_x = rng.standard_normal((3, 2)), rng.standard_normal((3, 3))
        for method in ("crown", "interval"):
            t = output_bounds(net, lo, hi, a_y, a_x, method=method)
            for b in range(4):
                r = _core.output_bounds(net._core, lo[b], hi[b], a_y, a_x, method=method)
                np.testing.assert_allclose(t["lower"][b], r["lower"], rtol=0, atol=1e-8)
                np.testing.assert_allclose(t["out_hi"][b], r["out_hi"], rtol=0, atol=1e-8)


def _flatten(net: nncert.Network) -> nncert.Network:
    """The same function as a plain ReLU network: Residual([Dense(W, b), ReLU, Dense(G, g)], skip=S) becomes
    Dense([W; S; -S], [b; 0; 0]) -> ReLU -> Dense([G, I, -I], g), exact because S x = relu(S x) - relu(-S x)."""
    out = []
    for l in net.layers:
        if isinstance(l, nncert.Residual):
            d1, _, d2 = l.layers
            m = d1.in_features
            S = np.eye(m) if l.skip is None else l.skip
            out += [nncert.Dense(np.vstack([d1.W, S, -S]), np.concatenate([d1.b, np.zeros(2 * m)])), nncert.ReLU(),
                    nncert.Dense(np.hstack([d2.W, np.eye(m), -np.eye(m)]), d2.b)]
        else:
            out.append(l)
    return nncert.Network(out)


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def _oracle_case(rng):
    n, m, h = int(rng.integers(2, 4)), int(rng.choice([3, 4])), int(rng.choice([4, 6]))
    k_out = int(rng.integers(1, 3))
    net = nncert.Network([
        D(rng, m, n), nncert.ReLU(),
        nncert.Residual([D(rng, h, m, 0.7), nncert.ReLU(), D(rng, m, h, 0.7)], skip=rng.standard_normal((m, m))),
        D(rng, k_out, m)])
    centre, rad = rng.uniform(-1, 1, n), rng.uniform(0.2, 1.0, n)
    lo, hi = centre - rad, centre + rad
    a_y = rng.standard_normal((1, k_out))
    a_x = np.zeros((1, n))
    X = lo + (hi - lo) * rng.random((400, n))
    vals = net(X) @ a_y.T
    spread = vals.max(0) - vals.min(0) + 1e-3
    c = vals.min(0) + spread * rng.uniform(-0.25, 0.15, 1)
    return net, nncert.Property([(lo, hi)], [(a_y, a_x, c)])


def test_verify_agrees_with_milp_oracle():
    rng = np.random.default_rng(77)
    seen = {"holds": 0, "violated": 0}
    for case in range(40):
        net, prop = _oracle_case(rng)
        flat = _flatten(net)
        X = rng.uniform(-2, 2, (20, net.input_dim))
        np.testing.assert_allclose(flat(X), net(X), atol=1e-10)
        truth = milp_margin(flat, prop)
        if abs(truth) < 1e-6:
            continue
        want = "holds" if truth > 0 else "violated"
        for attack in (True, False):
            r = nncert.verify(net, prop, timeout=20.0, attack=attack, seed=case)
            assert r.status == want, f"case {case} attack={attack}: {r.status}, MILP margin {truth:.3g}"
            if r.status == "violated":
                x, y = r.counterexample
                assert np.allclose(y, net(x)) and prop.in_region(0, x)
        if case < 16 and _has_torch():  # the torch branch and bound (CPU here; the same code runs on CUDA)
            r = nncert.verify(net, prop, timeout=20.0, attack=False, backend="torch")
            assert r.status == want, f"case {case} (torch): {r.status}, MILP margin {truth:.3g}"
        seen[want] += 1
    assert seen["holds"] >= 5 and seen["violated"] >= 5, seen


def test_whole_network_z3_agrees_with_oracle():
    rng = np.random.default_rng(5)
    decided = 0
    for case in range(10):
        net, prop = _oracle_case(rng)
        truth = milp_margin(_flatten(net), prop)
        if abs(truth) < 1e-6:
            continue
        r = nncert.verify(net, prop, timeout=10.0, method="smt")
        if r.status in ("timeout", "unknown"):
            # unknown: a Z3 model exactly on the unsafe set's boundary at a local minimum (a kink), which neither
            # replays in float32 nor can be pushed inside (seen once here); incomplete, never wrong
            continue
        assert r.status == ("holds" if truth > 0 else "violated"), (case, r, truth)
        decided += 1
    assert decided >= 5, decided


# ------------------------------------------------------------------ Lipschitz
def test_naive_bound_is_norm_of_s_plus_inner_bound(rng):
    S = rng.standard_normal((4, 4))
    W = rng.standard_normal((4, 4))
    net = nncert.Network([nncert.Residual([nncert.Dense(W), nncert.ReLU()], skip=S)])
    want = np.linalg.norm(S, 2) + np.linalg.norm(W, 2)
    r = nncert.lipschitz(net, method="naive")
    assert want <= r.bound <= want * (1 + 1e-9)
    want_inf = np.abs(S).sum(1).max() + np.abs(W).sum(1).max()
    r = nncert.lipschitz(net, norm="inf", method="naive")
    assert want_inf <= r.bound <= want_inf * (1 + 1e-9)


def test_chain_carries_the_skip(rng):
    net = skip_net(rng)
    ch = _core.lipschitz_chain(net._core)
    res = [st for st in ch["stages"] if st["residual"]]
    assert len(res) == 2 and all("S" in st and "skip" in st["layer"] for st in res)
    np.testing.assert_array_equal(res[0]["S"], net.layers[2].skip)
    plain = nncert.Network([D(rng, 4, 3), nncert.Residual([D(rng, 4, 4), nncert.ReLU()])])
    assert all("S" not in st for st in _core.lipschitz_chain(plain._core)["stages"])


@pytest.mark.parametrize("seed", range(4))
def test_sdp_bounds_are_certified_and_between_lower_and_naive(seed):
    rng = np.random.default_rng(seed)
    for act, method in ((nncert.ReLU, "lipsdp-neuron"), (nncert.Tanh, "lipsdp-layer"), (nncert.MaxMin, "nsr")):
        net = skip_net(rng, act, s=0.5)
        r = nncert.lipschitz(net, method=method)
        assert r.certified and r.lower_bound <= r.bound <= r.naive_bound * (1 + 1e-9), (act, r)
        # the directly built SCS data (tight tolerance) against the cvxpy model solved by an interior-point method
        tight = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 100_000}
        r = nncert.lipschitz(net, method=method, solver="SCS", solver_options=tight)  # (nsr's default is the IPM)
        ref = nncert.lipschitz(net, method=method, solver="CLARABEL")
        assert ref.certified and abs(r.bound - ref.bound) <= 1e-4 * ref.bound, (r.bound, ref.bound)
        if seed == 0:
            cv = nncert.lipschitz(net, method=method, solver="SCS", solver_options={"backend": "cvxpy", **tight})
            assert abs(cv.bound - ref.bound) <= 1e-4 * ref.bound
            lf = nncert.lipschitz(net, norm="inf", output=0, method=method, solver="CLARABEL")
            assert lf.certified and lf.lower_bound <= lf.bound


def test_linf_and_torch_certificate_with_skip(rng):
    pytest.importorskip("torch")
    net = skip_net(rng, nncert.ReLU, s=0.5)
    a = nncert.lipschitz(net, method="lipsdp-neuron", solver="CLARABEL")
    b = nncert.lipschitz(net, method="lipsdp-neuron", solver="CLARABEL", backend="torch", device="cpu")
    assert b.certified and b.bound == pytest.approx(a.bound, rel=1e-6)
    assert [l["size"] for l in a.details["lmis"]] == [l["size"] for l in b.details["lmis"]]


def test_skip_equal_to_a_scaled_identity_scales_the_block(rng):
    # y = 2 x + 2 g(x) with g = G relu(W x): the same map as Residual([W, relu, G]) followed by 2 I, so the
    # sampled lower bounds agree exactly and the certified bounds bracket the same constant.
    W, G = 0.5 * rng.standard_normal((4, 4)), 0.5 * rng.standard_normal((4, 4))
    a = nncert.Network([nncert.Residual([nncert.Dense(W), nncert.ReLU(), nncert.Dense(2 * G)], skip=2 * np.eye(4))])
    b = nncert.Network([nncert.Residual([nncert.Dense(W), nncert.ReLU(), nncert.Dense(G)]), nncert.Dense(2 * np.eye(4))])
    x = rng.standard_normal((10, 4))
    np.testing.assert_allclose(a(x), b(x), atol=1e-12)
    ra = nncert.lipschitz(a, method="lipsdp-neuron", solver="CLARABEL")
    rb = nncert.lipschitz(b, method="lipsdp-neuron", solver="CLARABEL")
    assert ra.certified and rb.certified
    assert ra.bound == pytest.approx(rb.bound, rel=1e-5)


def test_repair_of_a_dented_free_multiplier_stays_near_the_optimum(rng):
    # Interior-point multipliers with a rank-one dent in a free interface multiplier X_k: the certificate repairs
    # through X_k itself (low rank), so the certified bound stays within 1e-4 of the optimum (a raise of X_k by a
    # multiple of the identity would cascade through the earlier residual LMIs).
    from nncert.lipschitz import sdp

    net = skip_net(rng, nncert.MaxMin, s=0.5)
    chain = _core.lipschitz_chain(net._core)
    rho, d, mults, _, _ = sdp.solve(chain, "2", "neuron", "CLARABEL")
    opt = _core.lipschitz_certify(net._core, "2", rho, mults, d, None, True)
    assert opt["certified"]
    k = next(i for i, st in enumerate(chain["stages"]) if st["residual"])
    X = mults[k]["X"]
    u = rng.standard_normal(X.shape[0])
    u /= np.linalg.norm(u)
    mults[k]["X"] = X - 1e-4 * np.linalg.norm(X, 2) * np.outer(u, u)
    bad = _core.lipschitz_certify(net._core, "2", rho, mults, d, None, False)
    assert not bad["certified"]
    fixed = _core.lipschitz_certify(net._core, "2", rho, mults, d, None, True)
    assert fixed["certified"] and fixed["repaired"]
    # (measured: +7e-8 relative; the identity raise alone gives +3.7e-4)
    assert opt["bound"] * (1 - 1e-6) <= fixed["bound"] <= opt["bound"] * (1 + 1e-4), (opt["bound"], fixed["bound"])
    lower = nncert.lipschitz(net, method="naive").lower_bound
    assert fixed["bound"] >= lower


def test_residual_chains_get_the_tighter_scs_defaults(rng):
    from nncert.lipschitz import direct

    res = nncert.lipschitz(skip_net(rng, nncert.MaxMin, s=0.5), method="nsr", solver="SCS")
    assert res.details["scs_settings"]["eps_abs"] == direct.RESIDUAL_DEFAULTS["eps_abs"] == 1e-6
    plain = nncert.Network([D(rng, 4, 3), nncert.MaxMin(), D(rng, 2, 4)])
    r = nncert.lipschitz(plain, method="nsr", solver="SCS")
    assert r.details["scs_settings"]["eps_abs"] == direct.DEFAULTS["eps_abs"] == 1e-5
    r = nncert.lipschitz(plain, method="nsr", solver="SCS", solver_options={"eps_abs": 1e-7})
    assert r.details["scs_settings"]["eps_abs"] == 1e-7
