"""The chain SDP's own solvers against cvxpy + CLARABEL (an independent formulation and interior-point solver):
nncert's barrier interior-point method (solver="IPM", the default for chains of grouped layers) and the direct
SCS problem data (solver="SCS", no cvxpy)."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert.errors import SolverError, UnsupportedModelError

from conftest import data_path
from test_lipschitz_invariants import random_net


def clarabel(net, **kw):
    return nncert.lipschitz(net, solver="CLARABEL", lower_bound_starts=1, lower_bound_steps=0, **kw)


def ours(net, solver, **kw):
    return nncert.lipschitz(net, solver=solver, lower_bound_starts=1, lower_bound_steps=0, **kw)


def test_ipm_is_the_default_for_grouped_chains_and_matches_clarabel_on_2fc_16():
    net = nncert.Network.from_npz(data_path("lipschitz", "maxmin_l2trained_2fc_16.npz"), activation="maxmin")
    r = nncert.lipschitz(net, method="nsr")
    assert r.solver == "IPM" and r.details["backend"] == "ipm" and r.certified
    # strictly feasible iterates: the certificate accepts them as they are
    assert not r.details["repaired"]
    ref = clarabel(net, method="nsr")
    assert r.bound == pytest.approx(ref.bound, rel=1e-6)
    assert r.bound == pytest.approx(22.5944, rel=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_ipm_matches_clarabel_on_random_grouped_networks(seed):
    net = random_net(100 + seed, "grouped")
    gamma = seed % 3 != 0
    a = ours(net, "IPM", method="nsr", gamma=gamma)
    b = clarabel(net, method="nsr", gamma=gamma)
    assert a.certified and b.certified
    assert a.bound == pytest.approx(b.bound, rel=1e-5)
    k = seed % net.output_dim
    a = ours(net, "IPM", method="nsr", norm="inf", output=k)
    b = clarabel(net, method="nsr", norm="inf", output=k)
    assert a.certified and a.bound == pytest.approx(b.bound, rel=1e-5)


def test_ipm_rejects_chains_it_does_not_handle(rng):
    net = nncert.Network([nncert.Dense(rng.standard_normal((4, 3))), nncert.ReLU(), nncert.Dense(np.ones((1, 4)))])
    with pytest.raises(UnsupportedModelError, match="IPM"):
        nncert.lipschitz(net, method="lipsdp-neuron", solver="IPM")
    assert nncert.lipschitz(net, method="lipsdp-neuron").solver == "SCS"  # the default where IPM does not apply


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("family", ["sector", "grouped"])
def test_direct_scs_matches_clarabel(seed, family):
    net = random_net(200 + seed, family, residual=seed % 2 == 1)
    method = "lipsdp-neuron" if family == "sector" else "nsr"
    a = ours(net, "SCS", method=method)
    b = clarabel(net, method=method)
    assert a.details["backend"] == "scs-direct" and a.certified
    # SCS runs at a loose tolerance; the certificate keeps the bound sound, tightness within 1e-3
    assert b.bound * (1 - 1e-6) <= a.bound * (1 + 1e-3) and a.bound <= b.bound * (1 + 1e-3)
    if family == "sector":
        a = ours(net, "SCS", method="lipsdp-layer", norm="inf", output=0)
        b = clarabel(net, method="lipsdp-layer", norm="inf", output=0)
        assert a.certified and a.bound == pytest.approx(b.bound, rel=1e-3)


def test_direct_scs_linear_stage(rng):
    # two Dense layers in a row: a linear stage with a free interface multiplier
    net = nncert.Network([nncert.Dense(rng.standard_normal((4, 3))), nncert.Dense(rng.standard_normal((4, 4))),
                          nncert.ReLU(), nncert.Dense(rng.standard_normal((2, 4)))])
    a = ours(net, "SCS", method="lipsdp-neuron")
    b = clarabel(net, method="lipsdp-neuron")
    assert a.certified and a.bound == pytest.approx(b.bound, rel=1e-3)


def test_cvxpy_backend_still_available_for_scs():
    net = nncert.Network.from_npz(data_path("lipschitz", "maxmin_l2trained_2fc_16.npz"), activation="maxmin")
    r = ours(net, "SCS", method="nsr", solver_options={"backend": "cvxpy"})
    assert "backend" not in r.details and r.certified and r.bound == pytest.approx(22.5944, rel=1e-4)
    with pytest.raises(nncert.errors.InvalidInputError):
        ours(net, "CLARABEL", method="nsr", solver_options={"backend": "direct"})
    with pytest.raises(nncert.errors.InvalidInputError):
        ours(net, "IPM", method="nsr", solver_options={"eps_abs": 1e-3})


def test_direct_scs_failure_is_an_error(monkeypatch):
    import scs

    net = nncert.Network([nncert.Dense(np.eye(2)), nncert.ReLU(), nncert.Dense(np.eye(2))])
    monkeypatch.setattr(scs, "solve", lambda *a, **k: {"x": None, "info": {"status": "infeasible"}})
    with pytest.raises(SolverError, match="infeasible"):
        nncert.lipschitz(net, method="lipsdp-neuron", solver="SCS")


# ------------------------------------------------------------------ IPM on residual / linear chains
def _skip_net(rng, s=0.5):
    from test_residual_skip import skip_net
    return skip_net(rng, nncert.MaxMin, s=s)


def test_svec_kronecker_blocks_match_the_traces(rng):
    # skron(K)[a, b] = tr(B_a K B_b K^T) over the orthonormal svec basis, and svec / smat invert each other
    from nncert.lipschitz import ipm

    o1, o2 = 3, 4
    K = rng.standard_normal((o1, o2))

    def basis(o):
        out = []
        for a, b in zip(*np.tril_indices(o)):
            B = np.zeros((o, o))
            B[a, b] = B[b, a] = 1.0 if a == b else 1 / np.sqrt(2)
            out.append(B)
        return out

    ref = np.array([[np.trace(Ba @ K @ Bb @ K.T) for Bb in basis(o2)] for Ba in basis(o1)])
    np.testing.assert_allclose(ipm.skron(K), ref, atol=1e-12)
    X = rng.standard_normal((o1, o1))
    X = X + X.T
    np.testing.assert_allclose(ipm.smat(ipm.svec(X), o1), X, atol=1e-14)
    assert ipm.svec(X) @ ipm.svec(X) == pytest.approx(np.trace(X @ X))


@pytest.mark.parametrize("seed", range(6))
def test_ipm_is_the_default_for_residual_chains_and_matches_clarabel(seed):
    # residual MaxMin blocks with a skip S and an output map G (skip_net), or plain residual blocks (random_net)
    rng = np.random.default_rng(400 + seed)
    net = _skip_net(rng) if seed % 2 == 0 else random_net(300 + seed, "grouped", residual=True)
    gamma = seed % 3 != 2
    r = nncert.lipschitz(net, method="nsr", gamma=gamma, lower_bound_starts=4, lower_bound_steps=20)
    assert r.solver == "IPM" and r.details["backend"] == "ipm" and r.certified
    assert not r.details["repaired"]  # strictly feasible iterates
    assert r.bound >= r.lower_bound and r.bound <= r.naive_bound * (1 + 1e-9)
    ref = clarabel(net, method="nsr", gamma=gamma)
    assert r.bound == pytest.approx(ref.bound, rel=1e-6)
    a = ours(net, "IPM", method="nsr", norm="inf", output=0)
    b = clarabel(net, method="nsr", norm="inf", output=0)
    assert a.certified and a.bound == pytest.approx(b.bound, rel=2e-6)


def test_ipm_linear_stage_matches_clarabel(rng):
    # two Dense layers in a row before a MaxMin: a linear stage with a free (wider than its input) multiplier
    net = nncert.Network([nncert.Dense(rng.standard_normal((6, 3))), nncert.Dense(rng.standard_normal((6, 6))),
                          nncert.MaxMin(), nncert.Dense(rng.standard_normal((2, 6)))])
    a = nncert.lipschitz(net, method="nsr", lower_bound_starts=1, lower_bound_steps=0)
    b = clarabel(net, method="nsr")
    assert a.solver == "IPM" and a.certified and a.bound == pytest.approx(b.bound, rel=1e-6)


@pytest.mark.parametrize("seed", range(2))
def test_ipm_newton_cg_matches_the_dense_newton_system(seed):
    # the matrix-free Newton-CG path (used when the dense Hessian would be too large) against the dense one
    rng = np.random.default_rng(500 + seed)
    net = nncert.Network([nncert.Dense(rng.standard_normal((6, 5))),
                          nncert.Residual([nncert.Dense(0.5 * rng.standard_normal((6, 6))), nncert.MaxMin()]),
                          nncert.Residual([nncert.Dense(0.5 * rng.standard_normal((6, 6))), nncert.MaxMin()]),
                          nncert.Dense(rng.standard_normal((3, 6)))])
    a = ours(net, "IPM", method="nsr", solver_options={"newton": "cg"})
    b = ours(net, "IPM", method="nsr", solver_options={"newton": "dense"})
    assert a.details["newton_system"] == "cg" and b.details["newton_system"] == "dense"
    assert a.details["solver_stats"]["cg_iterations"] > 0
    assert a.certified and b.certified and a.bound == pytest.approx(b.bound, rel=1e-6)
    ref = clarabel(net, method="nsr")
    assert a.bound == pytest.approx(ref.bound, rel=1e-6)


def test_ipm_deflated_newton_cg_solves_the_newton_system(monkeypatch):
    # the pieces of the deflated Newton-CG (used above DENSE_MAX variables) against the dense Hessian of a small
    # residual chain: M (mapply) inverts the preconditioner, deflated CG with any deflation space solves H x = b, the
    # Rayleigh-Ritz step recovers the preconditioned Hessian's smallest eigenpairs from a space that contains them
    # (and deflating them saves CG iterations), and a CG solve harvests Ritz vectors of its small eigenvalues
    import scipy.linalg as sla
    import scipy.sparse as sp

    from nncert import _core
    from nncert.lipschitz import ipm
    from nncert.lipschitz.sdp import restrict

    rng = np.random.default_rng(7)
    net = nncert.Network([nncert.Dense(rng.standard_normal((8, 5))),
                          nncert.Residual([nncert.Dense(0.5 * rng.standard_normal((8, 8))), nncert.MaxMin()]),
                          nncert.Residual([nncert.Dense(0.5 * rng.standard_normal((8, 8))), nncert.MaxMin()]),
                          nncert.Dense(rng.standard_normal((3, 8)))])
    chain = _core.lipschitz_chain(net._core, None)
    Ws, R, n0, _ = restrict(chain, "2")
    lmis, Glin, nv, _, decode, _, y = ipm.build_general(chain, "2", Ws, R, n0)
    Glin, hlin = ipm._caps(Glin, y, decode)
    Glin = sp.csr_matrix(Glin)
    s = Glin @ y + hlin
    Ps = [np.linalg.inv(L.value(y)) for L in lmis]
    ncg = ipm._NewtonCG(lmis, Ps, Glin, s, nv)
    H = np.asarray((Glin.T @ sp.diags(1.0 / s ** 2) @ Glin).todense())
    for L, P in zip(lmis, Ps):
        ids, _, h = L.derivs(P)
        H[np.ix_(ids, ids)] += h
    v = rng.standard_normal(nv)
    np.testing.assert_allclose(ncg.hvp(v), H @ v, rtol=1e-9, atol=1e-9 * np.abs(H @ v).max())
    np.testing.assert_allclose(ncg.mapply(ncg.precond(v)), v, rtol=1e-7, atol=1e-7 * np.abs(v).max())
    M = np.column_stack([ncg.mapply(e) for e in np.eye(nv)])
    w, U = sla.eigh(H, 0.5 * (M + M.T))
    b = rng.standard_normal(nv)
    x_ref = np.linalg.solve(H, b)

    def rel(x):
        return np.linalg.norm(x - x_ref) / np.linalg.norm(x_ref)

    monkeypatch.setattr(ipm, "DEFL_THETA", 1.01 * w[2])  # at this (start) point no eigenvalue is an outlier
    x = ncg.solve(b, rtol=1e-10, maxiter=10 * nv)
    assert rel(x) < 1e-6
    plain = ncg.hvps
    assert ncg.harvest.shape[1] > 0  # Ritz vectors of the smallest eigenvalues, from the Lanczos coefficients
    hv = ncg.harvest[:, 0]
    assert (hv @ H @ hv) / (hv @ M @ hv) == pytest.approx(w[0], rel=1e-3)
    # a space that contains the 3 smallest eigenvectors, mixed with random vectors: Rayleigh-Ritz finds them
    k = 3
    Wc = np.hstack([U[:, :k], rng.standard_normal((nv, 2))]) @ rng.standard_normal((k + 2, k + 2))
    ncg.deflate(Wc, theta_max=w[k - 1] * (1 + 1e-6))
    np.testing.assert_allclose(ncg.theta, w[:k], rtol=1e-6)
    h0 = ncg.hvps
    x = ncg.solve(b, rtol=1e-10, maxiter=10 * nv)
    assert rel(x) < 1e-6
    assert ncg.hvps - h0 < plain
    # any deflation space (here random: nothing to gain, but the solution is the same) and the stale additive
    # coarse correction of the preconditioner
    ncg.deflate(rng.standard_normal((nv, 4)), theta_max=np.inf)
    assert ncg.Z.shape[1] == 4 and rel(ncg.solve(b, rtol=1e-10, maxiter=10 * nv)) < 1e-6
    ncg.Zc, ncg.thc = ncg.Z, ncg.theta
    ncg.Z, ncg.AZ, ncg.theta = np.zeros((nv, 0)), np.zeros((nv, 0)), np.zeros(0)
    assert rel(ncg.solve(b, rtol=1e-10, maxiter=10 * nv)) < 1e-6
