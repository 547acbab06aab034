"""nncert.verify on the torch path (backend="torch", run on the CPU here; device="cuda" on a GPU): the same
verdicts as the Rust CPU path, replayed counterexamples, Z3 leaves on the CPU, and the timeout."""

from __future__ import annotations

import time

import numpy as np
import pytest

import nncert
from nncert import Property
from nncert.errors import InvalidInputError

from conftest import data_path

torch = pytest.importorskip("torch")

# Time limit of searches that must finish: no run comes near it. Outcomes and trees must not depend on the
# machine's load (on a CPU shared with another process, torch's threads slowed these searches 5-26x).
FINISH = 600

INSTANCES = [("test_nano.onnx", "test_nano.vnnlib", "holds"), ("test_tiny.onnx", "test_tiny.vnnlib", "holds"),
             ("test_small.onnx", "test_small.vnnlib", "holds"), ("test_sat.onnx", "test_prop.vnnlib", "violated"),
             ("test_unsat.onnx", "test_prop.vnnlib", "holds")]


def check_violation(net, prop, r):
    x, y = r.counterexample
    assert any(prop.in_region(i, x) and np.all(prop.conj_values(j, x, net(x)) <= 0)
               and np.all(prop.conj_values(j, x, np.asarray(net(x.astype(np.float32)), dtype=np.float64)) <= 0)
               for i, j in prop.pairs)


@pytest.mark.parametrize("onnx, vnnlib, expected", INSTANCES)
def test_vnncomp_test_instances_same_verdict_as_the_core(onnx, vnnlib, expected):
    net = nncert.Network.from_onnx(data_path("vnncomp2021", "test", onnx))
    prop = Property.from_vnnlib(data_path("vnncomp2021", "test", vnnlib))
    r = nncert.verify(net, prop, timeout=FINISH, backend="torch")
    assert r.status == expected == nncert.verify(net, prop, timeout=FINISH).status
    assert r.stats["device"] == "cpu (torch)"
    if expected == "violated":
        check_violation(net, prop, r)


def random_relu_net(rng, widths):
    layers = []
    for k in range(len(widths) - 1):
        layers.append(nncert.Dense(rng.normal(size=(widths[k + 1], widths[k])), 0.3 * rng.normal(size=widths[k + 1])))
        if k + 2 < len(widths):
            layers.append(nncert.MaxMin() if k == 1 else nncert.ReLU())
    return nncert.Network(layers)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_small_nets_holds_and_violated_agree(seed):
    rng = np.random.default_rng(seed)
    net = random_relu_net(rng, (3, 10, 10, 2))
    box = [(np.full(3, -0.5), np.full(3, 0.5))]
    top = net(rng.uniform(-0.5, 0.5, (20000, 3)))[:, 0].max()
    verdicts = []
    for _ in range(6):  # raise the threshold past every counterexample found, until it holds
        prop = Property(box, [(np.array([[-1.0, 0.0]]), np.array([-(top + 0.05 * (1 + abs(top)))]))])
        core = nncert.verify(net, prop, timeout=FINISH)
        tr = nncert.verify(net, prop, timeout=FINISH, backend="torch")
        assert core.status == tr.status
        verdicts.append(tr.status)
        if tr.status == "holds":
            break
        check_violation(net, prop, tr)
        top = max(top, core.counterexample[1][0], tr.counterexample[1][0])
    assert verdicts[-1] == "holds"
    prop = Property(box, [(np.array([[-1.0, 0.0]]), np.array([-(top - 0.02)]))])
    core, tr = nncert.verify(net, prop, timeout=FINISH), nncert.verify(net, prop, timeout=FINISH, backend="torch")
    assert core.status == tr.status == "violated"
    check_violation(net, prop, tr)


def test_branch_and_bound_on_torch_splits_and_proves():
    """No attack: the torch branch and bound itself must split to prove a margin the root bounds miss."""
    rng = np.random.default_rng(5)
    net = random_relu_net(rng, (2, 16, 16, 1))
    box = [(np.full(2, -1.0), np.full(2, 1.0))]
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1).reshape(-1, 2)
    top = net(g)[:, 0].max()
    prop = Property(box, [(np.array([[-1.0]]), np.array([-(top + 0.05 * (1 + abs(top)))]))])
    r = nncert.verify(net, prop, timeout=FINISH, backend="torch", attack=False)
    assert r.status == "holds" and r.stats["nodes"] > 1


def test_z3_leaves_stay_on_the_cpu():
    """|x0 - x1| = 2 only at two corners: bounds never decide it, leaves go to Z3, the answer is exact."""
    net = nncert.Network([nncert.Dense([[1.0, -1.0], [-1.0, 1.0]]), nncert.ReLU(), nncert.Dense([[1.0, 1.0]])])
    box = [(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))]
    r = nncert.verify(net, Property(box, [(np.array([[-1.0]]), np.array([-2.0]))]), timeout=FINISH, backend="torch",
                      attack=False)
    assert r.status == "violated" and np.allclose(np.abs(r.counterexample[0]), 1.0)
    r = nncert.verify(net, Property(box, [(np.array([[-1.0]]), np.array([-2.0 - 1e-3]))]), timeout=FINISH,
                      backend="torch")
    assert r.status == "holds"


def test_torch_leaves_carry_core_bounds_and_z3_decides_them():
    """Boxes narrower than min_width become leaves with their pre-activation bounds (the Rust core's, to
    1e-8), in the format the Z3 leaf encoder on the CPU reads."""
    from nncert import _core
    from nncert.devices import CPU
    from nncert.torch_backend.bab import bab
    from nncert.verify import smt

    rng = np.random.default_rng(4)
    net = random_relu_net(rng, (2, 8, 8, 1))
    net = nncert.Network([l for l in net.layers if not isinstance(l, nncert.MaxMin)][:2] + [nncert.Dense(rng.normal(size=(1, 8)))])
    lo, hi = np.full(2, -1.0), np.full(2, 1.0)
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 401), np.linspace(-1, 1, 401)), -1).reshape(-1, 2)
    top = net(g)[:, 0].max()
    for c, expected in ((top + 1e-3, "unsat"), (top - 1e-3, "sat")):
        problem = (lo, hi, np.array([[-1.0]]), np.zeros((1, 2)), np.array([-c]))
        r = bab(net, [problem], CPU, time_limit=FINISH, min_width=10.0)
        core = _core.branch_and_bound(net._core, [problem], time_limit=FINISH, min_width=10.0)
        assert r["outcome"] == core["outcome"]
        if expected == "sat" and r["outcome"] == "candidate":  # a box vertex already violates it
            continue
        assert r["outcome"] == "undecided" and len(r["leaves"]) == 1
        pi, llo, lhi, splits, pre = r["leaves"][0]
        for (tl, tu), (rl, ru) in zip(pre, core["leaves"][0][4]):
            np.testing.assert_allclose(tl, rl, atol=1e-8)
            np.testing.assert_allclose(tu, ru, atol=1e-8)
        enc = smt.encode(net, llo, lhi, pre=pre, splits=splits)
        smt.add_conjunction(enc, problem[2], problem[3], problem[4])
        assert smt.check(enc, time.monotonic() + 20)[0] == expected


def test_timeout_holds_on_the_torch_path():
    # (the core needs ~3 s for this instance, the torch path on a CPU ~10 s)
    net = nncert.Network.from_onnx(data_path("vnncomp2021", "acasxu", "ACASXU_run2a_4_2_batch_2000.onnx"))
    p = Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_2.vnnlib"))
    r = nncert.verify(net, p, timeout=1.5, backend="torch")
    assert r.status == "timeout" and r.counterexample is None
    assert r.seconds < 1.5 + 10.0  # honoured, not ignored (precision is a benchmark matter; CI machines are loaded)


def test_backend_arguments():
    net = nncert.Network([nncert.Dense(np.ones((1, 2)))])
    prop = Property([(np.zeros(2), np.ones(2))], [(np.ones((1, 1)), np.array([-1.0]))])
    with pytest.raises(InvalidInputError, match="backend"):
        nncert.verify(net, prop, backend="jax")
    assert nncert.verify(net, prop, backend="core").status == "holds"
    if not torch.cuda.is_available():  # asking for CUDA where there is none is an error, never a fallback
        with pytest.raises(InvalidInputError, match="CUDA"):
            nncert.verify(net, prop, device="cuda")
        with pytest.raises(InvalidInputError, match="CUDA"):
            nncert.lipschitz(net, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("onnx, vnnlib, expected", INSTANCES)
def test_vnncomp_test_instances_on_cuda(onnx, vnnlib, expected):
    net = nncert.Network.from_onnx(data_path("vnncomp2021", "test", onnx))
    prop = Property.from_vnnlib(data_path("vnncomp2021", "test", vnnlib))
    r = nncert.verify(net, prop, timeout=FINISH, device="cuda")
    assert r.status == expected and r.stats["device"].startswith("cuda")


def test_lookahead_splits_the_side_that_matters():
    # y = relu(x0) - relu(x0 - 0.5) (x0 clipped to [0, 0.5]) on [-1, 1]^3: is y >= 0.6 anywhere? No, but the
    # chord of relu(x0) over [-1, 1] cannot show it; splitting x0 at 0 stabilises units, x1 and x2 do nothing
    from nncert.devices import CPU
    from nncert.torch_backend.bab import _lookahead, bab, flat
    from nncert.torch_backend.propagate import objective, propagate

    net = nncert.Network([nncert.Dense(np.array([[1.0, 0, 0], [1.0, 0, 0]]), np.array([0.0, -0.5])), nncert.ReLU(),
                          nncert.Dense(np.array([[1.0, -1.0]]), np.zeros(1))])
    f64 = dict(dtype=torch.float64)
    lo, hi = -torch.ones((1, 3), **f64), torch.ones((1, 3), **f64)
    a_y, a_x, c = -torch.ones((1, 1, 1), **f64), torch.zeros((1, 1, 3), **f64), torch.full((1, 1), -0.6, **f64)
    root = propagate(net, lo, hi)
    lb, _ = objective(root, a_y, a_x)
    score = (lb - c).max(1).values
    assert float(score) < 0  # not proved on the whole box
    for heuristic in (1, 2):  # whatever side the coefficient heuristic proposes
        dim, _, proved, pre = _lookahead(net, lo, hi, a_y, a_x, c, score, torch.tensor([heuristic]),
                                         torch.tensor([0]), 2 * torch.ones((1, 3), **f64), 1e-8, 1e-7,
                                         flat(root.pre, lo), [2])
        assert int(dim) == 0
        # both halves of x0 are proved (x0 <= 0: y = 0; x0 >= 0: y = x0 - relu(x0 - 0.5) <= 0.5), and each comes
        # back with its own bounds: the pre-activations x0 and x0 - 0.5 over x0 in [-1, 0] and [0, 1]
        assert proved.tolist() == [[True, True]]
        np.testing.assert_allclose(pre[0].numpy(), [[-1.0, -1.5, 0.0, -0.5], [0.0, -0.5, 1.0, 0.5]])
    problems = [(-np.ones(3), np.ones(3), -np.ones((1, 1)), np.zeros((1, 3)), np.array([-0.6]))]
    on, off = (bab(net, problems, CPU, time_limit=FINISH, lookahead=look) for look in (True, False))
    assert on["outcome"] == off["outcome"] == "holds"
    assert on["stats"]["nodes"] <= 5 and on["stats"]["nodes"] <= off["stats"]["nodes"]


def test_stopped_search_returns_its_open_boxes_and_resumes_to_the_same_verdict():
    """keep_open: a search stopped by its node limit hands back its undecided boxes (inside the root box, root
    index kept); searching on from them (with the root's side widths) proves what one uninterrupted search
    proves. This is what the engine's rounds (falsification in the open boxes between rounds) build on."""
    from nncert.devices import CPU
    from nncert.torch_backend.bab import bab

    rng = np.random.default_rng(5)
    net = random_relu_net(rng, (2, 16, 16, 1))
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1).reshape(-1, 2)
    top = net(g)[:, 0].max()
    lo, hi = np.full(2, -1.0), np.full(2, 1.0)
    root = (lo, hi, -np.ones((1, 1)), np.zeros((1, 2)), np.array([-(top + 0.05 * (1 + abs(top)))]))
    whole = bab(net, [root], CPU, time_limit=FINISH)
    assert whole["outcome"] == "holds" and whole["stats"]["nodes"] > 3
    first = bab(net, [root], CPU, time_limit=FINISH, max_nodes=2, keep_open=True)
    assert first["outcome"] == "node_limit" and first["open"]
    for k, blo, bhi, _, _ in first["open"]:
        assert k == 0 and np.all(lo <= blo) and np.all(blo <= bhi) and np.all(bhi <= hi)
    rest = bab(net, [(blo, bhi) + root[2:5] + (hi - lo,) for _, blo, bhi, _, _ in first["open"]], CPU, time_limit=FINISH)
    assert rest["outcome"] == "holds"
    # a property the network violates (threshold below the sampled maximum): the torch path finds and replays it
    bad = Property([(lo, hi)], [(np.array([[-1.0]]), np.array([-(top - 0.01 * (1 + abs(top)))]))])
    r = nncert.verify(net, bad, timeout=FINISH, backend="torch")
    assert r.status == "violated"
    check_violation(net, bad, r)


@pytest.mark.parametrize("opt_iters", [0, None])
def test_search_matches_the_core_node_for_node(opt_iters):
    """Each box starts from its parent's bounds (or the lookahead's of its half), halves the lookahead proved
    are not searched again, and (opt_iters None: 20 steps) boxes the last gain on their path could close get
    optimised slopes, warm-started from the parent's, as in the core: the two searches are the same tree
    (ACAS Xu 2_1 / property 3: 113 nodes each with fixed slopes, 69 with optimised ones; the torch search took
    3,148 nodes before it used the parent's bounds)."""
    from nncert import _core
    from nncert.devices import CPU
    from nncert.torch_backend.bab import bab
    from nncert.verify.engine import _problems

    net = nncert.Network.from_onnx(data_path("vnncomp2021", "acasxu", "ACASXU_run2a_2_1_batch_2000.onnx"))
    problems = _problems(Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_3.vnnlib")).bind(5))
    core = _core.branch_and_bound(net._core, problems, time_limit=FINISH, opt_iters=opt_iters)
    tr = bab(net, problems, CPU, time_limit=FINISH, opt_iters=opt_iters)
    assert core["outcome"] == tr["outcome"] == "holds"
    assert tr["stats"]["relu_below"] == core["stats"]["relu_below"] > 0
    # the same tree up to rounding in the choice between sides of (nearly) equal merit
    assert abs(tr["stats"]["nodes"] - core["stats"]["nodes"]) <= 0.1 * core["stats"]["nodes"]
    assert tr["stats"]["max_depth"] == core["stats"]["max_depth"]


def test_hybrid_switches_boxes_with_few_unstable_units_to_relu_splitting():
    """ACAS Xu 4_2 / property 2: input halving alone leaves a few unstable units that it removes only slowly
    (a timeout after 30 s on the torch path before); boxes with at most 20% of the root's unstable units are
    split on ReLU phases from then on (split multipliers; halved again once every unit is fixed), and the proof
    is the core's. 1_1 / property 5: the same tree as the core's hybrid, node for node."""
    from nncert import _core
    from nncert.devices import CPU
    from nncert.torch_backend.bab import bab
    from nncert.verify.engine import _problems

    net = nncert.Network.from_onnx(data_path("vnncomp2021", "acasxu", "ACASXU_run2a_4_2_batch_2000.onnx"))
    prop = Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_2.vnnlib"))
    r = nncert.verify(net, prop, timeout=FINISH, backend="torch")
    assert r.status == "holds" == nncert.verify(net, prop, timeout=FINISH).status
    assert r.stats["relu_nodes"] > 0
    net = nncert.Network.from_onnx(data_path("vnncomp2021", "acasxu", "ACASXU_run2a_1_1_batch_2000.onnx"))
    problems = _problems(Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_5.vnnlib")).bind(5))
    tr, core = bab(net, problems, CPU, time_limit=FINISH), _core.branch_and_bound(net._core, problems, time_limit=FINISH)
    assert tr["outcome"] == core["outcome"] == "holds" and tr["stats"]["relu_below"] == core["stats"]["relu_below"]
    assert tr["stats"]["relu_nodes"] > 0
    assert abs(tr["stats"]["nodes"] - core["stats"]["nodes"]) <= 0.05 * core["stats"]["nodes"]
    assert tr["stats"]["max_depth"] == core["stats"]["max_depth"]


def test_relu_split_box_keeps_its_problem_number():
    """A counterexample ReLU splitting finds below an input box is reported for the box's own root problem
    (here the second of two; relu_below = 1000 switches every unstable box to ReLU splitting at once)."""
    from nncert.devices import CPU
    from nncert.torch_backend.bab import bab

    net = nncert.Network([nncert.Dense([[1.0, -1.0], [-1.0, 1.0]]), nncert.ReLU(), nncert.Dense([[1.0, 1.0]])])
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    never = (lo, hi, np.array([[1.0]]), np.zeros((1, 2)), np.array([-0.5]))  # |x0 - x1| <= -0.5
    corners = (lo, hi, np.array([[-1.0]]), np.zeros((1, 2)), np.array([-2.0]))  # |x0 - x1| >= 2
    r = bab(net, [never, corners], CPU, time_limit=FINISH, relu_below=1000)
    assert r["outcome"] == "candidate" and r["problem"] == 1 and r["stats"]["relu_nodes"] > 0
    assert abs(r["x"][0] - r["x"][1]) >= 2.0
    plain = bab(net, [never, corners], CPU, time_limit=FINISH, relu_share=0.0)
    assert plain["outcome"] == "candidate" and plain["problem"] == 1 and plain["stats"]["relu_nodes"] == 0


def _leafy_net():
    """A 4-8-8-2 ReLU net (seeded) whose ReLU-split search leaves leaves for Z3 at the threshold below."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        layers = []
        for k, (m, n) in enumerate(((8, 4), (8, 8), (2, 8))):
            layers.append(nncert.Dense(rng.normal(size=(m, n)) / np.sqrt(n), 0.3 * rng.normal(size=m)))
            if k < 2:
                layers.append(nncert.ReLU())
        net = nncert.Network(layers)
        top = (net(rng.uniform(-1, 1, (20000, 4))) @ np.array([1.0, -1.0])).max()
    box = [(-np.ones(4), np.ones(4))]
    return net, Property(box, [(-np.array([[1.0, -1.0]]), np.array([-(top + 0.01)]))])


def test_relu_split_search_on_torch_matches_the_core_and_its_leaves_go_to_z3():
    """ReLU splitting on the device (nncert.torch_backend.bab, mode="relu": phases clamped into the bounds, alpha/beta-
    CROWN on every node, the core's branching rule) searches the core's tree; its leaves (all phases fixed,
    bound still short) carry their splits and bounds to Z3 on the CPU. Here the first leaf's Z3 model does not
    replay in float32 and a later one does: the verdict is the core's (the engine used to stop at the first)."""
    from nncert import _core
    from nncert.devices import CPU
    from nncert.torch_backend.bab import bab
    from nncert.verify.engine import _problems

    net, prop = _leafy_net()
    problems = _problems(prop.bind(2))
    tr = bab(net, problems, CPU, time_limit=FINISH, mode="relu")
    core = _core.branch_and_bound(net._core, problems, mode="relu", time_limit=FINISH)
    assert tr["outcome"] == core["outcome"] == "undecided"
    assert tr["stats"]["nodes"] == core["stats"]["nodes"] and len(tr["leaves"]) == len(core["leaves"])
    same = lambda leaves: sorted(sorted(map(tuple, leaf[3])) for leaf in leaves)  # noqa: E731
    assert same(tr["leaves"]) == same(core["leaves"])
    for backend in ("core", "torch"):
        r = nncert.verify(net, prop, timeout=FINISH, split="relu", attack=False, backend=backend)
        assert r.status == "violated" and r.method == "bab+z3" and r.stats["z3_leaves"] >= 1
        check_violation(net, prop, r)


def test_z3_answers_that_decide_nothing_give_unknown(monkeypatch):
    from nncert.verify import smt

    net, prop = _leafy_net()
    monkeypatch.setattr(smt, "check", lambda enc, deadline: ("unknown", None))
    for backend in ("core", "torch"):
        r = nncert.verify(net, prop, timeout=FINISH, split="relu", attack=False, backend=backend)
        assert r.status == "unknown" and r.message == "Z3 returned unknown"
        assert r.stats["z3_leaves"] == r.stats["bab_leaves"] > 1  # every leaf was tried
    monkeypatch.setattr(smt, "check_isolated", lambda build, deadline: ("unknown", None))
    r = nncert.verify(net, prop, timeout=FINISH, method="smt")
    assert r.status == "unknown" and r.message == "Z3 returned unknown" and r.stats["z3_leaves"] == 1


@pytest.mark.parametrize("act", [nncert.ReLU(), nncert.LeakyReLU(0.1)], ids=repr)
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_relu_split_search_on_torch_same_tree_as_the_core(act, residual, seed):
    """Same outcome, node count, depth and number of leaves as the core's ReLU splitting (holds, undecided and
    candidate cases among these nets; residual blocks and leaky slopes in the relaxations and multipliers)."""
    from nncert import _core
    from nncert.devices import CPU
    from nncert.torch_backend.bab import bab

    rng = np.random.default_rng(seed)
    layers, widths = [], (4, 10, 10, 2)
    for k in range(len(widths) - 1):
        n, m = widths[k], widths[k + 1]
        layers.append(nncert.Dense(rng.normal(size=(m, n)) / np.sqrt(n), 0.3 * rng.normal(size=m)))
        if k + 2 < len(widths):
            layers.append(act)
            if residual:
                layers.append(nncert.Residual([nncert.Dense(0.5 * rng.normal(size=(m, m)) / np.sqrt(m)), act]))
    net = nncert.Network(layers)
    lo, hi = -np.ones(4), np.ones(4)
    top = (net(rng.uniform(lo, hi, (20000, 4))) @ np.array([1.0, -1.0])).max()
    problem = (lo, hi, -np.array([[1.0, -1.0]]), np.zeros((1, 4)), np.array([-(top + 0.05 * (1 + abs(top)))]))
    tr = bab(net, [problem], CPU, time_limit=FINISH, mode="relu")
    core = _core.branch_and_bound(net._core, [problem], mode="relu", time_limit=FINISH)
    assert tr["outcome"] == core["outcome"]
    if core["outcome"] != "candidate":  # (a candidate's node count depends on the batch order)
        assert tr["stats"]["nodes"] == core["stats"]["nodes"] and tr["stats"]["max_depth"] == core["stats"]["max_depth"]
        assert len(tr["leaves"]) == len(core["leaves"])


def test_mnist_relu_split_on_torch():
    net = nncert.Network.from_onnx(data_path("vnncomp2021", "mnistfc", "mnist-net_256x2.onnx"))
    prop = Property.from_vnnlib(data_path("vnncomp2021", "mnistfc", "prop_0_0.03.vnnlib"))
    # (attack=False: the small search before the attack has a time budget, so its node count depends on the load)
    core, tr = (nncert.verify(net, prop, timeout=FINISH, attack=False, backend=b) for b in ("core", "torch"))
    assert core.status == tr.status == "holds" and tr.stats["split"] == "relu"
    assert tr.stats["nodes"] == core.stats["nodes"]


def test_queue_outgrowing_its_memory_share_stops_the_search(monkeypatch):
    """A queue past its share of the device's free memory ends the search as unknown (a node limit), never as a
    crash of the process; the verdict says why."""
    from nncert.torch_backend import bab as tb

    net = nncert.Network.from_onnx(data_path("vnncomp2021", "acasxu", "ACASXU_run2a_4_2_batch_2000.onnx"))
    prop = Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_2.vnnlib"))
    monkeypatch.setattr(tb, "QUEUE_MEMORY_SHARE", 1e-12)
    r = nncert.verify(net, prop, timeout=FINISH, backend="torch")
    assert r.status == "unknown" and "memory" in r.message and r.stats["memory_limit"]
    net, leafy = _leafy_net()
    r = nncert.verify(net, leafy, timeout=FINISH, split="relu", attack=False, backend="torch")
    assert r.status == "unknown" and "memory" in r.message


@pytest.mark.parametrize("mode", ["input", "relu"])
def test_a_batch_the_device_has_no_memory_for_is_retried_in_halves(monkeypatch, mode):
    """A batch whose bounds run out of device memory goes back to the queue as it was and later batches take
    half as many nodes: the same tree (same outcome, nodes, depth and leaves) as with memory to spare; when a
    single node does not fit, the error is raised, not swallowed."""
    from nncert.devices import CPU
    from nncert.torch_backend import bab as tb
    from nncert.verify.engine import _problems

    if mode == "input":
        net = nncert.Network.from_onnx(data_path("vnncomp2021", "acasxu", "ACASXU_run2a_2_1_batch_2000.onnx"))
        problems = _problems(Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_3.vnnlib")).bind(5))
    else:
        net, leafy = _leafy_net()
        problems = _problems(leafy.bind(net.output_dim))
    free = tb.bab(net, problems, CPU, time_limit=FINISH, mode=mode)
    real = tb.propagate
    limit = [40]

    def short_of_memory(net, lo, hi, *a, **k):
        if lo.shape[0] > limit[0]:
            raise torch.cuda.OutOfMemoryError("simulated: out of device memory")
        return real(net, lo, hi, *a, **k)

    monkeypatch.setattr(tb, "propagate", short_of_memory)
    tight = tb.bab(net, problems, CPU, time_limit=FINISH, mode=mode, batch=64)
    assert tight["stats"]["memory_retries"] >= 1 and "memory_retries" not in free["stats"]
    assert tight["outcome"] == free["outcome"]
    for key in ("nodes", "max_depth", "leaves", "pruned"):
        assert tight["stats"][key] == free["stats"][key], key
    if mode == "input":  # and through nncert.verify, which reports the retries
        r = nncert.verify(net, Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_3.vnnlib")), timeout=FINISH,
                          backend="torch")
        assert r.status == "holds" and r.stats["memory_retries"] >= 1
    limit[0] = 0
    with pytest.raises(torch.cuda.OutOfMemoryError):
        tb.bab(net, problems, CPU, time_limit=FINISH, mode=mode)


def test_relu_split_on_torch_without_activations():
    """A network without activations has nothing to branch on: its bound is exact, so it holds or its bound's
    minimising vertex is a counterexample (sum x = -3 at x = -1: y >= 3.5 never, y >= 2.5 at x = 1)."""
    from nncert.devices import CPU
    from nncert.torch_backend.bab import bab

    net = nncert.Network([nncert.Dense(np.ones((1, 3)))])
    lo, hi = -np.ones(3), np.ones(3)
    assert bab(net, [(lo, hi, -np.ones((1, 1)), np.zeros((1, 3)), np.array([-3.5]))], CPU, mode="relu")["outcome"] == "holds"
    r = bab(net, [(lo, hi, -np.ones((1, 1)), np.zeros((1, 3)), np.array([-2.5]))], CPU, mode="relu")
    assert r["outcome"] == "candidate" and r["x"].sum() >= 2.5


@pytest.mark.gpu
def test_both_searches_on_cuda_match_the_core():
    """On the GPU: ReLU splitting (MNIST 256x2) searches the core's tree, and input splitting with the hybrid
    (ACAS Xu 4_2 / property 2) proves what the core proves."""
    from nncert import _core
    from nncert.devices import resolve_device
    from nncert.torch_backend.bab import bab
    from nncert.verify.engine import _problems

    net = nncert.Network.from_onnx(data_path("vnncomp2021", "mnistfc", "mnist-net_256x2.onnx"))
    prop = Property.from_vnnlib(data_path("vnncomp2021", "mnistfc", "prop_0_0.03.vnnlib")).bind(10)
    problems = _problems(prop)
    core = _core.branch_and_bound(net._core, problems, mode="relu", time_limit=FINISH)
    gpu = bab(net, problems, resolve_device("cuda"), time_limit=FINISH, mode="relu")
    assert gpu["outcome"] == core["outcome"] == "holds" and gpu["stats"]["nodes"] == core["stats"]["nodes"]
    net = nncert.Network.from_onnx(data_path("vnncomp2021", "acasxu", "ACASXU_run2a_4_2_batch_2000.onnx"))
    prop = Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_2.vnnlib"))
    r = nncert.verify(net, prop, timeout=FINISH, device="cuda")
    assert r.status == "holds" and r.stats["device"].startswith("cuda") and r.stats["relu_nodes"] > 0


@pytest.mark.parametrize("act", [nncert.Tanh(), nncert.MaxMin(), nncert.LeakyReLU(2.0)], ids=repr)
@pytest.mark.parametrize("mode", ["input", "relu"])
def test_device_search_matches_the_core_on_other_activations(act, mode):
    """Activations without free slopes (Tanh, MaxMin) or with a leak above 1 (multipliers only): the same outcome
    and node count as the core in both modes (ReLU mode on a net without ReLUs: a leaf at the root)."""
    from nncert import _core
    from nncert.devices import CPU
    from nncert.torch_backend.bab import bab

    rng = np.random.default_rng(2)
    layers = []
    for k, (m, n) in enumerate(((10, 3), (10, 10), (2, 10))):
        layers.append(nncert.Dense(rng.normal(size=(m, n)) / np.sqrt(n), 0.3 * rng.normal(size=m)))
        if k < 2:
            layers.append(act)
    net = nncert.Network(layers)
    lo, hi = -np.ones(3), np.ones(3)
    top = (net(rng.uniform(lo, hi, (20000, 3))) @ np.array([1.0, -1.0])).max()
    problem = (lo, hi, -np.array([[1.0, -1.0]]), np.zeros((1, 3)), np.array([-(top + 0.02 * (1 + abs(top)))]))
    tr = bab(net, [problem], CPU, time_limit=FINISH, mode=mode)
    core = _core.branch_and_bound(net._core, [problem], mode=mode, time_limit=FINISH)
    assert tr["outcome"] == core["outcome"] and tr["stats"]["nodes"] == core["stats"]["nodes"]
    assert tr["stats"]["nodes"] > 1 or mode == "relu"
