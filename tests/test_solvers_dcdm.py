"""DCDM: exact-inverse and identity oracles, oracle errors, the torch iteration against the Rust one,
the pretrained model on held-out right-hand sides and unseen obstacle layouts, and training."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla

import nncert
from nncert.solvers import DCDM, Grid, cg, grid_of, poisson2d, poisson3d

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def system():
    A = poisson3d(10, "random", seed=21)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    return A, b


def test_exact_inverse_oracle_converges_in_one_iteration(system):
    A, b = system
    lu = sla.splu(A.tocsc())
    x, info = DCDM(model=lambda r: lu.solve(r)).solve(A, b, tol=1e-8, progress=False)
    assert info.converged and info.iterations == 1
    assert np.linalg.norm(A @ x - b) <= 1e-8 * np.linalg.norm(b)


def test_identity_oracle_is_cg(system):
    A, b = system
    _, d = DCDM(model=lambda r: r, k=2).solve(A, b, tol=1e-8, progress=False)
    _, c = cg(A, b, tol=1e-8, progress=False)
    assert d.converged and abs(d.iterations - c.iterations) <= 3


def test_useless_oracle_falls_back_and_still_converges(system):
    A, b = system
    _, info = DCDM(model=lambda r: np.zeros_like(r)).solve(A, b, tol=1e-8, progress=False)
    assert info.converged and info.fallbacks == info.iterations


def test_maxiter_is_reported_not_converged(system):
    A, b = system
    x, info = DCDM(model=lambda r: r, k=0).solve(A, b, tol=1e-12, maxiter=4, progress=False)
    assert not info.converged and info.reason == "maxiter"
    assert info.true_residual == pytest.approx(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def test_oracle_errors(system):
    A, b = system
    with pytest.raises(nncert.ShapeError, match="expected"):
        DCDM(model=lambda r: r[:-1]).solve(A, b, progress=False)
    with pytest.raises(nncert.SolverError, match="non-finite"):
        DCDM(model=lambda r: r * np.nan).solve(A, b, progress=False)

    class Boom(RuntimeError):
        pass

    def boom(r):
        raise Boom("oracle failed")
    with pytest.raises(Boom):
        DCDM(model=boom).solve(A, b, progress=False)
    with pytest.raises(nncert.InvalidInputError):
        DCDM(model=3)
    with pytest.raises(nncert.InvalidInputError):
        DCDM(model=lambda r: r, k=-1)
    with pytest.raises(nncert.ShapeError):
        DCDM(model=lambda r: r).solve(A, b[:-1])
    with pytest.raises(nncert.InvalidInputError, match="symmetric"):
        nonsym = A.tolil()
        nonsym[0, 1] = 5.0
        DCDM(model=lambda r: r).solve(nonsym.tocsr(), b)


def test_network_needs_a_grid_for_a_plain_matrix():
    from nncert.solvers.model import DCDMNet

    A = poisson3d(5, "random", seed=3)
    plain = A.copy()  # drops the grid
    assert grid_of(plain) is None and A.shape[0] != 125
    b = np.ones(A.shape[0])
    with pytest.raises(nncert.InvalidInputError, match="grid"):
        DCDM(DCDMNet(3, 4)).solve(plain, b, maxiter=2, progress=False)
    _, info = DCDM(DCDMNet(3, 4)).solve(plain, b, grid=grid_of(A), maxiter=2, progress=False)
    assert info.iterations == 2
    with pytest.raises(nncert.ShapeError):
        DCDM(DCDMNet(3, 4)).solve(A, b, grid=Grid((5, 5, 5), np.ones((5, 5, 5), bool)), progress=False)


def test_torch_iteration_matches_rust(system):
    A, b = system
    from nncert.solvers.model import DCDMNet

    torch.manual_seed(0)
    net = DCDMNet(3, 4)
    solver = DCDM(net, k=2, dtype="float64")
    xr, ir = solver.solve(A, b, tol=1e-6, maxiter=60, progress=False, backend="rust")
    xt, it = solver.solve(A, b, tol=1e-6, maxiter=60, progress=False, backend="torch")
    assert ir.iterations == it.iterations and ir.converged == it.converged
    assert np.allclose(ir.residuals, it.residuals, rtol=1e-6, atol=1e-12)
    assert np.allclose(xr, xt, rtol=1e-6, atol=1e-9)
    assert it.method == "dcdm-torch"


def test_2d_network_and_problem():
    from nncert.solvers.model import DCDMNet

    A = poisson2d(8, "random", seed=2)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    _, info = DCDM(DCDMNet(2, 4)).solve(A, b, tol=1e-6, progress=False)
    assert info.converged


def _held_out(n: int, seed: int):
    A = poisson3d(n, "random", seed=seed)  # training used seeds 1000..; these layouts were never seen
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(A.shape[0])
    return A, b


def test_pretrained_beats_cg_on_held_out_problems():
    solver = DCDM("pretrained")
    for seed in (5, 6):
        A, b = _held_out(16, seed)
        _, c = cg(A, b, tol=1e-6, progress=False)
        x, d = solver.solve(A, b, tol=1e-6, progress=False)
        assert d.converged and np.linalg.norm(A @ x - b) <= 1e-6 * np.linalg.norm(b)
        assert d.iterations <= 0.25 * c.iterations, (d.iterations, c.iterations)


@pytest.mark.slow
def test_pretrained_generalises_to_a_larger_grid_slow():
    A, b = _held_out(48, 8)
    _, c = cg(A, b, tol=1e-6, progress=False)
    _, d = DCDM("pretrained").solve(A, b, tol=1e-6, progress=False)
    assert d.converged and d.iterations <= 0.2 * c.iterations


def test_pretrained_generalises_to_a_larger_grid():
    # trained at 32^3; a 40^3 grid with an unseen layout and a smooth (hard for CG) right-hand side
    A = poisson3d(40, "random", seed=9)
    g = grid_of(A)
    xs = np.indices(g.shape).reshape(3, -1)[:, g.index] / 40.0
    b = np.sin(np.pi * xs[0]) * np.sin(2 * np.pi * xs[1]) + xs[2]
    _, c = cg(A, b, tol=1e-6, progress=False)
    _, d = DCDM("pretrained").solve(A, b, tol=1e-6, progress=False)
    assert d.converged and d.iterations <= 0.2 * c.iterations, (d.iterations, c.iterations)


def test_training_writes_a_loadable_model_and_resumes(tmp_path):
    from nncert.solvers.train import TrainConfig, train

    out = str(tmp_path / "m.pt")
    cfg = TrainConfig(grid=5, layouts=2, ritz=20, channels=2, steps=3, batch=2, threads=1)
    train(cfg, out, progress=False, log=lambda *a: None)
    state = torch.load(out + ".ckpt", weights_only=False)
    assert state["step"] == 3 and len(state["history"]) == 3
    logs = []
    train(cfg, out, progress=False, log=logs.append)  # an interrupted run picks up its checkpoint
    assert any("resumed" in line and "step 3" in line for line in logs)
    cfg.channels = 3
    with pytest.raises(nncert.InvalidInputError, match="different configuration"):
        train(cfg, out, progress=False, log=lambda *a: None)
    A = poisson3d(7, "random", seed=1)
    _, info = DCDM(model=out).solve(A, np.ones(A.shape[0]), progress=False)
    assert info.converged


def test_ritz_rhs_weights_the_low_spectrum():
    from nncert.solvers.train import _Problem

    A = poisson3d(6)
    p = _Problem(A, 40, 0)
    b = p.rhs(64, torch.Generator().manual_seed(0))
    assert torch.allclose(b.norm(dim=1), torch.ones(64), atol=1e-5)
    coef = (b @ p.ritz.T).pow(2).mean(0)  # energy per Ritz vector, smallest Ritz value first
    k = coef.shape[0]
    assert coef[: k // 2].sum() > 20 * coef[k // 2:].sum()


def test_torch_cg_matches_rust_cg(system):
    # the CUDA path of cg(), exercised on CPU torch
    from nncert.solvers._operator import prepare
    from nncert.solvers.torch_solvers import torch_cg

    A, b = system
    op = prepare(A)
    for pre in (None, "jacobi"):
        x, raw, _ = torch_cg(op, b, None, 1e-8, 1000, pre, torch.device("cpu"))
        _, info = cg(A, b, tol=1e-8, precond=pre, progress=False)
        assert raw["reason"] == "converged" and abs(raw["iterations"] - info.iterations) <= 2
        assert np.linalg.norm(A @ x - b) <= 1e-8 * np.linalg.norm(b)
    with pytest.raises(nncert.InvalidInputError, match="CPU"):
        torch_cg(op, b, None, 1e-8, 10, "ic0", torch.device("cpu"))


def test_training_stops_at_its_time_limit_and_resumes_on_another_device_setting(tmp_path):
    from nncert.solvers.train import TrainConfig, train

    out = str(tmp_path / "m.pt")
    cfg = TrainConfig(grid=5, layouts=2, ritz=20, channels=2, steps=50, batch=2, threads=1)
    meta = train(cfg, out, progress=False, log=lambda *a: None, time_limit=0.0)
    assert meta["stopped_at"] == 0
    saved = torch.load(out, weights_only=False)
    assert saved["meta"]["stopped_at"] == 0 and all(v.device.type == "cpu" for v in saved["state_dict"].values())
    cfg.threads = 2  # neither threads nor device are part of what a checkpoint must match
    meta = train(cfg, out, progress=False, log=lambda *a: None)
    assert meta["stopped_at"] is None
    assert torch.load(out + ".ckpt", weights_only=False)["step"] == 50


@pytest.mark.gpu
def test_cg_and_dcdm_on_cuda_match_the_cpu():
    A = poisson3d(12, "random", seed=3)
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    xc, c = cg(A, b, tol=1e-8, progress=False)
    xg, g = cg(A, torch.from_numpy(b).cuda(), tol=1e-8, progress=False)
    assert g.device.startswith("cuda") and xg.is_cuda and g.converged
    assert abs(g.iterations - c.iterations) <= 2
    np.testing.assert_allclose(xg.cpu().numpy(), xc, rtol=0, atol=1e-6 * np.abs(xc).max())
    _, dc = DCDM("pretrained").solve(A, b, tol=1e-6, progress=False)
    xd, dg = DCDM("pretrained", device="cuda").solve(A, b, tol=1e-6, progress=False)
    # the float32 model runs with TF32 convolutions on the device: directions differ slightly from the CPU's
    assert dg.converged and dg.device.startswith("cuda")
    assert abs(dg.iterations - dc.iterations) <= max(3, 0.2 * dc.iterations)
    assert np.linalg.norm(A @ np.asarray(xd) - b) <= 1e-6 * np.linalg.norm(b)


@pytest.mark.gpu
def test_training_on_cuda_writes_a_cpu_loadable_model(tmp_path):
    from nncert.solvers.train import TrainConfig, train

    out = str(tmp_path / "m.pt")
    train(TrainConfig(grid=6, layouts=2, ritz=20, channels=2, steps=4, batch=2, device="cuda"), out,
          progress=False, log=lambda *a: None)
    A = poisson3d(7, "random", seed=1)
    _, info = DCDM(model=out).solve(A, np.ones(A.shape[0]), progress=False)
    assert info.converged


def test_torch_cg_honours_its_time_limit(system):
    from nncert.solvers._operator import prepare
    from nncert.solvers.torch_solvers import torch_cg

    A, b = system
    x, raw, _ = torch_cg(prepare(A), b, None, 1e-12, 1000, None, torch.device("cpu"), time_limit=0.0)
    assert raw["reason"] == "time_limit" and raw["iterations"] == 0


def test_torch_cg_blocks_stop_where_the_core_stops(system):
    # the device CG reads residuals back once per block; the blocks must still end on the converging iteration
    from nncert.solvers._operator import prepare
    from nncert.solvers.torch_solvers import torch_cg

    A, b = system
    op = prepare(A)
    x0 = np.random.default_rng(2).standard_normal(A.shape[0])
    for tol, start in ((1e-4, None), (1e-8, None), (1e-10, x0)):
        x, raw, _ = torch_cg(op, b, start, tol, 5000, None, torch.device("cpu"))
        _, info = cg(A, b, tol=tol, x0=start, progress=False)
        assert raw["reason"] == "converged" and abs(raw["iterations"] - info.iterations) <= 1, (tol, raw, info)
        assert len(raw["residuals"]) == raw["iterations"] + 1 and raw["residuals"][-1] <= tol
        assert np.linalg.norm(A @ x - b) <= tol * np.linalg.norm(b)
        assert raw["bytes_per_matvec"] > 12 * A.nnz


def test_torch_cg_rejects_an_indefinite_matrix():
    import scipy.sparse as sp

    from nncert.solvers._operator import prepare
    from nncert.solvers.torch_solvers import torch_cg

    A = sp.diags(np.r_[np.ones(20), -np.ones(5)]).tocsr()
    with pytest.raises(nncert.InvalidInputError, match="not positive definite"):
        torch_cg(prepare(A), np.ones(25), None, 1e-10, 100, None, torch.device("cpu"))
    B = sp.eye(5, format="csr")
    op = prepare(B)
    op.csr.indices[2] = 9  # corrupted after the user built it: must not reach the device unchecked
    with pytest.raises(nncert.InvalidInputError, match="not a valid CSR"):
        torch_cg(op, np.ones(5), None, 1e-10, 100, None, torch.device("cpu"))


def test_torch_dcdm_checks_the_oracle_and_the_matrix_at_the_end_of_its_blocks(system):
    # the device iteration reads nothing back inside a block; its error checks must still fire
    A, b = system
    with pytest.raises(nncert.SolverError, match="non-finite"):
        DCDM(model=lambda r: np.full_like(r, np.nan)).solve(A, b, progress=False, backend="torch")
    with pytest.raises(nncert.ShapeError, match="values, expected"):  # as the core path
        DCDM(model=lambda r: r[:-1]).solve(A, b, progress=False, backend="torch")
    import scipy.sparse as sp
    M = sp.diags(np.r_[np.ones(20), -np.ones(5)]).tocsr()
    with pytest.raises(nncert.InvalidInputError, match="not positive definite"):
        DCDM(model=lambda r: np.zeros_like(r)).solve(M, np.ones(25), progress=False, backend="torch")
