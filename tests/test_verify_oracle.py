"""Soundness and completeness of nncert.verify against an independent exact oracle: a MILP with big-M
constants from interval arithmetic (computed here in numpy), solved by scipy.optimize.milp, on random
small ReLU and MaxMin networks (2-6 inputs, 1-3 hidden layers)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

import nncert


def random_case(rng: np.random.Generator, act: str):
    n = int(rng.integers(2, 7))
    depth = int(rng.integers(1, 4))
    widths = [n] + [int(rng.choice([4, 6, 8])) for _ in range(depth)] + [int(rng.integers(1, 4))]
    layers = []
    for k in range(len(widths) - 1):
        layers.append(nncert.Dense(rng.standard_normal((widths[k + 1], widths[k])), 0.5 * rng.standard_normal(widths[k + 1])))
        if k + 2 < len(widths):
            layers.append(nncert.ReLU() if act == "relu" else nncert.MaxMin(pairing=str(rng.choice(["adjacent", "halves"]))))
    net = nncert.Network(layers)
    centre = rng.uniform(-1, 1, n)
    rad = rng.uniform(0.05, 0.6, n)
    lo, hi = centre - rad, centre + rad
    m = widths[-1]
    k = int(rng.integers(1, 3))
    a_y = rng.standard_normal((k, m))
    a_x = np.zeros((k, n))
    if rng.random() < 0.3:
        a_x[0] = 0.3 * rng.standard_normal(n)
    X = lo + (hi - lo) * rng.random((400, n))
    vals = net(X) @ a_y.T + X @ a_x.T
    spread = vals.max(0) - vals.min(0) + 1e-3
    c = vals.min(0) + spread * rng.uniform(-0.25, 0.15, k)
    return net, nncert.Property([(lo, hi)], [(a_y, a_x, c)])


def milp_margin(net: nncert.Network, prop: nncert.Property) -> float:
    """min over the box of max_i (A_y y + A_x x - c)_i: the property holds iff this is > 0."""
    lo, hi = prop.regions[0]
    a_y, a_x, c = prop.unsafe[0]
    n = net.input_dim
    names: list[tuple[float, float, int]] = []  # (lb, ub, integrality)

    def new(lb, ub, integer=0):
        names.append((lb, ub, integer))
        return len(names) - 1

    rows: list[tuple[dict[int, float], float, float]] = []  # (coefs, lower, upper)
    xs = [new(lo[j], hi[j]) for j in range(n)]
    h = [({v: 1.0}, 0.0) for v in xs]  # affine expressions (coefs, const)
    hl, hu = lo.copy(), hi.copy()
    for layer in net.layers:
        if isinstance(layer, nncert.Dense):
            W, b = layer.W, layer.b
            new_h = []
            for i in range(W.shape[0]):
                coefs: dict[int, float] = {}
                const = b[i]
                for j in range(W.shape[1]):
                    for v, a in h[j][0].items():
                        coefs[v] = coefs.get(v, 0.0) + W[i, j] * a
                    const += W[i, j] * h[j][1]
                new_h.append((coefs, const))
            Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
            hl, hu = Wp @ hl + Wn @ hu + b, Wp @ hu + Wn @ hl + b
            # pin the pre-activations to variables so big-M rows stay small
            pinned = []
            for i, (coefs, const) in enumerate(new_h):
                z = new(hl[i] - 1e-9, hu[i] + 1e-9)
                d = dict(coefs)
                d[z] = d.get(z, 0.0) - 1.0
                rows.append((d, -const, -const))
                pinned.append(({z: 1.0}, 0.0))
            h = pinned
        elif isinstance(layer, nncert.ReLU):
            out = []
            for i, (coefs, _) in enumerate(h):
                (z,), l, u = coefs.keys(), hl[i], hu[i]
                if l >= 0:
                    out.append(({z: 1.0}, 0.0))
                    continue
                if u <= 0:
                    out.append(({}, 0.0))
                    continue
                y = new(0.0, u)
                d = new(0, 1, 1)
                rows.append(({y: 1.0, z: -1.0}, 0.0, np.inf))          # y >= z
                rows.append(({y: 1.0, z: -1.0, d: -l}, -np.inf, -l))   # y <= z - l (1 - d)
                rows.append(({y: 1.0, d: -u}, -np.inf, 0.0))           # y <= u d
                out.append(({y: 1.0}, 0.0))
            h = out
            hl, hu = np.maximum(hl, 0), np.maximum(hu, 0)
        elif isinstance(layer, nncert.GroupSort):
            out = list(h)
            nl, nu = hl.copy(), hu.copy()
            for ia, ib in layer.groups(len(h)):
                (za,), (zb,) = h[ia][0].keys(), h[ib][0].keys()
                la, ua, lb, ub = hl[ia], hu[ia], hl[ib], hu[ib]
                mx = new(max(la, lb), max(ua, ub))
                d = new(0, 1, 1)
                rows.append(({mx: 1.0, za: -1.0}, 0.0, np.inf))
                rows.append(({mx: 1.0, zb: -1.0}, 0.0, np.inf))
                rows.append(({mx: 1.0, za: -1.0, d: ub - la}, -np.inf, ub - la))  # d=1: mx <= a
                rows.append(({mx: 1.0, zb: -1.0, d: -(ua - lb)}, -np.inf, 0.0))   # d=0: mx <= b
                out[ia] = ({mx: 1.0}, 0.0)
                out[ib] = ({za: 1.0, zb: 1.0, mx: -1.0}, 0.0)
                nl[ia], nu[ia] = max(la, lb), max(ua, ub)
                nl[ib], nu[ib] = min(la, lb), min(ua, ub)
            h, hl, hu = out, nl, nu
        else:
            raise NotImplementedError(type(layer))
    t = new(-1e6, 1e6)
    for i in range(a_y.shape[0]):
        coefs: dict[int, float] = {t: -1.0}
        const = -c[i]
        for j in range(a_y.shape[1]):
            for v, a in h[j][0].items():
                coefs[v] = coefs.get(v, 0.0) + a_y[i, j] * a
            const += a_y[i, j] * h[j][1]
        for j in range(n):
            coefs[xs[j]] = coefs.get(xs[j], 0.0) + a_x[i, j]
        rows.append((coefs, -np.inf, -const))  # row - c - t <= 0
    nv = len(names)
    A = np.zeros((len(rows), nv))
    for r, (coefs, _, _) in enumerate(rows):
        for v, a in coefs.items():
            A[r, v] += a
    cost = np.zeros(nv)
    cost[t] = 1.0
    res = milp(cost, constraints=LinearConstraint(A, [r[1] for r in rows], [r[2] for r in rows]),
               integrality=np.array([v[2] for v in names]),
               bounds=Bounds([v[0] for v in names], [v[1] for v in names]),
               options={"mip_rel_gap": 0.0, "presolve": True})
    assert res.success, res.message
    return float(res.fun)


def _run(seed: int, act: str, n_cases: int, method: str = "auto"):
    rng = np.random.default_rng(seed)
    agree = {"holds": 0, "violated": 0}
    for case in range(n_cases):
        net, prop = random_case(rng, act)
        truth = milp_margin(net, prop)
        if abs(truth) < 1e-6:
            continue  # a tie on the boundary: either answer is within the solver tolerances
        r = nncert.verify(net, prop, timeout=20.0, method=method, seed=case)
        want = "holds" if truth > 0 else "violated"
        assert r.status == want, f"seed {seed} case {case} ({act}): verify says {r.status}, MILP margin {truth:.3g}"
        if r.status == "violated":
            x, y = r.counterexample
            assert np.allclose(y, net(x)) and prop.in_region(0, x)
            assert np.all(prop.conj_values(0, x, net(x)) <= 0)
            assert np.all(prop.conj_values(0, x, net(x.astype(np.float32)).astype(np.float64)) <= 0)
        agree[r.status] += 1
    return agree


@pytest.mark.parametrize("act", ["relu", "maxmin"])
def test_agrees_with_milp_oracle_on_random_networks(act):
    agree = _run(2024 if act == "relu" else 4242, act, 160)
    # both verdicts occur, so the test can catch a verifier that always answers the same
    assert agree["holds"] >= 20 and agree["violated"] >= 20, agree
    assert sum(agree.values()) >= 150


@pytest.mark.parametrize("act", ["relu", "maxmin"])
def test_proofs_without_falsification_agree_with_oracle(act):
    """With attacks off, every verdict comes from branch and bound (and Z3 leaves)."""
    rng = np.random.default_rng(7 if act == "relu" else 8)
    seen = set()
    for case in range(40):
        net, prop = random_case(rng, act)
        truth = milp_margin(net, prop)
        if abs(truth) < 1e-6:
            continue
        r = nncert.verify(net, prop, timeout=20.0, attack=False)
        assert r.status == ("holds" if truth > 0 else "violated"), (case, r, truth)
        seen.add(r.status)
    assert seen == {"holds", "violated"}


def test_whole_network_z3_agrees_with_oracle():
    """The plain Z3 encoding may time out on the larger cases; when it answers, it must agree."""
    rng = np.random.default_rng(99)
    decided = 0
    for case in range(24):
        net, prop = random_case(rng, "relu" if case % 2 else "maxmin")
        truth = milp_margin(net, prop)
        if abs(truth) < 1e-6:
            continue
        r = nncert.verify(net, prop, timeout=2.0, method="smt")
        if r.status == "timeout":
            continue
        assert r.status == ("holds" if truth > 0 else "violated"), (case, r, truth)
        decided += 1
    assert decided >= 8, decided  # 14 of these decide in under 0.8 s on an idle 2-core machine


def test_relu_splitting_agrees_with_oracle():
    """ReLU-phase splitting (used for high-dimensional inputs) without attacks: sound on every case;
    bounds here ignore the split constraints (no beta terms), so a few cases may time out."""
    rng = np.random.default_rng(31)
    decided = set()
    n = 0
    for case in range(40):
        net, prop = random_case(rng, "relu")
        truth = milp_margin(net, prop)
        if abs(truth) < 1e-6:
            continue
        r = nncert.verify(net, prop, timeout=1.0, attack=False, split="relu")
        if not r.certified:  # timeout, or too many undecided leaves: incomplete, never wrong
            continue
        assert r.status == ("holds" if truth > 0 else "violated"), (case, r, truth)
        decided.add(r.status)
        n += 1
    assert n >= 25 and decided == {"holds", "violated"}


@pytest.mark.parametrize("act", ["relu", "maxmin"])
def test_torch_branch_and_bound_agrees_with_oracle(act):
    """The torch path (the GPU's, here on CPU torch, lookahead splitting included), attacks off."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(17 if act == "relu" else 18)
    seen = set()
    for case in range(30):
        net, prop = random_case(rng, act)
        truth = milp_margin(net, prop)
        if abs(truth) < 1e-6:
            continue
        r = nncert.verify(net, prop, timeout=20.0, attack=False, device="cpu", backend="torch")
        assert r.status == ("holds" if truth > 0 else "violated"), (case, r, truth)
        if r.status == "violated":
            x, y = r.counterexample
            assert np.allclose(y, net(x)) and prop.in_region(0, x)
        seen.add(r.status)
    assert seen == {"holds", "violated"}


def _core_problems(prop):
    from nncert.verify.engine import _problems
    return _problems(prop)


def _core_verdict(net, prop, r) -> str:
    """holds / violated (a replayed candidate) / other, from a raw core branch-and-bound result."""
    from nncert.verify.attack import deepen
    if r["outcome"] == "holds":
        return "holds"
    if r["outcome"] == "candidate" and deepen(net, prop, r["x"], float("inf")) is not None:
        return "violated"
    return r["outcome"]


def test_hybrid_relu_splitting_inside_input_splits_agrees_with_oracle():
    """Input splitting that hands nodes to ReLU splitting (every node from the root on with
    relu_share=1, and below a few unstable units with relu_below=2) decides the same as the MILP."""
    from nncert import _core
    rng = np.random.default_rng(57)
    seen = {"holds": 0, "violated": 0}
    for case in range(40):
        net, prop = random_case(rng, "relu")
        truth = milp_margin(net, prop)
        if abs(truth) < 1e-6:
            continue
        want = "holds" if truth > 0 else "violated"
        for kw in ({"relu_share": 1.0}, {"relu_below": 2}):
            r = _core.branch_and_bound(net._core, _core_problems(prop), time_limit=20.0, **kw)
            got = _core_verdict(net, prop, r)
            if got == "undecided":  # leaves with every unit split: the engine's Z3 decides them
                continue
            assert got == want, (case, kw, r["outcome"], truth)
            seen[got] += 1
    assert seen["holds"] >= 10 and seen["violated"] >= 10, seen


def test_search_resumed_from_its_open_boxes_agrees_with_oracle():
    """A search stopped after a few nodes returns the nodes it left; searching their boxes again (as the
    engine does after falsification in them) decides as the MILP does."""
    from nncert import _core
    rng = np.random.default_rng(58)
    resumed = 0
    for case in range(80):
        net, prop = random_case(rng, "relu")
        truth = milp_margin(net, prop)
        if abs(truth) < 1e-6:
            continue
        base = _core_problems(prop)
        first = _core.branch_and_bound(net._core, base, max_nodes=3, keep_open=True, time_limit=20.0)
        if first["outcome"] != "node_limit":
            continue
        assert first["open"], case
        scores = [o[4] for o in first["open"]]
        assert scores == sorted(scores), "open nodes come most undecided first"
        probs = [(lo, hi) + tuple(base[k][2:]) for k, lo, hi, _, _ in first["open"]]
        rest = _core.branch_and_bound(net._core, probs, time_limit=20.0, relu_below=first["stats"]["relu_below"])
        got = _core_verdict(net, prop, rest)
        if got == "undecided":
            continue
        assert got == ("holds" if truth > 0 else "violated"), (case, rest["outcome"], truth)
        resumed += 1
    assert resumed >= 10, resumed
