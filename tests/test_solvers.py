"""CG/PCG, Poisson problems, Lanczos: against scipy references, invariants, and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

import nncert
from nncert import _core
from nncert.solvers import cg, grid_of, poisson2d, poisson3d, ritz_vectors


def random_spd(n: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    B = sp.random(n, n, density=0.05, random_state=seed)
    A = (B @ B.T + sp.diags(rng.uniform(0.5, 2.0, n))).tocsr()
    return A


def laplacian_kron(n: int, dim: int) -> sp.csr_matrix:
    T = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1])
    I = sp.identity(n)
    if dim == 2:
        return (sp.kron(T, I) + sp.kron(I, T)).tocsr()
    return (sp.kron(sp.kron(T, I), I) + sp.kron(sp.kron(I, T), I) + sp.kron(sp.kron(I, I), T)).tocsr()


def scipy_cg_iterations(A, b, tol, M=None) -> int:
    count = [0]
    x, info = sla.cg(A, b, rtol=tol, atol=0.0, maxiter=10 * A.shape[0], M=M,
                     callback=lambda xk: count.__setitem__(0, count[0] + 1))
    assert info == 0
    return count[0]


# ---------- problems ----------

@pytest.mark.parametrize("dim,make", [(3, poisson3d), (2, poisson2d)])
def test_poisson_without_obstacles_is_the_kronecker_laplacian(dim, make):
    A = make(5)
    assert abs(A - laplacian_kron(5, dim)).max() == 0
    g = grid_of(A)
    assert g.shape == (5,) * dim and g.fluid.all()


def test_poisson3d_obstacles_spd_and_neumann_rows():
    A = poisson3d(10, obstacles="random", seed=4)
    g = grid_of(A)
    assert A.shape[0] == int(g.fluid.sum()) < 1000
    assert abs(A - A.T).max() == 0
    assert np.linalg.eigvalsh(A.toarray())[0] > 1e-6
    # A fluid cell with a solid neighbour and no box wall has a zero row sum (Neumann), and its diagonal
    # counts only its fluid neighbours.
    solid = ~g.fluid
    nb = np.zeros_like(solid)
    for ax in range(3):
        nb |= np.roll(solid, 1, ax) | np.roll(solid, -1, ax)
    interior = np.zeros_like(solid)
    interior[1:-1, 1:-1, 1:-1] = True
    cells = g.fluid & nb & interior
    assert cells.any()
    unknown = np.cumsum(g.fluid.ravel()) - 1
    rows = unknown[np.flatnonzero(cells.ravel())]
    assert np.allclose(np.asarray(A[rows].sum(axis=1)).ravel(), 0.0)
    assert np.all(A.diagonal()[rows] < 6)


def test_explicit_obstacle_mask_and_its_errors():
    mask = np.zeros((6, 6, 6), dtype=bool)
    mask[2:4, 2:4, 2:4] = True
    A = poisson3d(6, obstacles=mask)
    assert A.shape == (216 - 8, 216 - 8)
    with pytest.raises(nncert.ShapeError):
        poisson3d(6, obstacles=np.zeros((5, 5, 5), dtype=bool))
    with pytest.raises(nncert.InvalidInputError):
        poisson3d(6, obstacles=np.zeros((6, 6, 6)))  # not boolean
    shell = np.zeros((7, 7, 7), dtype=bool)
    shell[1:6, 1:6, 1:6] = True
    shell[2:5, 2:5, 2:5] = False  # a fluid pocket with only Neumann walls: singular
    with pytest.raises(nncert.InvalidInputError, match="enclosed"):
        poisson3d(7, obstacles=shell)
    with pytest.raises(nncert.InvalidInputError):
        poisson3d(0)
    with pytest.raises(nncert.InvalidInputError):
        poisson3d(4, obstacles="lots")


def test_random_obstacles_differ_by_seed_and_are_reproducible():
    a, b, c = (grid_of(poisson3d(12, "random", seed=s)).fluid for s in (1, 1, 2))
    assert (a == b).all() and not (a == c).all()
    assert 0.5 < a.mean() < 1.0


# ---------- CG / PCG ----------

@pytest.mark.parametrize("precond", [None, "jacobi", "ic0"])
@pytest.mark.parametrize("which", ["random", "poisson"])
def test_cg_matches_spsolve(precond, which):
    A = random_spd(300, 1) if which == "random" else poisson3d(10, "random", seed=7)
    rng = np.random.default_rng(2)
    b = rng.standard_normal(A.shape[0])
    x, info = cg(A, b, tol=1e-10, precond=precond, progress=False)
    ref = sla.spsolve(A.tocsc(), b)
    assert info.converged and info.reason == "converged"
    assert info.true_residual <= 1e-10
    assert np.linalg.norm(b - A @ x) / np.linalg.norm(b) <= 1e-10
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < 1e-7
    assert len(info.residuals) == info.iterations + 1 and info.residuals[0] == pytest.approx(1.0)
    assert info.method == ("cg" if precond is None else f"pcg-{precond}")


@pytest.mark.parametrize("which", ["random", "poisson"])
def test_iteration_counts_match_scipy(which):
    A = random_spd(400, 3) if which == "random" else poisson3d(12, "random", seed=3)
    b = np.random.default_rng(5).standard_normal(A.shape[0])
    for tol in (1e-6, 1e-9):
        _, info = cg(A, b, tol=tol, progress=False)
        assert abs(info.iterations - scipy_cg_iterations(A, b, tol)) <= 3
        _, info = cg(A, b, tol=tol, precond="jacobi", progress=False)
        M = sp.diags(1.0 / A.diagonal())
        assert abs(info.iterations - scipy_cg_iterations(A, b, tol, M=M)) <= 3


def test_ic0_needs_fewer_iterations_than_cg_on_poisson():
    A = poisson3d(14, "random", seed=9)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    _, plain = cg(A, b, progress=False)
    _, ic = cg(A, b, precond="ic0", progress=False)
    assert ic.converged and ic.iterations < 0.6 * plain.iterations


def test_inputs_dense_linear_operator_torch_and_int64_indices():
    A = random_spd(80, 4)
    b = np.random.default_rng(1).standard_normal(80)
    x_ref = sla.spsolve(A.tocsc(), b)
    x1, _ = cg(A.toarray(), b, tol=1e-10, progress=False)
    x2, i2 = cg(sla.aslinearoperator(A), b, tol=1e-10, progress=False)
    A64 = A.copy()
    A64.indices, A64.indptr = A.indices.astype(np.int64), A.indptr.astype(np.int64)
    x3, _ = cg(A64, b, tol=1e-10, progress=False)
    for x in (x1, x2, x3):
        assert np.linalg.norm(x - x_ref) / np.linalg.norm(x_ref) < 1e-7
    assert i2.converged
    torch = pytest.importorskip("torch")
    xt, _ = cg(torch.from_numpy(A.toarray()), torch.from_numpy(b), tol=1e-10, progress=False, device="cpu")
    assert isinstance(xt, torch.Tensor) and np.allclose(xt.numpy(), x_ref, rtol=1e-6, atol=1e-9)


def test_x0_zero_rhs_and_maxiter():
    A = poisson3d(8)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    x_ref = sla.spsolve(A.tocsc(), b)
    x, info = cg(A, b, x0=x_ref, tol=1e-8, progress=False)
    assert info.converged and info.iterations <= 1
    x, info = cg(A, np.zeros(A.shape[0]), progress=False)
    assert info.converged and np.all(x == 0)
    x, info = cg(A, b, tol=1e-12, maxiter=3, progress=False)
    assert not info.converged and info.reason == "maxiter" and info.iterations == 3
    assert info.true_residual == pytest.approx(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def test_progress_callback_can_stop_the_solve():
    A = poisson3d(12)
    b = np.ones(A.shape[0])
    seen = []
    _, info = cg(A, b, tol=1e-12, progress=lambda it, res: seen.append((it, res)) or it < 20)
    assert info.reason == "interrupted" and not info.converged and info.iterations == 20
    assert seen and all(r > 0 for _, r in seen)


def test_singular_neumann_system():
    # pure-Neumann 1-D Laplacian: constants span the null space
    n = 50
    L = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]).tolil()
    L[0, 0] = L[n - 1, n - 1] = 1
    L = L.tocsr()
    b = np.sin(np.linspace(0, 3, n))
    with pytest.raises(nncert.InvalidInputError, match="singular"):
        cg(L, b, progress=False)
    b = b - b.mean()
    x, info = cg(L, b, tol=1e-8, progress=False)
    assert info.converged and info.null_space_projected
    assert abs(x.mean()) < 1e-10
    assert np.linalg.norm(L @ x - b) <= 1e-8 * np.linalg.norm(b)


def test_bad_inputs_raise_typed_errors():
    A = poisson3d(4)
    n = A.shape[0]
    b = np.ones(n)
    with pytest.raises(nncert.ShapeError, match="square"):
        cg(sp.random(4, 5, density=0.5, format="csr"), np.ones(4))
    nonsym = A.tolil()
    nonsym[0, 1] = -3.0
    with pytest.raises(nncert.InvalidInputError, match="symmetric"):
        cg(nonsym.tocsr(), b)
    bad = A.copy()
    bad.data[3] = np.nan
    with pytest.raises(nncert.InvalidInputError, match="finite"):
        cg(bad, b)
    with pytest.raises(nncert.ShapeError, match="length"):
        cg(A, np.ones(n + 1))
    nanb = b.copy()
    nanb[2] = np.nan
    with pytest.raises(nncert.InvalidInputError):
        cg(A, nanb)
    with pytest.raises(nncert.InvalidInputError):
        cg(A, b, precond="ilu")
    with pytest.raises(nncert.InvalidInputError):
        cg(A, b, tol=0.0)
    with pytest.raises(nncert.InvalidInputError, match="positive definite"):
        cg(sp.diags([1.0, -1.0, 2.0]).tocsr(), np.array([1.0, 1.0, 1.0]), progress=False)
    with pytest.raises(nncert.InvalidInputError, match="ic0|LinearOperator"):
        cg(sla.aslinearoperator(A), b, precond="ic0")
    with pytest.raises(nncert.InvalidInputError):
        cg(A, b, device="tpu")
    try:
        import torch
        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        with pytest.raises(nncert.InvalidInputError, match="CUDA"):
            cg(A, b, device="cuda")


def test_core_rejects_malformed_csr():
    A = poisson3d(3)
    with pytest.raises(nncert.InvalidInputError):
        _core.csr_matvec(A.indptr[::-1].copy(), A.indices, A.data, 27, np.ones(27))
    idx = A.indices.copy()
    idx[0] = 99
    with pytest.raises(nncert.InvalidInputError, match="out of range"):
        _core.csr_matvec(A.indptr, idx, A.data, 27, np.ones(27))
    with pytest.raises(ValueError):
        _core.csr_matvec(A.indptr, A.indices.astype(np.int64), A.data, 27, np.ones(27))  # mixed index types


def test_csr_matvec_and_stencil_match_scipy():
    A = poisson3d(9, "random", seed=2)
    g = grid_of(A)
    x = np.random.default_rng(3).standard_normal(A.shape[0])
    y = _core.csr_matvec(A.indptr, A.indices, A.data, A.shape[1], x)
    assert np.allclose(y, A @ x, rtol=1e-14, atol=1e-12)
    # matrix-free stencil over the full grid solves the same system
    b = np.random.default_rng(4).standard_normal(A.shape[0])
    xs, info = _core.stencil_cg(g.shape, (~g.fluid).ravel().copy(), g.scatter(b).ravel(), None, 1e-10)
    assert info["converged"]
    xs = xs[g.index]
    assert np.linalg.norm(xs - sla.spsolve(A.tocsc(), b)) / np.linalg.norm(xs) < 1e-8


def test_lanczos_ritz_pairs_match_eigsh():
    A = poisson3d(8, "random", seed=5)
    vals, vecs = ritz_vectors(A, A.shape[0] // 2, seed=0)
    assert np.all(np.diff(vals) >= -1e-12)
    lo = sla.eigsh(A.tocsc(), k=3, sigma=0, which="LM", return_eigenvectors=False)
    assert np.allclose(np.sort(lo), vals[:3], rtol=1e-8)
    assert vals[-1] == pytest.approx(sla.eigsh(A, k=1, which="LA", return_eigenvectors=False)[0], rel=1e-8)
    y = vecs[:, 0]
    assert np.linalg.norm(A @ y - vals[0] * y) < 1e-6
    assert np.allclose(vecs.T @ vecs, np.eye(vecs.shape[1]), atol=1e-8)


def test_cli_solve_runs():
    from nncert.cli import main

    assert main(["solve", "--grid", "6", "--methods", "cg,ic0", "--json"]) == 0


def test_ic0_breakdown_is_retried_with_a_reported_shift():
    """Kershaw's matrix is SPD but plain IC(0) breaks down on it; the retry's shift is reported."""
    K = np.array([[3.0, -2, 0, 2], [-2, 3, -2, 0], [0, -2, 3, -2], [2, 0, -2, 3]])
    assert np.linalg.eigvalsh(K).min() > 0
    x, info = nncert.solvers.cg(sp.csr_matrix(K), np.ones(4), precond="ic0")
    assert info.converged and info.extra["ic0_shift"] > 0
    np.testing.assert_allclose(K @ x, np.ones(4), atol=1e-5)
    A = nncert.solvers.poisson3d(6)
    _, info = nncert.solvers.cg(A, np.ones(A.shape[0]), precond="ic0")
    assert info.extra["ic0_shift"] == 0.0
