"""``nncert.verify``: falsification, branch and bound in the Rust core, Z3 for undecided leaves."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ..devices import require_torch, resolve_device
from ..errors import InvalidInputError, ShapeError, UnsupportedModelError
from ..layers import Dense, GroupSort, LeakyReLU, ReLU, Residual, reject_implicit, walk
from .attack import deepen, falsify, falsify_boxes, replay
from .property import Property
from .result import VerifyResult

log = logging.getLogger("nncert.verify")
METHODS = ("auto", "bab", "smt")
BACKENDS = ("auto", "core", "torch")
#: Inputs up to this many dimensions are split by input box; larger ones by ReLU phase.
INPUT_SPLIT_MAX_DIM = 12
#: ReLU splitting: the search before the full attack stops after this many nodes (then the attack, then a new search)
QUICK_NODES = 256
#: ... and the attack before it: fewer random points, restarts and steps than the full one (a tenth of its time)
QUICK_ATTACK = {"n_random": 256, "restarts": 4, "steps": 10}
#: Input splitting (core or torch) runs this share of the timeout (at least GUIDED_MIN seconds) first; if
#: that does not decide, falsification searches the boxes it left open and the search resumes from them
#: for twice as long, and so on.
GUIDED_SHARE = 0.01
GUIDED_MIN = 0.5
#: Open boxes falsification searches (most undecided first), and its starting points in all (at most
#: 32 per box).
GUIDED_BOXES = 2048
GUIDED_POINTS = 2048


def _check(net, prop) -> Property:
    from ..network import Network

    if not isinstance(net, Network):
        raise InvalidInputError(f"verify: net must be an nncert.Network, got {type(net).__name__}")
    if not isinstance(prop, Property):
        raise InvalidInputError(f"verify: prop must be an nncert.Property, got {type(prop).__name__}")
    prop = prop.bind(net.output_dim)
    if prop.n_inputs != net.input_dim:
        raise ShapeError(f"property has {prop.n_inputs} inputs but the network has {net.input_dim}")
    if prop.n_outputs != net.output_dim:
        raise ShapeError(f"property has {prop.n_outputs} outputs but the network has {net.output_dim}")
    return prop


def _problems(prop: Property) -> list[tuple]:
    out = []
    for i, j in prop.pairs:
        lo, hi = prop.regions[i]
        a_y, a_x, c = prop.unsafe[j]
        out.append((lo, hi, np.ascontiguousarray(a_y), np.ascontiguousarray(a_x), c))
    return out


def _z3_encodable(net) -> bool:
    return all(isinstance(l, (Dense, Residual, ReLU, LeakyReLU)) or (isinstance(l, GroupSort) and l.group_size == 2)
               for l in walk(net.layers))


def verify(net, prop: Property, timeout: float = 60.0, method: str = "auto", device: Any = None, *,
           attack: bool = True, seed: int = 0, split: str | None = None, max_leaves: int = 2000,
           backend: str = "auto", bound_iters: int | None = None) -> VerifyResult:
    """Decides whether ``prop`` holds for ``net``; see :class:`VerifyResult`.

    method: "auto" (falsification, then bound-propagation branch and bound in the Rust core, then Z3
    on the leaves it cannot decide; input splitting (core or torch) runs in rounds, 1% of the timeout and
    doubling, with falsification in the boxes each round left open; ReLU splitting first tries a cheap attack
    and a search of at most QUICK_NODES nodes, and runs the full attack only where those do not decide), "bab" (the same without Z3), or "smt" (one plain Z3 encoding of the
    whole network per (box, conjunction); small networks only). ``timeout`` (seconds) is a hard
    wall-clock limit for the whole call. ``split``: "input" or "relu" (default: input for at most
    12 inputs). ``bound_iters``: gradient steps per node and objective row of the optimised bounds
    (alpha-CROWN slopes, beta-CROWN split multipliers) in the branch and bound (core or torch); None: the
    default (20; input splitting optimises only the nodes the last gain on their path could close), 0: fixed
    CROWN slopes only. ``device``: None or "cpu" runs the engine in the Rust core on the CPU; "cuda" /
    "cuda:k" runs the bound computations (root bounds, both branch and bounds in batches of sub-problems, with
    the core's optimised bounds and split choices) and the falsification with torch ops on that device, in
    float64; the Z3 leaves and the counterexample replay stay on the CPU. ``backend``: "auto" (by device), "core" or "torch" ("torch" with
    device "cpu" runs the torch path on the CPU, for testing). Progress is reported as log lines on the
    ``nncert.verify`` logger (one per phase)."""
    t0 = time.monotonic()
    reject_implicit(getattr(net, "layers", ()), "verify")
    timeout = float(timeout)
    if not np.isfinite(timeout) or timeout <= 0:
        raise InvalidInputError(f"verify: timeout must be a positive number of seconds, got {timeout}")
    if bound_iters is not None and (not isinstance(bound_iters, (int, np.integer)) or bound_iters < 0):
        raise InvalidInputError(f"verify: bound_iters must be a non-negative integer or None, got {bound_iters!r}")
    if method not in METHODS:
        raise InvalidInputError(f"verify: method must be one of {METHODS}, got {method!r}")
    dev = resolve_device(device)
    if backend not in BACKENDS:
        raise InvalidInputError(f"verify: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "core" and dev.type != "cpu":
        raise InvalidInputError(f"verify: backend='core' runs on the CPU; device {dev} needs backend 'torch' or 'auto'")
    on_torch = backend == "torch" or dev.type == "cuda"
    if on_torch:
        require_torch("verify")
    prop = _check(net, prop)
    deadline = t0 + timeout
    stats: dict[str, Any] = {"nodes": 0, "z3_leaves": 0, "stable": 0, "unstable": 0,
                             "phase_seconds": {"root_bounds": 0.0, "attack": 0.0, "bab": 0.0, "z3": 0.0}}
    rng = np.random.default_rng(seed)
    stats["device"] = f"{dev} (torch)" if on_torch else "cpu (Rust core)"

    def branch_and_bound(mode: str, time_limit: float, max_nodes: int | None = None,
                         lookahead: bool = True, problems: list | None = None, keep_open: bool = False,
                         relu_below: int | None = None, max_leaves: int = max_leaves) -> dict[str, Any]:
        if on_torch:
            from ..torch_backend.bab import bab
            return bab(net, _problems(prop) if problems is None else problems, dev, time_limit=time_limit,
                       max_nodes=max_nodes, max_leaves=max_leaves, lookahead=lookahead, keep_open=keep_open,
                       relu_below=relu_below, opt_iters=bound_iters, mode=mode)
        from .. import _core
        return _core.branch_and_bound(net._core, _problems(prop) if problems is None else problems, mode=mode,
                                      time_limit=time_limit, max_nodes=max_nodes, max_leaves=max_leaves,
                                      opt_iters=bound_iters, lookahead=lookahead, keep_open=keep_open,
                                      **({"relu_below": relu_below} if relu_below else {}))

    def guided(time_limit: float) -> dict[str, Any]:
        """Input splitting (core or torch) in rounds: each round searches for a time (GUIDED_SHARE of the
        timeout, doubling every round); if it does not decide, falsification searches the boxes it left
        open (and its undecided leaves), then the next round resumes from the open boxes. The result of
        the whole, in the root problems' numbering."""
        base = _problems(prop)
        end = time.monotonic() + time_limit
        stage = max(GUIDED_MIN, GUIDED_SHARE * timeout)
        problems, origin, relu_below = None, list(range(len(base))), None
        leaves: list = []
        total: dict[str, Any] = {}
        while True:
            r = branch_and_bound("input", max(0.0, min(end - time.monotonic(), stage)), problems=problems,
                                 keep_open=True, relu_below=relu_below, max_leaves=max(1, max_leaves - len(leaves)))
            s = r["stats"]
            if not total:
                total = dict(s)
            else:
                for key in ("nodes", "pruned", "infeasible", "leaves", "relu_nodes", "memory_retries"):
                    if key in s:  # (relu_nodes, memory_retries: the torch search's)
                        total.setdefault(key, 0)
                        total[key] += s[key]
                for key in ("max_depth", "max_queue"):
                    total[key] = max(total[key], s[key])
                total.pop("proved_volume", None)  # the rounds' shares do not add up
                if s.get("memory_limit"):
                    total["memory_limit"] = True
            leaves += [(origin[leaf[0]],) + tuple(leaf[1:]) for leaf in r["leaves"]]
            out = dict(r, stats=total, leaves=leaves)
            if "problem" in r:
                out["problem"] = origin[r["problem"]]
            if r["outcome"] == "holds" and leaves:
                out["outcome"] = "undecided"  # an earlier round's leaves are still undecided
            if r["outcome"] not in ("timeout", "node_limit") or time.monotonic() >= end:
                return out
            tf = time.monotonic()
            # One box per open node (ReLU-split siblings share theirs), most undecided first; then the leaves.
            boxes, seen = [], set()
            for k, lo, hi, _, _ in r.get("open", []):
                key = (origin[k], lo.tobytes(), hi.tobytes())
                if key not in seen:
                    seen.add(key)
                    boxes.append((origin[k], lo, hi))
            some = boxes[:GUIDED_BOXES] + [(leaf[0], leaf[1], leaf[2]) for leaf in leaves[:GUIDED_BOXES]]
            x = None
            if some:
                budget = min(end, tf + min(0.005 * timeout, 1.0))
                x = falsify_boxes(net, prop, some, budget, rng, per_box=max(1, min(32, GUIDED_POINTS // len(some))))
            stats["phase_seconds"]["attack"] += time.monotonic() - tf
            if x is not None:
                return {"outcome": "falsified", "x": x, "stats": total, "leaves": []}
            if r["outcome"] == "node_limit" or not boxes:
                return out
            # The next round resumes from the open boxes (a node's ReLU splits are dropped: its whole box is
            # searched again), with the first round's hybrid threshold (a share of the root's unstable units).
            if relu_below is None:
                relu_below = s.get("relu_below") or None  # (0: no hybrid)
            # Sides measured against the original root's, so that the split choice (its guards against
            # slicing) is that of an uninterrupted search.
            problems = [(lo, hi) + tuple(base[k][2:5]) + (base[k][1] - base[k][0],) for k, lo, hi in boxes]
            origin = [k for k, _, _ in boxes]
            stage *= 2

    def done(status, how, x=None, message=""):
        ce, info = None, None
        if x is not None:
            info = replay(net, prop, x)
            assert info is not None, "internal: unreplayed counterexample"
            ce = (info["x"], info["y"])
        if status == "timeout":
            message = message or f"time limit of {timeout:g} s reached"
        log.info("verify: %s via %s in %.2f s (%s nodes, %s Z3 leaves)", status, how, time.monotonic() - t0,
                 stats.get("nodes", 0), stats.get("z3_leaves", 0))
        return VerifyResult(status, ce, time.monotonic() - t0, how, stats, message, info)

    if method == "smt":
        return _smt(net, prop, deadline, stats, done)

    mode = split or ("input" if net.input_dim <= INPUT_SPLIT_MAX_DIM else "relu")
    if mode not in ("input", "relu"):
        raise InvalidInputError(f"verify: split must be 'input' or 'relu', got {split!r}")
    # One bound computation per root problem first: properties that bounds prove at once skip the attack.
    tr = time.monotonic()
    # (no lookahead: the roots are never split here, and it costs 2n bound passes per root)
    root = branch_and_bound("input", max(0.0, deadline - tr), max_nodes=len(prop.pairs), lookahead=False)
    stats["phase_seconds"]["root_bounds"] = time.monotonic() - tr
    if root["outcome"] == "holds":
        stats.update({k: root["stats"][k] for k in ("nodes", "stable", "unstable")})
        return done("holds", "bab")
    if root["outcome"] == "candidate" and replay(net, prop, root["x"]) is not None:
        return done("violated", "bab", root["x"])

    def falsification(until: float, **effort: int) -> np.ndarray | None:
        ta = time.monotonic()
        if on_torch:
            from ..torch_backend.attack import falsify as falsify_torch
            x = falsify_torch(net, prop, until, dev, seed=seed, **effort)
        else:
            x = falsify(net, prop, until, rng, **effort)
        stats["phase_seconds"]["attack"] += time.monotonic() - ta
        return x

    quick, quick_nodes = None, 0  # a small search that decided before the full attack, and its nodes
    if attack:
        budget = min(0.1 * timeout, 2.0 + 0.02 * timeout)
        if mode == "relu":
            # Most such properties (robustness of an image) hold after a small search, which the full attack
            # (~1.5 s on MNIST 256x2) would only delay: a cheap attack, then at most QUICK_NODES nodes, and
            # the full attack only where neither decides (the search then starts again).
            x = falsification(min(deadline, time.monotonic() + budget), **QUICK_ATTACK)
            if x is not None:
                return done("violated", "attack", x)
            tq = time.monotonic()
            q = branch_and_bound("relu", max(0.0, min(deadline, tq + budget) - tq), max_nodes=QUICK_NODES)
            stats["phase_seconds"]["bab"] += time.monotonic() - tq
            if _decided(q, max_leaves):
                quick = q
                log.info("verify: a search of %d nodes decided before the full attack", q["stats"]["nodes"])
            else:
                quick_nodes = q["stats"]["nodes"]
        if quick is None:
            x = falsification(min(deadline, time.monotonic() + budget))
            if x is not None:
                return done("violated", "attack", x)
    if time.monotonic() >= deadline:
        return done("timeout", "attack")

    tb = time.monotonic()
    if quick is not None:
        r = quick
    else:
        log.info("verify: falsification found nothing in %.2f s; branch and bound (%s split, %.1f s left)",
                 stats["phase_seconds"]["attack"], mode, deadline - tb)
        ta0 = stats["phase_seconds"]["attack"]
        # input splitting runs in rounds with falsification between them (its time is the attack's)
        left = max(0.0, deadline - tb)
        r = guided(left) if mode == "input" and attack else branch_and_bound(mode, left)
        stats["phase_seconds"]["bab"] += time.monotonic() - tb - (stats["phase_seconds"]["attack"] - ta0)
    stats.update({k: r["stats"][k] for k in ("nodes", "pruned", "max_depth", "max_queue", "stable", "unstable",
                                             "relu_nodes", "memory_limit", "memory_retries") if k in r["stats"]})
    stats["nodes"] = stats.get("nodes", 0) + quick_nodes
    stats["split"] = mode
    out = r["outcome"]
    if out == "falsified":
        return done("violated", "bab+attack", r["x"])
    stats["bab_leaves"] = len(r["leaves"])
    if out == "holds":
        return done("holds", "bab")
    if out == "candidate":
        x = deepen(net, prop, r["x"], deadline)
        if x is not None:
            return done("violated", "bab", x)
        return done("unknown", "bab", message="branch and bound found a point that did not replay in float32")
    if out == "timeout":
        return done("timeout", "bab")
    if out == "node_limit":
        if r["stats"].get("memory_limit"):
            return done("unknown", "bab", message="the branch and bound queue outgrew its share of the device's memory")
        return done("unknown", "bab", message=f"more than {max_leaves} undecided leaves")
    # undecided leaves
    if method == "bab":
        return done("unknown", "bab", message=f"{len(r['leaves'])} leaves undecided by bounds (method='bab')")
    if not _z3_encodable(net):
        return done("unknown", "bab", message="undecided leaves, and the network has activations Z3 cannot encode")
    from . import smt

    tz = time.monotonic()
    log.info("verify: %d leaves undecided by bounds go to Z3", len(r["leaves"]))
    undecided = ""  # why some leaf is neither proved nor a replayed counterexample
    try:
        for problem, lo, hi, splits, pre in r["leaves"]:
            i, j = prop.pairs[problem]
            a_y, a_x, c = prop.unsafe[j]
            enc = smt.encode(net, lo, hi, pre=pre, splits=splits, deadline=deadline)
            smt.add_conjunction(enc, a_y, a_x, c)
            stats["z3_leaves"] += 1
            res, x = smt.check(enc, deadline)
            if res != "unsat":
                verdict, x, why = _z3_answer(net, prop, res, x, lo, hi, deadline)
                if verdict is not None:
                    return done(verdict, "bab+z3", x)
                undecided = undecided or why
    except smt.EncodingTimeout:
        return done("timeout", "bab+z3")
    finally:
        stats["phase_seconds"]["z3"] = time.monotonic() - tz
    if undecided:
        return done("unknown", "bab+z3", message=undecided)
    return done("holds", "bab+z3")


def _decided(r: dict[str, Any], max_leaves: int) -> bool:
    """Whether a branch and bound stopped at QUICK_NODES nodes decided anything (a verdict, leaves for Z3, or a
    limit other than its node count)."""
    if r["outcome"] == "node_limit":
        return bool(r["stats"].get("memory_limit")) or len(r["leaves"]) >= max_leaves
    return r["outcome"] != "timeout"


def _z3_answer(net, prop, res, x, lo, hi, deadline) -> tuple[str | None, np.ndarray | None, str]:
    """A Z3 answer other than unsat, judged: ("violated", x, "") when its model x replays through the network
    (after being pushed inside the region), ("timeout", None, ""), or (None, None, why) when this query stays open
    (a model that does not replay, or Z3's "unknown"): the caller goes on with its other queries, since one of
    them may still give a counterexample that replays."""
    if res == "timeout":
        return "timeout", None, ""
    if res == "sat":
        x = deepen(net, prop, np.clip(x, lo, hi), deadline)
        if x is not None:
            return "violated", x, ""
        return None, None, "a Z3 model did not replay through the network"
    return None, None, "Z3 returned unknown"


def _smt(net, prop, deadline, stats, done) -> VerifyResult:
    from . import smt

    if not _z3_encodable(net):
        raise UnsupportedModelError("method='smt' supports networks of Dense, ReLU, LeakyReLU, MaxMin and Residual "
                                    "layers only")
    tz = time.monotonic()
    undecided = ""
    try:
        for i, j in prop.pairs:
            lo, hi = prop.regions[i]
            a_y, a_x, c = prop.unsafe[j]
            def build(lo=lo, hi=hi, a_y=a_y, a_x=a_x, c=c):
                enc = smt.encode(net, lo, hi, deadline=deadline)
                smt.add_conjunction(enc, a_y, a_x, c)
                return enc

            stats["z3_leaves"] += 1
            res, x = smt.check_isolated(build, deadline)
            if res != "unsat":
                verdict, x, why = _z3_answer(net, prop, res, x, lo, hi, deadline)
                if verdict is not None:
                    return done(verdict, "smt", x)
                undecided = undecided or why
    except smt.EncodingTimeout:
        return done("timeout", "smt")
    finally:
        stats["phase_seconds"]["z3"] = time.monotonic() - tz
    if undecided:
        return done("unknown", "smt", message=undecided)
    return done("holds", "smt")
