"""patterns="all": the exact convex formulation from the complete hyperplane arrangement."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nncert
from nncert.convex.patterns import enumerate_patterns, sample_patterns


def augmented(seed, n, d):
    X = np.random.default_rng(seed).standard_normal((n, d))
    return X, np.hstack([X, np.ones((n, 1))])


@pytest.mark.parametrize("n,d", [(30, 1), (30, 2), (25, 3), (12, 4)])
def test_enumeration_counts_every_cell(n, d):
    _, Xa = augmented(n + d, n, d)
    D = enumerate_patterns(Xa)
    # n affine hyperplanes in general position in R^d (central in R^(d+1)) make 2 * sum_{i<=d} C(n-1, i)
    # cells; the all-negative cell (pattern 0) is dropped as it carries no neuron.
    cells = 2 * sum(math.comb(n - 1, i) for i in range(d + 1))
    assert D.shape == (n, cells - 1)
    assert set(np.unique(D)) <= {0.0, 1.0}
    assert len({c.tobytes() for c in D.T}) == D.shape[1]
    sampled = sample_patterns(Xa, 50_000, 3)
    assert {c.tobytes() for c in sampled.T} <= {c.tobytes() for c in D.T}


def test_rank_deficient_and_duplicate_data():
    X, Xa = augmented(5, 20, 2)
    # A redundant feature (a multiple of another) and repeated samples change nothing.
    Xr = np.hstack([X[:, :1], 2 * X[:, :1], X[:, 1:], np.ones((20, 1))])
    ref = {c.tobytes() for c in enumerate_patterns(Xa).T}
    assert {c.tobytes() for c in enumerate_patterns(Xr).T} == ref
    D2 = enumerate_patterns(np.vstack([Xa, Xa[:3]]))
    assert {c[:20].tobytes() for c in D2.T} == ref
    assert np.array_equal(D2[20:], D2[:3])


def test_too_many_subsets_is_a_clear_error():
    _, Xa = augmented(0, 400, 6)
    with pytest.raises(nncert.InvalidInputError, match="sample patterns"):
        nncert.ConvexReLU(patterns="all").fit(Xa[:, :-1], np.ones(400))
    with pytest.raises(nncert.InvalidInputError, match="patterns must be"):
        nncert.ConvexReLU(patterns="some").fit(Xa[:, :-1], np.ones(400))


def nonconvex_objective(U, a, Xa, y, beta):
    f = np.maximum(Xa @ U.T, 0.0) @ a
    return 0.5 * np.sum((f - y) ** 2) + 0.5 * beta * (np.sum(U ** 2) + np.sum(a ** 2))


def test_exact_optimum_lower_bounds_every_trained_network():
    torch = pytest.importorskip("torch")
    X, Xa = augmented(7, 14, 2)
    y = np.sin(2 * X[:, 0]) * X[:, 1]
    beta = 0.05
    exact = nncert.ConvexReLU(patterns="all", beta=beta, solver="cvxpy").fit(X, y)
    # tol 1e-8: the Anderson-accelerated ADMM (default) gets there in ~4,300 iterations (plain: ~39,000).
    admm = nncert.ConvexReLU(patterns="all", beta=beta, max_iter=60000, tol=1e-8).fit(X, y)
    sampled = nncert.ConvexReLU(n_patterns=5, beta=beta, solver="cvxpy").fit(X, y)
    assert admm.objective_ == pytest.approx(exact.objective_, rel=1e-6)
    assert exact.objective_ <= sampled.objective_ + 1e-9
    # The exact formulation is the global optimum over networks of any width: no trained network beats it.
    Xt, yt = torch.tensor(Xa), torch.tensor(y)
    best = np.inf
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        U = torch.randn(30, 3, generator=g, dtype=torch.float64).requires_grad_()
        a = (0.1 * torch.randn(30, generator=g, dtype=torch.float64)).requires_grad_()
        opt = torch.optim.Adam([U, a], lr=0.02)
        for _ in range(1000):
            opt.zero_grad()
            f = torch.relu(Xt @ U.T) @ a
            loss = 0.5 * ((f - yt) ** 2).sum() + 0.5 * beta * (U.pow(2).sum() + a.pow(2).sum())
            loss.backward()
            opt.step()
        best = min(best, nonconvex_objective(U.detach().numpy(), a.detach().numpy(), Xa, y, beta))
    assert exact.objective_ <= best + 1e-7
    # and the network it converts to attains it.
    net = exact.to_network()
    d1, _, d2 = net.layers
    U = np.hstack([d1.W, d1.b[:, None]])
    assert nonconvex_objective(U, d2.W[0], Xa, y, beta) == pytest.approx(exact.objective_, rel=1e-6)


def test_cli_all_patterns(tmp_path, capsys):
    import json

    from nncert.cli import main
    X, _ = augmented(3, 12, 1)
    np.savez(tmp_path / "d.npz", X=X, y=np.abs(X[:, 0]))
    assert main(["convex-fit", str(tmp_path / "d.npz"), "--patterns", "all", "--beta", "0.1", "--solver", "cvxpy",
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["patterns"] == 2 * 12 - 1  # 12 points on a line: 2 * (1 + 11) cells, the empty one dropped
    with pytest.raises(SystemExit):
        main(["convex-fit", str(tmp_path / "d.npz"), "--patterns", "many"])
