"""nncert.lipschitz on the torch path (backend="torch" on the CPU here; device="cuda" on a GPU) against the
Rust core: naive bound to 1e-8, each LMI's smallest eigenvalue at the solver's multipliers to 1e-8, local
Jacobian norms equal at the same points, and the sampled lower bound never above the certified bound."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert import _core

torch = pytest.importorskip("torch")
from nncert.devices import CPU  # noqa: E402
from nncert.lipschitz import sdp  # noqa: E402
from nncert.torch_backend import lipschitz as tl  # noqa: E402


def nets():
    rng = np.random.default_rng(0)
    D = lambda m, n, s=1.0: nncert.Dense(s * rng.normal(size=(m, n)), 0.1 * rng.normal(size=m))  # noqa: E731
    return {
        "relu-tanh": nncert.Network([D(6, 3), nncert.ReLU(), D(5, 6), nncert.Tanh(), D(2, 5)]),
        "leaky-sigmoid": nncert.Network([D(5, 3), nncert.LeakyReLU(0.1), D(4, 5), nncert.Sigmoid(), D(2, 4)]),
        "maxmin": nncert.Network([D(6, 3), nncert.MaxMin(), D(2, 6)]),
        "groupsort": nncert.Network([D(6, 3), nncert.GroupSort(3), D(1, 6)]),
        "residual": nncert.Network([D(4, 3), nncert.ReLU(),
                                    nncert.Residual([D(4, 4, 0.3), nncert.LeakyReLU(0.1), D(4, 4, 0.3)]), D(1, 4)]),
        "householder": nncert.Network([D(4, 3), nncert.Householder(0.7), D(2, 4)]),
    }


NETS = nets()


def cvec(net, norm):
    if net.output_dim == 1:
        return np.ones(1)
    return np.linspace(1.0, -0.5, net.output_dim) if norm == "inf" else None


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("norm", ["2", "inf"])
def test_naive_bound_matches_the_core(name, norm):
    net = NETS[name]
    for c in (None, np.linspace(1.0, -0.5, net.output_dim)):
        ref = _core.lipschitz_naive(net._core, norm, c)
        assert tl.naive_bound(net, norm, c, CPU) == pytest.approx(ref, rel=1e-8, abs=0)


@pytest.mark.parametrize("name", ["relu-tanh", "maxmin", "groupsort", "residual"])
@pytest.mark.parametrize("norm", ["2", "inf"])
def test_lmi_eigenvalues_match_the_core(name, norm):
    net = NETS[name]
    c = cvec(net, norm)
    chain = _core.lipschitz_chain(net._core, c)
    rho, d, mults, _, _ = sdp.solve(chain, norm, "neuron", "SCS")
    core = _core.lipschitz_certify(net._core, norm, rho, mults, d, c, False)
    dev = tl.lmi_checks(chain, norm, rho, d, mults, CPU)
    assert [k["name"] for k in dev] == [l["name"] for l in core["lmis"]]
    for k, l in zip(dev, core["lmis"]):
        assert k["size"] == l["size"]
        assert abs(k["min_eig"] - l["min_eig_before"]) <= 1e-8
        assert k["margin"] == pytest.approx(l["margin"], rel=1e-8)
    assert tl.bound_of(chain, norm, rho, d) == pytest.approx(core["solver_bound"], rel=1e-12)
    # the whole certificate (check, repair, re-check) on the device equals the core's
    fixed = _core.lipschitz_certify(net._core, norm, rho, mults, d, c, True)
    tcert = tl.certify(chain, norm, rho, d, mults, CPU, True)
    assert fixed["certified"] and tcert["certified"] and tcert["repaired"] == fixed["repaired"]
    assert tcert["bound"] == pytest.approx(fixed["bound"], rel=1e-9)
    for k, l in zip(tcert["lmis"], fixed["lmis"]):
        assert abs(k["min_eig_before"] - l["min_eig_before"]) <= 1e-8
        assert k["min_eig_after"] >= k["margin"]


def test_device_check_accepts_a_certificate_and_rejects_a_bad_one():
    """One Dense layer: X_0 = rho I must dominate W^T W; rho = ||W||^2 (1 + 1e-6) passes on the device,
    rho = ||W||^2 (1 - 1e-6) fails, as in the core."""
    W = np.array([[1.0, 2.0, 0.5], [-0.3, 0.7, 1.1]])
    net = nncert.Network([nncert.Dense(W)])
    chain = _core.lipschitz_chain(net._core, None)
    s2 = np.linalg.svd(W, compute_uv=False)[0] ** 2 / chain["scale"] ** 2
    for f, ok in ((1 + 1e-6, True), (1 - 1e-6, False)):
        checks = tl.lmi_checks(chain, "2", s2 * f, None, [], CPU)
        assert [k["ok"] for k in checks] == [ok]
        assert _core.lipschitz_certify(net._core, "2", s2 * f, [], None, None, False)["certified"] == ok
        assert tl.certify(chain, "2", s2 * f, None, [], CPU, False)["certified"] == ok
    # repaired from rho = 0, the bound is the spectral norm (rounded up by the margin only)
    cert = tl.certify(chain, "2", 0.0, None, [], CPU, True)
    s = np.linalg.svd(W, compute_uv=False)[0]
    assert cert["certified"] and cert["repaired"] and s <= cert["bound"] <= s * (1 + 1e-9)


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("norm", ["2", "inf"])
def test_local_norms_equal_the_core_at_the_same_points(name, norm):
    net = NETS[name]
    for c in (None, np.linspace(1.0, -0.5, net.output_dim)):
        for seed in range(3):
            v, x = _core.lipschitz_lower(net._core, norm, c, 1, 0, seed)
            t = tl.local_norms(net, torch.as_tensor(x), norm, c, CPU)
            assert float(t[0]) == pytest.approx(v, rel=1e-10, abs=1e-12)


def test_linear_network_lower_bound_is_the_spectral_norm():
    W = np.array([[1.0, 2.0, 0.5], [-0.3, 0.7, 1.1]])
    net = nncert.Network([nncert.Dense(W)])
    low, _ = tl.lower_bound(net, "2", None, 4, 3, 0, CPU)
    assert low == pytest.approx(np.linalg.svd(W, compute_uv=False)[0], rel=1e-12)


@pytest.mark.parametrize("name", ["relu-tanh", "maxmin", "residual"])
def test_lipschitz_torch_backend_agrees_with_the_core(name):
    net = NETS[name]
    for norm, out in (("2", None), ("inf", 0)):
        core = nncert.lipschitz(net, norm=norm, output=out)
        tr = nncert.lipschitz(net, norm=norm, output=out, backend="torch")
        assert tr.details["device"] == "cpu (torch)" and tr.certified and tr.method == core.method
        assert tr.naive_bound == pytest.approx(core.naive_bound, rel=1e-8)
        assert tr.bound == pytest.approx(core.bound, rel=1e-9)
        assert 0 < tr.lower_bound <= tr.bound
        assert [l["size"] for l in tr.details["lmis"]] == [l["size"] for l in core.details["lmis"]]
        assert tr.details["repaired"] == core.details["repaired"]


def test_backend_argument_is_checked():
    with pytest.raises(nncert.InvalidInputError, match="backend"):
        nncert.lipschitz(NETS["maxmin"], backend="jax")


@pytest.mark.gpu
def test_naive_and_lmis_on_cuda():
    from nncert.devices import resolve_device
    dev = resolve_device("cuda")
    for name in ("relu-tanh", "residual"):
        net = NETS[name]
        assert tl.naive_bound(net, "2", None, dev) == pytest.approx(_core.lipschitz_naive(net._core, "2", None), rel=1e-8)
        r = nncert.lipschitz(net, device="cuda")
        assert r.certified and r.details["device"].startswith("cuda")
