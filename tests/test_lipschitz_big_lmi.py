"""The decoupled LipSDP-NSR chain (method="nsr") against an independent formulation: the whole network's
S-procedure as one LMI in the stacked vector (x, z_1, ..., z_m) of the input and every MaxMin output, solved by
cvxpy + CLARABEL. The chain is an exact decomposition of that LMI (no S / P multipliers in either), so the two
optima agree, for plain and for residual networks (x_1 = W_0 x, x_{k+1} = x_k + MaxMin(W_k x_k))."""

from __future__ import annotations

import numpy as np
import pytest

import nncert

cp = pytest.importorskip("cvxpy")


def one_lmi_bound(Ws: list[np.ndarray], residual: bool) -> float:
    acts = Ws[1:-1] if residual else Ws[:-1]
    sizes = [Ws[0].shape[1]] + [W.shape[0] for W in acts]
    N, starts = sum(sizes), np.cumsum([0] + sizes)
    blocks = [np.eye(N)[starts[k]:starts[k + 1]] for k in range(len(sizes))]  # picks x, z_1, ..., z_m
    rho = cp.Variable(nonneg=True)
    lmi = rho * blocks[0].T @ blocks[0]
    feed = Ws[0] @ blocks[0] if residual else blocks[0]  # what the next activation's weight multiplies
    for k, W in enumerate(acts, start=1):
        pairs = W.shape[0] // 2
        lam, gam = cp.Variable(pairs, nonneg=True), cp.Variable(pairs)
        Q = cp.kron(cp.diag(lam), np.eye(2)) + cp.kron(cp.diag(gam), np.ones((2, 2)))
        pre = W @ feed
        lmi = lmi - pre.T @ Q @ pre + blocks[k].T @ Q @ blocks[k]
        feed = feed + blocks[k] if residual else blocks[k]
    out = Ws[-1] @ feed
    lmi = lmi - out.T @ out
    cp.Problem(cp.Minimize(rho), [0.5 * (lmi + lmi.T) >> 0]).solve(solver="CLARABEL")
    return float(np.sqrt(rho.value))


def network(Ws: list[np.ndarray], residual: bool) -> nncert.Network:
    if residual:
        body = [nncert.Residual([nncert.Dense(W), nncert.MaxMin()]) for W in Ws[1:-1]]
        return nncert.Network([nncert.Dense(Ws[0])] + body + [nncert.Dense(Ws[-1])])
    layers = [layer for W in Ws[:-1] for layer in (nncert.Dense(W), nncert.MaxMin())]
    return nncert.Network(layers + [nncert.Dense(Ws[-1])])


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_chain_equals_the_one_big_lmi(seed, residual):
    rng = np.random.default_rng(seed)
    n_in, width, depth, n_out = int(rng.integers(2, 6)), int(rng.choice([4, 6])), int(rng.integers(1, 4)), 2
    # plain: depth MaxMin layers after W_0 ... W_{depth-1}; residual: W_0 lifts, then depth residual blocks
    hidden = depth if residual else depth - 1
    Ws = [rng.standard_normal((width, n_in))] + [rng.standard_normal((width, width)) / 2 for _ in range(hidden)]
    Ws.append(rng.standard_normal((n_out, width)))
    ref = one_lmi_bound(Ws, residual)
    for solver in ("CLARABEL", "IPM"):
        r = nncert.lipschitz(network(Ws, residual), method="nsr", solver=solver, lower_bound_starts=4,
                             lower_bound_steps=20)
        assert r.certified
        assert r.bound == pytest.approx(ref, rel=2e-5), solver
        assert r.lower_bound <= r.bound * (1 + 1e-9)
