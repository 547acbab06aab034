"""Implicit (equilibrium) layers z = act(W z + U x + b): well-posedness, forward, Jacobian, rejection by the
analyses that do not handle them, npz, and certified Lipschitz bounds (references: numpy, hand cases, the
equivalent explicit network, finite differences, the sampled lower bound, cvxpy/Clarabel)."""

import json

import numpy as np
import pytest

import nncert

ACTS = [nncert.ReLU(), nncert.LeakyReLU(0.2), nncert.Tanh(), nncert.Sigmoid(), nncert.MaxMin(),
        nncert.GroupSort(3), nncert.Householder(0.7, "halves")]


def act_np(act, V):
    """The activation applied to the rows of V, through a one-layer nncert network (itself tested elsewhere)."""
    return nncert.Network([act], input_dim=V.shape[1])(V)


def contraction_W(rng, m, q):
    W = rng.standard_normal((m, m))
    return W * (q / np.linalg.norm(W, 2))


def monotone_W(rng, m, shift=0.5, skew=1.5):
    """I - (W + W^T)/2 = (1 + shift) I > 0 while ||W|| > 1: only the monotone certificate holds."""
    A = rng.standard_normal((m, m))
    return -shift * np.eye(m) + skew * (A - A.T)


def residual(layer, X, Z):
    return np.abs(Z - act_np(layer.activation, Z @ layer.W.T + X @ layer.U.T + layer.b)).max()


# ------------------------------------------------------------------ layer, well-posedness, forward

@pytest.mark.parametrize("act", ACTS, ids=lambda a: type(a).__name__)
def test_equilibrium_residual_is_at_rounding_level(act):
    rng = np.random.default_rng(0)
    m, n = 6, 4
    lay = nncert.Implicit(contraction_W(rng, m, 0.9), rng.standard_normal((m, n)), rng.standard_normal(m), act)
    net = nncert.Network([lay])
    X = 3 * rng.standard_normal((50, n))
    Z = net(X)
    assert Z.shape == (50, m) and Z.dtype == np.float64
    assert residual(lay, X, Z) < 1e-12 * (1 + np.abs(Z).max())
    Z32 = net(X.astype(np.float32))
    assert Z32.dtype == np.float32
    np.testing.assert_allclose(Z32, net(X.astype(np.float32).astype(np.float64)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(net(X[3]), Z[3], rtol=0, atol=1e-12)


@pytest.mark.parametrize("act", [nncert.ReLU(), nncert.Tanh(), nncert.LeakyReLU(0.5), nncert.Sigmoid()],
                         ids=lambda a: type(a).__name__)
def test_monotone_only_layers_are_accepted_and_solved(act):
    rng = np.random.default_rng(1)
    m, n = 8, 3
    W = monotone_W(rng, m)
    assert np.linalg.norm(W, 2) > 4  # no contraction, even for Sigmoid (beta = 1/4)
    lay = nncert.Implicit(W, rng.standard_normal((m, n)), rng.standard_normal(m), act)
    net = nncert.Network([nncert.Dense(rng.standard_normal((n, 2))), lay])
    info = net.implicit_info()
    assert len(info) == 1 and info[0]["path"] == "layer 1" and info[0]["certificate"] == "monotone"
    assert info[0]["iteration"] == "peaceman-rachford"
    assert abs(info[0]["monotone_margin"] - 1.5) < 1e-9 and info[0]["contraction"] > 1
    X = rng.standard_normal((300, 2))
    Z = net(X)
    H = X @ net.layers[0].W.T + net.layers[0].b
    assert residual(lay, H, Z) < 1e-11 * (1 + np.abs(Z).max())
    assert "monotone" in net.summary()


def test_scalar_relu_layer_by_hand():
    # z = relu(w z + u x) has z = relu(u x / (1 - w)) for every w < 1 (contraction for |w| < 1, monotone otherwise)
    for w in (0.0, 0.6, 0.95, -3.0):
        net = nncert.Network([nncert.Implicit([[w]], [[2.0]], [0.5])])
        x = np.linspace(-2, 2, 41)[:, None]
        np.testing.assert_allclose(net(x)[:, 0], np.maximum((2 * x[:, 0] + 0.5) / (1 - w), 0), rtol=1e-11, atol=1e-12)
        assert net.implicit_info()[0]["certificate"] == ("contraction" if abs(w) < 1 else "monotone")


@pytest.mark.parametrize("act", ACTS, ids=lambda a: type(a).__name__)
def test_zero_feedback_is_dense_then_activation(act):
    rng = np.random.default_rng(2)
    U, b = rng.standard_normal((6, 4)), rng.standard_normal(6)
    X = rng.standard_normal((20, 4))
    a = nncert.Network([nncert.Implicit(np.zeros((6, 6)), U, b, act)])
    d = nncert.Network([nncert.Dense(U, b), act])
    np.testing.assert_array_equal(a(X), d(X))
    np.testing.assert_allclose(a.jacobian(X[0]), d.jacobian(X[0]), rtol=0, atol=1e-15)


def test_large_batches_are_split_and_agree_with_single_rows():
    rng = np.random.default_rng(3)
    lay = nncert.Implicit(monotone_W(rng, 5), rng.standard_normal((5, 3)), None, nncert.ReLU())
    net = nncert.Network([lay, nncert.Dense(rng.standard_normal((2, 5)))])
    X = rng.standard_normal((5000, 3))
    Y = net(X)
    for i in (0, 2047, 2048, 4999):
        np.testing.assert_allclose(Y[i], net(X[i]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mono", [False, True])
def test_jacobian_and_gradients_match_finite_differences(mono):
    rng = np.random.default_rng(4)
    m, n = 7, 4
    for trial in range(4):
        act = [nncert.Tanh(), nncert.LeakyReLU(0.3)][trial % 2] if mono else ACTS[trial + 3]
        W = monotone_W(rng, m, 0.3, 1.0) if mono else contraction_W(rng, m - (m % 2 if trial else 0), 0.8)
        mm = W.shape[0]
        net = nncert.Network([nncert.Implicit(W, rng.standard_normal((mm, n)), rng.standard_normal(mm), act),
                              nncert.Dense(rng.standard_normal((3, mm)))])
        x = rng.standard_normal(n)
        J = net.jacobian(x)
        h = 1e-6
        fd = np.stack([(net(x + h * e) - net(x - h * e)) / (2 * h) for e in np.eye(n)], axis=1)
        np.testing.assert_allclose(J, fd, rtol=1e-5, atol=1e-6)
        c = rng.standard_normal(3)
        y, g = net.input_gradient(x[None], c)
        np.testing.assert_allclose(g[0], c @ J, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y[0], net(x), rtol=1e-12, atol=1e-12)


def test_not_well_posed_layers_raise_naming_the_layer_and_numbers():
    U = np.ones((2, 2))
    with pytest.raises(nncert.UnsupportedModelError, match=r"layer 1: Implicit .*2\.000000 = 2\.0.*lambda_min.*-1\.0"):
        nncert.Network([nncert.Dense(np.eye(2)), nncert.Implicit(2 * np.eye(2), U)])
    # a grouped activation has no monotone certificate
    with pytest.raises(nncert.UnsupportedModelError, match="MaxMin is not an element-wise activation"):
        nncert.Network([nncert.Implicit(-3 * np.eye(2), U, activation=nncert.MaxMin())])
    # the same W is fine for ReLU (monotone certificate)
    assert nncert.Network([nncert.Implicit(-3 * np.eye(2), U)]).implicit_info()[0]["certificate"] == "monotone"
    # LeakyReLU with slope > 1 is not a proximal map; beta = 2 breaks the contraction
    with pytest.raises(nncert.UnsupportedModelError, match="LeakyReLU is not"):
        nncert.Network([nncert.Implicit(0.6 * np.eye(2), U, activation=nncert.LeakyReLU(2.0))])
    with pytest.raises(nncert.ShapeError, match="W has shape"):
        nncert.Implicit(np.eye(3), U)
    with pytest.raises(nncert.ShapeError, match="b has length"):
        nncert.Implicit(np.eye(2), U, [0.0])
    with pytest.raises(nncert.InvalidInputError, match="activation"):
        nncert.Implicit(np.eye(2) * 0.1, U, activation=nncert.Dense(np.eye(2)))
    with pytest.raises(nncert.ShapeError, match="width 3 is not a multiple"):
        nncert.Network([nncert.Implicit(np.zeros((3, 3)), np.ones((3, 1)), activation=nncert.MaxMin())])
    with pytest.raises(nncert.ShapeError, match=r"layer 1 \(Implicit\): expects input width 2"):
        nncert.Network([nncert.Dense(np.ones((3, 2))), nncert.Implicit(np.zeros((2, 2)), U)])
    with pytest.raises(nncert.InvalidInputError):
        nncert.Implicit(np.full((2, 2), np.nan), U)


def test_a_solve_that_does_not_converge_is_an_error_not_an_answer():
    # well-posed, but the guaranteed rate (1 - 2e-6) needs more iterations than the cap allows
    net = nncert.Network([nncert.Implicit([[0.999999]], [[1.0]])])
    assert net.implicit_info()[0]["max_iters"] == 200_000
    with pytest.raises(nncert.SolverError, match=r"layer 0: Implicit .* did not converge in 200000 iterations"):
        net(np.array([[1.0]]))
    with pytest.raises(nncert.SolverError, match="did not converge"):
        net.jacobian(np.array([1.0]))
    # the same layer at 1 - 1e-4 converges; the equilibrium 1 / (1 - w) is then conditioned by 1 / (1 - w)
    net = nncert.Network([nncert.Implicit([[0.9999]], [[1.0]])])
    np.testing.assert_allclose(net(np.array([[1.0]]))[0, 0], 1e4, rtol=1e-9)


def test_layer_api():
    lay = nncert.Equilibrium(0.1 * np.eye(2), np.ones((2, 3)), activation=nncert.Tanh)
    assert nncert.Equilibrium is nncert.Implicit and isinstance(lay.activation, nncert.Tanh)
    assert (lay.in_features, lay.out_features) == (3, 2) and "Implicit(3 -> 2" in repr(lay)
    assert lay == nncert.Implicit(0.1 * np.eye(2), np.ones((2, 3)), np.zeros(2), nncert.Tanh())
    assert lay != nncert.Implicit(0.1 * np.eye(2), np.ones((2, 3)), np.zeros(2), nncert.ReLU())
    net = nncert.Network([lay])
    assert net.num_params == 4 + 6 + 2 and net.widths() == [("Implicit", 2)]


def test_npz_round_trip_and_cli(tmp_path, capsys):
    rng = np.random.default_rng(5)
    net = nncert.Network([nncert.Dense(rng.standard_normal((4, 3)), rng.standard_normal(4)),
                          nncert.Implicit(monotone_W(rng, 4), rng.standard_normal((4, 4)), rng.standard_normal(4),
                                          nncert.LeakyReLU(0.1)),
                          nncert.Residual([nncert.Dense(0.1 * np.eye(4)), nncert.Tanh()]),
                          nncert.Dense(rng.standard_normal((1, 4)))])
    p = tmp_path / "imp.npz"
    net.save_npz(p)
    back = nncert.Network.from_npz(p)
    assert back == net
    X = rng.standard_normal((10, 3))
    np.testing.assert_array_equal(back(X), net(X))
    from nncert.cli import main
    assert main(["lipschitz", str(p), "--json"]) == 0
    res = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert res["certified"] and res["bound"] >= res["lower_bound"] > 0
    assert res["naive_bound"] is None  # the implicit layer is monotone, not a contraction
    assert main(["lipschitz", str(p)]) == 0
    assert "unavailable" in capsys.readouterr().out
    assert res["method"] == "lipsdp-neuron"


def test_other_analyses_reject_implicit_layers():
    rng = np.random.default_rng(6)
    net = nncert.Network([nncert.Dense(rng.standard_normal((3, 2))),
                          nncert.Implicit(contraction_W(rng, 3, 0.5), rng.standard_normal((3, 3))),
                          nncert.Dense(rng.standard_normal((2, 3)))])
    prop = nncert.Property.robustness(np.zeros(2), 0.1, 0, lo=-1.0, hi=1.0)
    for method in ("auto", "bab", "smt"):
        with pytest.raises(nncert.UnsupportedModelError, match="layer 1 is Implicit"):
            nncert.verify(net, prop, timeout=5, method=method)
    with pytest.raises(nncert.UnsupportedModelError, match="layer 1 is Implicit"):
        nncert.verify_region(net, np.zeros(2), 0.1, 0.05)
    from nncert import _core
    with pytest.raises(nncert.UnsupportedModelError, match="layer 1 is Implicit"):
        _core.output_bounds(net._core, -np.ones(2), np.ones(2), np.eye(2), np.zeros((2, 2)))
    from nncert.verify import smt
    with pytest.raises(nncert.UnsupportedModelError, match="Implicit"):
        smt.encode(net, -np.ones(2), np.ones(2))
    for method in ("nsr-full",):
        with pytest.raises(nncert.UnsupportedModelError):
            nncert.lipschitz(net, method=method)
    with pytest.raises(nncert.UnsupportedModelError, match="IPM"):
        nncert.lipschitz(net, solver="IPM")
    nested = nncert.Network([nncert.Residual([nncert.Implicit(0.5 * np.eye(2), np.eye(2))])])
    with pytest.raises(nncert.UnsupportedModelError, match=r"layer 0\.0 is Implicit"):
        nncert.verify(nested, prop, timeout=5)
    # a Residual block around an implicit layer: no SDP, but the naive bound (a contraction) still applies
    r = nncert.lipschitz(nested)
    assert r.method == "naive" and r.bound >= r.lower_bound and abs(r.bound - 3.0) < 1e-9
    torch = pytest.importorskip("torch")
    with pytest.raises(nncert.UnsupportedModelError, match="implicit"):
        net.to_torch()
    with pytest.raises(nncert.UnsupportedModelError, match="implicit"):
        nncert.lipschitz(net, backend="torch", device="cpu")
    with pytest.raises(nncert.UnsupportedModelError):
        nncert.verify(net, prop, timeout=5, backend="torch", device="cpu")
    assert torch is not None


# ------------------------------------------------------------------ Lipschitz bounds

def test_lipschitz_scalar_layer_known_constant():
    # z = relu(w z + u x): L = |u| / (1 - w) for every w < 1
    for w, u in ((0.0, 3.0), (0.5, -2.0), (0.9, 1.0), (-2.0, 3.0)):
        net = nncert.Network([nncert.Implicit([[w]], [[u]], [0.2])])
        r = nncert.lipschitz(net)
        L = abs(u) / (1 - w)
        assert r.certified and r.method == "lipsdp-neuron"
        assert L <= r.bound <= L * (1 + 1e-5), (w, r.bound, L)
        assert abs(r.lower_bound - L) < 1e-9 * L
        if abs(w) < 1:
            assert abs(r.naive_bound - abs(u) / (1 - abs(w))) < 1e-9 * L
        else:
            assert r.naive_bound == np.inf and "naive bound is unavailable" in r.details["naive_unavailable"]


@pytest.mark.parametrize("act,method", [(nncert.ReLU(), "lipsdp-neuron"), (nncert.Tanh(), "lipsdp-layer"),
                                        (nncert.LeakyReLU(0.3), "lipsdp-neuron"), (nncert.MaxMin(), "nsr"),
                                        (nncert.Householder(1.1), "nsr")], ids=lambda a: str(a))
def test_zero_feedback_gives_the_bound_of_the_explicit_network(act, method):
    rng = np.random.default_rng(7)
    U, V = rng.standard_normal((6, 4)), rng.standard_normal((2, 6))
    imp = nncert.Network([nncert.Implicit(np.zeros((6, 6)), U, activation=act), nncert.Dense(V)])
    exp = nncert.Network([nncert.Dense(U), act, nncert.Dense(V)])
    a = nncert.lipschitz(imp, method=method, solver="CLARABEL")
    b = nncert.lipschitz(exp, method=method, solver="CLARABEL")
    assert a.certified and b.certified
    assert abs(a.bound - b.bound) < 1e-5 * b.bound, (a.bound, b.bound)


def _random_implicit_net(rng, k):
    m, n = int(rng.integers(2, 6)) * 2, int(rng.integers(1, 5))
    act = [nncert.ReLU(), nncert.Tanh(), nncert.LeakyReLU(0.2), nncert.Sigmoid(), nncert.MaxMin(),
           nncert.Householder(0.9)][k % 6]
    grouped = isinstance(act, (nncert.MaxMin, nncert.Householder))
    if grouped or k % 2 == 0:
        W = contraction_W(rng, m, rng.uniform(0.2, 0.95) / (0.25 if isinstance(act, nncert.Sigmoid) else 1))
    else:
        W = monotone_W(rng, m, rng.uniform(0.05, 1.0), rng.uniform(0.2, 1.5))
    layers = []
    if k % 3 == 0:
        layers.append(nncert.Dense(rng.standard_normal((n + 1, n))))
        layers.append(nncert.Tanh())
        n = n + 1
    layers.append(nncert.Implicit(W, rng.standard_normal((m, n)), rng.standard_normal(m), act))
    if k % 4 == 1:
        layers.append(nncert.Dense(rng.standard_normal((m, m)) / np.sqrt(m)))
        layers.append(nncert.ReLU())
    layers.append(nncert.Dense(rng.standard_normal((int(rng.integers(1, 4)), m))))
    return nncert.Network(layers)


def test_certified_bounds_on_random_implicit_networks():
    rng = np.random.default_rng(8)
    for k in range(24):
        net = _random_implicit_net(rng, k)
        r = nncert.lipschitz(net, lower_bound_starts=8, lower_bound_steps=30)
        assert r.certified, k
        assert r.bound >= r.lower_bound * (1 - 1e-9) and r.lower_bound > 0, (k, r.bound, r.lower_bound)
        if np.isfinite(r.naive_bound):
            assert r.bound <= r.naive_bound * (1 + 1e-6), (k, r.bound, r.naive_bound)
        for lmi in r.details["lmis"]:
            assert lmi["min_eig_after"] >= lmi["margin"] >= 0, (k, lmi)
        # difference quotients of the forward pass alone (no Jacobian code involved) stay below the bound
        X = rng.standard_normal((400, net.input_dim))
        D = 1e-3 * rng.standard_normal(X.shape)
        q = np.linalg.norm(net(X + D) - net(X), axis=1) / np.linalg.norm(D, axis=1)
        assert q.max() <= r.bound * (1 + 1e-6) and q.max() >= 0.3 * r.lower_bound, (k, q.max(), r.bound)
        # the implicit stage's LMI is (n + m) wide: [[X_k, .], [., .]] over (dz, dz')
        imp = [l for l in net.layers if isinstance(l, nncert.Implicit)][0]
        assert any(lmi["size"] == imp.out_features + imp.in_features and "Implicit" in lmi["name"]
                   for lmi in r.details["lmis"])


def test_scs_direct_matches_the_cvxpy_model_and_linf():
    rng = np.random.default_rng(9)
    wide = nncert.Network([nncert.Implicit(contraction_W(rng, 2, 0.7), rng.standard_normal((2, 6))),
                           nncert.Dense(rng.standard_normal((1, 2)))])  # l2: U restricted to its row space
    for net in [_random_implicit_net(rng, k) for k in (0, 1, 4)] + [wide]:
        k = None
        a = nncert.lipschitz(net, solver="SCS", solver_options={"eps_abs": 1e-8, "eps_rel": 1e-8})
        b = nncert.lipschitz(net, solver="CLARABEL")
        assert abs(a.bound - b.bound) < 1e-4 * b.bound, (k, a.bound, b.bound)
        c = nncert.lipschitz(net, norm="inf", output=0)
        assert c.certified and c.bound >= c.lower_bound * (1 - 1e-9)
        if np.isfinite(c.naive_bound):
            assert c.bound <= c.naive_bound * (1 + 1e-6)


def test_repair_of_an_implicit_block_from_poor_multipliers():
    """The certificate repairs the implicit LMI from zero multipliers (raising T, X and rho), and refuses to
    certify without repair."""
    from nncert import _core
    rng = np.random.default_rng(10)
    for W, act in ((contraction_W(rng, 4, 0.9), nncert.ReLU()), (monotone_W(rng, 4, 0.05, 1.0), nncert.Tanh()),
                   (contraction_W(rng, 4, 0.9), nncert.MaxMin())):
        net = nncert.Network([nncert.Implicit(W, rng.standard_normal((4, 3)), activation=act),
                              nncert.Dense(rng.standard_normal((2, 4)))])
        ch = _core.lipschitz_chain(net._core)
        st = ch["stages"][0]
        assert st["kind"] == "implicit"
        mult = {"t": np.zeros(len(st["groups"]) if st["act"] == "groups" else 4), "X": np.zeros((4, 4))}
        if st["act"] == "groups":
            mult["gamma"] = np.zeros(len(st["groups"]))
        bad = _core.lipschitz_certify(net._core, "2", 0.0, [mult], repair=False)
        assert not bad["certified"]
        cert = _core.lipschitz_certify(net._core, "2", 0.0, [mult], repair=True)
        assert cert["certified"] and cert["repaired"]
        lower = nncert.lipschitz(net, method="lipsdp-neuron" if st["act"] == "sector" else "nsr").lower_bound
        assert cert["bound"] >= lower
        assert all(l["min_eig_after"] >= l["margin"] for l in cert["lmis"])


def _lben_layer(rng, m=6, n=3):
    """W = D^{-1} W~ D with I - (W~ + W~^T)/2 = 1.2 I and a spread D: well-posed in the metric Lambda = D^2 only."""
    A = rng.standard_normal((m, m))
    d = np.array([1, 8, 0.2, 3, 0.5, 5.0])[:m]
    W = np.diag(1 / d) @ (-0.2 * np.eye(m) + (A - A.T)) @ np.diag(d)
    return W, rng.standard_normal((m, n)), rng.standard_normal(m), d ** 2


@pytest.mark.parametrize("act", [nncert.ReLU(), nncert.Tanh(), nncert.Sigmoid(), nncert.LeakyReLU(0.3)],
                         ids=lambda a: type(a).__name__)
def test_weighted_monotone_layers_with_a_given_lambda(act):
    rng = np.random.default_rng(11)
    W, U, b, lam = _lben_layer(rng)
    assert np.linalg.eigvalsh(np.eye(6) - (W + W.T) / 2).min() < -1 and np.linalg.norm(W, 2) > 10
    assert np.linalg.eigvalsh(2 * np.diag(lam) - np.diag(lam) @ W - W.T @ np.diag(lam)).min() > 0
    with pytest.raises(nncert.UnsupportedModelError, match="no well-posedness certificate"):
        nncert.Network([nncert.Implicit(W, U, b, act)])
    with pytest.raises(nncert.UnsupportedModelError, match="weighted monotone operator needs"):
        nncert.Network([nncert.Implicit(W, U, b, act, lam=np.ones(6))])
    lay = nncert.Implicit(W, U, b, act, lam=lam)
    net = nncert.Network([lay, nncert.Dense(rng.standard_normal((2, 6)))])
    info = net.implicit_info()[0]
    assert info["certificate"] == "weighted-monotone" and abs(info["monotone_margin"] - 1.2) < 1e-9
    X = rng.standard_normal((100, 3))
    Z = nncert.Network([lay])(X)
    assert residual(lay, X, Z) < 1e-11 * (1 + np.abs(Z).max())
    x = X[0]
    h = 1e-6
    fd = np.stack([(net(x + h * e) - net(x - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(net.jacobian(x), fd, rtol=1e-5, atol=1e-6)
    r = nncert.lipschitz(net, solver="CLARABEL")
    assert r.certified and r.bound >= r.lower_bound > 0 and r.naive_bound == np.inf


def test_weighted_layer_inputs_and_npz(tmp_path):
    rng = np.random.default_rng(12)
    W, U, b, lam = _lben_layer(rng)
    with pytest.raises(nncert.ShapeError, match="lam has length"):
        nncert.Implicit(W, U, b, lam=lam[:3])
    with pytest.raises(nncert.InvalidInputError, match="positive"):
        nncert.Network([nncert.Implicit(W, U, b, lam=-lam)])
    with pytest.raises(nncert.InvalidInputError, match="slope in"):
        nncert.Network([nncert.Implicit(0.1 * np.eye(6), U, b, nncert.MaxMin(), lam=lam)])
    net = nncert.Network([nncert.Implicit(W, U, b, nncert.Tanh(), lam=lam)])
    net.save_npz(tmp_path / "lben.npz")
    back = nncert.Network.from_npz(tmp_path / "lben.npz")
    assert back == net and back.implicit_info()[0]["certificate"] == "weighted-monotone"
    X = rng.standard_normal((5, 3))
    np.testing.assert_array_equal(back(X), net(X))
