"""Input-splitting branch and bound on a torch device, many boxes per batch.

The same search as ``rust/core/src/bounds/bab.rs`` in ``SplitMode::Input`` (best-first on the largest
bound margin, node pruned when some row's lower bound exceeds its ``c`` by more than ``margin``, box
centre and bound-minimising vertices tried as candidates, the side chosen by the same lookahead, each box
starting from its parent's bounds, optimised slopes gated as in the core, boxes with few unstable ReLUs handed
to the core's ReLU splitting), but the lowest-scored nodes of the queue (all root problems together, their
conjunctions padded to one row count) are bounded together by
:func:`~nncert.torch_backend.propagate.propagate`: batches grow from 8 boxes to ``batch`` and are sized from
the measured time per box so that the deadline holds. Bounds are computed in float64 (``dtype`` is for
experiments only: float32 bounds are not sound enough to prove properties). Returns the same dict as
``_core.branch_and_bound`` so the verify engine treats both alike (leaves go to Z3 on the CPU).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ShapeError
from .compiled import TAct, TResidual, compiled
from .network_ops import torch_module
from .optimize import optimise, select
from .propagate import objective, propagate


def _check(net: Any, problems: list[tuple]) -> None:
    n, m = net.input_dim, net.output_dim
    for i, p in enumerate(problems):
        lo, hi, a_y, a_x, c = p[:5]
        k = len(c)
        if len(p) > 6 or (len(p) == 6 and np.shape(p[5]) != (n,)):
            raise ShapeError(f"problem {i}: expected (lo, hi, a_y, a_x, c[, root widths of shape ({n},)])")
        if a_y.shape != (k, m) or a_x.shape != (k, n) or np.shape(lo) != (n,) or np.shape(hi) != (n,):
            raise ShapeError(f"problem {i}: constraint matrices have shapes {a_y.shape} and {a_x.shape} with {k} "
                             f"right-hand sides and a box of {np.shape(lo)}; expected ({k}, {m}), ({k}, {n}), ({n},)")
        if k == 0:
            raise InvalidInputError(f"problem {i}: the unsafe conjunction has no constraints")
        if not np.all(np.isfinite(c)):
            raise InvalidInputError(f"problem {i}: non-finite right-hand side")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InvalidInputError(f"problem {i}: input box is unbounded or not finite")
        if np.any(np.asarray(lo) > np.asarray(hi)):
            raise InvalidInputError(f"problem {i}: input box is empty (lo > hi)")


def _acts(layers: list, out: list) -> list:
    for l in layers:
        if isinstance(l, TResidual):
            _acts(l.inner, out)
        elif isinstance(l, TAct):
            out.append(l)
    return out


def stability(acts: list, pre: list) -> tuple[int, int]:
    """(stable, unstable) piecewise-linear units of box 0: ReLU/LeakyReLU units and MaxMin pairs."""
    s = u = 0
    for act, (l, h) in zip(acts, pre):
        l, h = l[0], h[0]
        if act.kind in ("relu", "leaky_relu"):
            st = int(((l >= 0) | (h <= 0)).sum())
            s, u = s + st, u + l.numel() - st
        elif act.kind == "groupsort" and act.groups.shape[1] == 2:
            a, b = act.groups[:, 0], act.groups[:, 1]
            st = int(((l[a] >= h[b]) | (l[b] >= h[a])).sum())
            s, u = s + st, u + a.numel() - st
    return s, u


def unstable_counts(acts: list, pre: list) -> Any:
    """Unstable ReLU/LeakyReLU units of every box (B,): the count the hybrid compares with its threshold."""
    u = 0
    for act, (l, h) in zip(acts, pre):
        if act.kind in ("relu", "leaky_relu"):
            u = u + ((l < 0) & (h > 0)).sum(1)
    return u


class Search:
    """What the device's searches share: the limits, the padded problem tensors, the network on the device, the
    statistics and leaves, and the result dict."""

    def __init__(self, net: Any, problems: list[tuple], device: Any, time_limit: float, max_nodes: int | None,
                 batch: int | None, dtype: Any) -> None:
        import torch

        self.t0 = time.monotonic()
        self.deadline = self.t0 + max(0.0, float(time_limit))
        _check(net, problems)
        self.dev = device.torch()
        self.dtype = dtype or torch.float64
        self.batch = batch or (2048 if self.dev.type == "cuda" else 64)
        self.max_nodes = max_nodes if max_nodes is not None else 1 << 62
        self.P, self.K, self.Ay, self.Ax, self.Cc, self.Valid = problem_tensors(net, problems, self.dev, self.dtype)
        self.acts = _acts(compiled(net, self.dev, self.dtype), [])
        self.module = torch_module(net, device, self.dtype)
        self.stats: dict[str, Any] = {"nodes": 0, "pruned": 0, "infeasible": 0, "leaves": 0, "max_depth": 0,
                                      "max_queue": 0, "stable": 0, "unstable": 0, "seconds": 0.0, "relu_below": 0}
        self.leaves: list[tuple] = []

        self._cap, self._per, self._tb = max(len(self.P), 8), 0.0, 0.0
        from ..devices import free_memory
        self.queue_budget = QUEUE_MEMORY_SHARE * free_memory(device)

    def queue_full(self, columns: tuple) -> bool:
        """Whether the queue's tensors outgrew their share of the device's free memory (the search then stops
        with a node limit and ``stats["memory_limit"]``, instead of running out of memory)."""
        full = sum(v.element_size() * v.numel() for v in columns) > self.queue_budget
        if full:
            self.stats["memory_limit"] = True
        return full

    def plan(self, queued: int) -> int:
        """How many queued nodes the next batch takes: batches grow from a few nodes to ``batch``, and none is
        planned longer than a third of the time left (from the measured time per node)."""
        take = min(self.batch, self._cap, queued, self.max_nodes - self.stats["nodes"])
        if self._per > 0:
            take = max(1, min(take, int((self.deadline - time.monotonic()) / (3 * self._per))))
        self._cap *= 2
        self._tb = time.monotonic()
        return take

    def measured(self, taken: int) -> None:
        """Records the time per node of the batch just done."""
        dt = (time.monotonic() - self._tb) / taken
        self._per = dt if self._per == 0 else 0.5 * (self._per + dt)

    def finish(self, outcome: str, **extra: Any) -> dict[str, Any]:
        self.stats["seconds"] = time.monotonic() - self.t0
        return {"outcome": outcome, "leaves": self.leaves, "stats": self.stats, **extra}


def problem_tensors(net: Any, problems: list[tuple], dev: Any, dtype: Any) -> tuple:
    """The problems as tensors: P (per problem (lo, hi, a_y, a_x, c)), the padded row count K, and Ay (N, K, out),
    Ax (N, K, in), Cc (N, K), Valid (N, K) (padding rows: a = 0, c = +inf, never prune, always met)."""
    import torch

    t = lambda v: torch.as_tensor(np.array(v, dtype=np.float64), dtype=dtype, device=dev)  # noqa: E731
    P = [tuple(t(v) for v in p[:5]) for p in problems]
    K = max((len(p[4]) for p in P), default=1)
    Ay = torch.zeros((len(P), K, net.output_dim), dtype=dtype, device=dev)
    Ax = torch.zeros((len(P), K, net.input_dim), dtype=dtype, device=dev)
    Cc = torch.full((len(P), K), float("inf"), dtype=dtype, device=dev)
    Valid = torch.zeros((len(P), K), dtype=torch.bool, device=dev)
    for i, (_, _, a_y, a_x, c) in enumerate(P):
        k = len(c)
        Ay[i, :k], Ax[i, :k], Cc[i, :k], Valid[i, :k] = a_y, a_x, c, True
    return P, K, Ay, Ax, Cc, Valid


def first_candidate(module: Any, lo: Any, hi: Any, lam: Any, a_y: Any, a_x: Any, c: Any,
                    valid: Any) -> tuple[int, np.ndarray] | None:
    """Cheap concrete candidates of S boxes: the centre and, per row, the box vertex minimising the row's linear
    lower bound (lam (S, K, n)); the first that meets every row of its conjunction, as (box, x in float64)."""
    import torch

    centre = 0.5 * (lo + hi)
    verts = torch.where(lam >= 0, lo[:, None], hi[:, None])
    verts = torch.where(valid[..., None], verts, centre[:, None])
    cand = torch.cat([centre[:, None], verts], 1)  # (S, 1 + K, n)
    S, C, n = cand.shape
    y = module(cand.reshape(S * C, n)).reshape(S, C, -1)
    v = y @ a_y.transpose(1, 2) + cand @ a_x.transpose(1, 2) - c[:, None]  # (S, C, K)
    ok = (v <= 0).all(2)
    if not bool(ok.any()):
        return None
    s_i, c_i = ok.nonzero()[0].tolist()
    return s_i, cand[s_i, c_i].cpu().numpy().astype(np.float64)


def _last_argmax(v: Any) -> Any:
    return v.shape[1] - 1 - v.flip(1).argmax(1)


def _split_dims(lo: Any, hi: Any, lam_best: Any, w0: Any, min_width: float) -> Any:
    import torch

    widths = hi - lo
    dim = _last_argmax(widths)
    s = torch.where(widths >= min_width, lam_best.abs() * widths, torch.zeros_like(widths))
    best_s, dim_s = s.max(1)
    dim = torch.where(best_s > 0, s.argmax(1), dim)
    rel = torch.where(w0 > 0, widths / torch.where(w0 > 0, w0, torch.ones_like(w0)), torch.zeros_like(widths))
    widest = _last_argmax(rel)
    pick = rel.gather(1, widest[:, None])[:, 0] > 4 * rel.gather(1, dim[:, None])[:, 0]
    return torch.where(pick, widest, dim)


#: The core's default optimisation gate for input splitting (``bounds::default_gate``): a box is optimised only
#: when its gap is at most this times the gain the last optimisation on its path achieved.
OPT_GATE = 1.0
#: The core's default optimisation steps per node and row (``OptOptions::default``).
OPT_ITERS = 20
#: The share of the device's free memory (at the start) the queue may take.
QUEUE_MEMORY_SHARE = 0.5

# the core's lookahead constants (rust/core/src/bounds/bab.rs): only up to this many inputs, and at most this
# many splits in a row that leave the worse half no better than its parent
LOOKAHEAD_MAX_DIM, MAX_SLICES = 16, 2


def flat(pre: list, lo: Any) -> Any:
    """Pre-activation bounds [(l, u)] per layer, each (B, n_k), of the boxes ``lo`` (B, n) as one
    (B, 2 sum n_k) tensor (a queue column)."""
    import torch
    return torch.cat([lo[:, :0]] + [torch.cat([l, u], 1) for l, u in pre], 1)


def unflat(v: Any, widths: list[int]) -> list:
    out, k = [], 0
    for n in widths:
        out.append((v[:, k:k + n], v[:, k + n:k + 2 * n]))
        k += 2 * n
    return out


def _flat_warm(params: list, widths: list[int], K: int, B: int, like: Any) -> Any:
    """Slopes per activation layer ((B, K, n) or None) as one (B, K sum n) tensor (a queue column)."""
    import torch
    return torch.cat([like.new_zeros((B, 0))] + [(like.new_zeros((B, K, n)) if q is None else q).reshape(B, K * n)
                                                 for q, n in zip(params, widths)], 1)


def _unflat_warm(v: Any, widths: list[int], K: int) -> list:
    out, k = [], 0
    for n in widths:
        out.append(v[:, k:k + K * n].reshape(-1, K, n))
        k += K * n
    return out


def _lookahead(net: Any, lo: Any, hi: Any, a_y: Any, a_x: Any, c: Any, node_m: Any, dim: Any, slices: Any,
               w0: Any, margin: float, min_width: float, prior: Any, widths: list[int]) -> tuple[Any, ...]:
    """The side to split for each of the S boxes (lo, hi), as the core picks it: bound both halves along every
    side (one batch of 2 n S boxes, the box's own bounds ``prior`` (flat) intersected in) and keep the side
    whose halves leave the least total gap (a proved half counts as no gap); the heuristic's ``dim`` wins ties.
    Returns (dims, the children's slice counters, per box and half of the chosen side: proved (S, 2) and its
    bounds (S, 2, flat))."""
    import torch

    S, n = lo.shape
    eye = torch.eye(n, dtype=torch.bool, device=lo.device)
    mid = 0.5 * (lo + hi)  # (S, n)
    # children (S, n, 2, n): half 0 keeps [lo, mid] on side j, half 1 [mid, hi]
    c_lo = lo[:, None, None, :].expand(S, n, 2, n).clone()
    c_hi = hi[:, None, None, :].expand(S, n, 2, n).clone()
    c_hi[:, :, 0] = torch.where(eye, mid[:, None, :], c_hi[:, :, 0])
    c_lo[:, :, 1] = torch.where(eye, mid[:, None, :], c_lo[:, :, 1])
    rep = lambda v: v[:, None].expand(S, 2 * n, *v.shape[1:]).reshape(S * 2 * n, *v.shape[1:])  # noqa: E731
    q = propagate(net, c_lo.reshape(-1, n), c_hi.reshape(-1, n), prior=unflat(rep(prior), widths))
    lb, _ = objective(q, rep(a_y), rep(a_x))
    m = (lb - rep(c) - margin).max(1).values  # -gap of each half
    proved = (q.infeasible | (m > 0)).reshape(S, n, 2)
    m = torch.where(q.infeasible, torch.zeros_like(m), m).reshape(S, n, 2)
    left = m.clamp(max=0).sum(2)
    worse = m.min(2).values
    widths = hi - lo
    left = torch.where(widths >= min_width, left, torch.full_like(left, -float("inf")))
    best = left.max(1).values
    # the heuristic's side first: it wins ties
    pick = torch.where(left.gather(1, dim[:, None])[:, 0] >= best, dim, left.argmax(1))
    better = worse.gather(1, pick[:, None])[:, 0] > node_m + 1e-12 * (1 + node_m.abs())
    take = better | (slices < MAX_SLICES)
    out = torch.where(take, pick, dim)
    kid_slices = torch.where(better | ~take, torch.zeros_like(slices), slices + 1)
    # however good a side looks, slicing it while another stays far wider (relative to the root) stalls
    rel = torch.where(w0 > 0, widths / torch.where(w0 > 0, w0, torch.ones_like(w0)), torch.zeros_like(widths))
    widest = _last_argmax(rel)
    far = rel.gather(1, widest[:, None])[:, 0] > 32 * rel.gather(1, out[:, None])[:, 0]
    out = torch.where(far, widest, out)
    rows = torch.arange(S, device=lo.device)
    return out, kid_slices, proved[rows, out], flat(q.pre, q.lo).reshape(S, n, 2, -1)[rows, out]


def bab(net: Any, problems: list[tuple], device: Any, time_limit: float = 60.0, max_nodes: int | None = None,
        margin: float = 1e-8, batch: int | None = None, min_width: float = 1e-7, max_leaves: int = 10000,
        dtype: Any = None, lookahead: bool = True, keep_open: bool = False, relu_share: float = 0.2,
        relu_below: int | None = None, opt_iters: int | None = None) -> dict[str, Any]:
    """Branch and bound over ``problems`` (a list of (lo, hi, a_y, a_x, c): is some x in the box with
    a_y f(x) + a_x x <= c?, optionally with a sixth entry: the root box's side widths, against which split
    sides are measured when a search resumes from sub-boxes) on the torch ``device`` (a
    :class:`~nncert.devices.Device`). lookahead: choose each split side as the core does, by bounding both
    halves along every side (inputs up to 16). keep_open: a search stopped by its time or node limit also returns
    ``open``, its undecided boxes as (problem, lo, hi, None, None), most undecided first, as the core does.

    Optimised slopes, as in the core: a box whose gap the gain of the last optimisation on its path could close
    (gate 1; every box without one) gets ``opt_iters`` (None: 20) steps of alpha-CROWN on its rows
    (:mod:`~nncert.torch_backend.optimize`), warm-started from its parent's slopes; the split choice and the
    candidate vertices keep the fixed-slope coefficients. 0: fixed slopes only.

    Hybrid, as in the core: with every activation a ReLU or LeakyReLU, a box whose unstable units are at most
    ``relu_share`` of its root's (or at most ``relu_below``, e.g. when a search resumes from sub-boxes) is
    not split further on the device but handed to the core's ReLU-split branch and bound (split multipliers,
    ``opt_iters`` steps per node; on the CPU) once the device's queue is empty. Input halving alone removes
    the last few unstable units slowly (ACAS Xu 4_2 / property 2: a timeout after 30 s without, against 3 s
    in the core)."""
    import torch

    ctx = Search(net, problems, device, time_limit, max_nodes, batch, dtype)
    deadline, dev, dtype, max_nodes = ctx.deadline, ctx.dev, ctx.dtype, ctx.max_nodes
    P, K, Ay, Ax, Cc, Valid, acts, module = ctx.P, ctx.K, ctx.Ay, ctx.Ax, ctx.Cc, ctx.Valid, ctx.acts, ctx.module
    stats, leaves, finish = ctx.stats, ctx.leaves, ctx.finish
    stats["relu_nodes"] = 0
    t = lambda v: torch.as_tensor(np.array(v, dtype=np.float64), dtype=dtype, device=dev)  # noqa: E731
    W0 = torch.stack([t(p[5]) if len(p) > 5 else q[1] - q[0] for p, q in zip(problems, P)]) if P else None
    hybrid = relu_share > 0 and bool(acts) and all(a.kind in ("relu", "leaky_relu") for a in acts)
    # boxes handed to the core's ReLU splitting: lo, hi, problem, score
    h_lo, h_hi, h_pr, h_sc = [], [], [], []

    def stop(outcome: str, *unsearched: Any) -> dict[str, Any]:
        """A time or node limit: with keep_open, the queue (and the boxes taken from it but not split:
        ``unsearched`` = (lo, hi, problem)) go back to the caller, lowest score first."""
        if not keep_open:
            return finish(outcome)
        lo, hi, pr, sc = (torch.cat([q] + h) for q, h in zip((q_lo, q_hi, q_pr, q_sc), (h_lo, h_hi, h_pr, h_sc)))
        if unsearched:
            u_lo, u_hi, u_pr = unsearched
            lo, hi, pr = torch.cat([u_lo, lo]), torch.cat([u_hi, hi]), torch.cat([u_pr, pr])
            sc = torch.cat([torch.full((u_lo.shape[0],), -float("inf"), dtype=dtype, device=dev), sc])
        order = torch.argsort(sc, stable=True).tolist()
        lo64, hi64, pr64 = (v.cpu().numpy() for v in (lo.double(), hi.double(), pr))
        return finish(outcome, open=[(int(pr64[k]), lo64[k].copy(), hi64[k].copy(), None, None) for k in order]
                      + extra_open)

    extra_open: list[tuple] = []
    thr = torch.zeros(len(P), dtype=torch.long, device=dev)  # per problem: hand off at or below this many units

    def relu_search() -> dict[str, Any] | None:
        """The handed-off boxes searched by the core with ReLU splits; the final result if that ends the search."""
        from .. import _core

        lo, hi, pr = torch.cat(h_lo), torch.cat(h_hi), torch.cat(h_pr).tolist()
        h_lo.clear(), h_hi.clear(), h_pr.clear(), h_sc.clear()
        lo64, hi64 = lo.double().cpu().numpy(), hi.double().cpu().numpy()
        w0 = W0.double().cpu().numpy()
        sub = [(lo64[k], hi64[k]) + tuple(np.ascontiguousarray(problems[i][j], dtype=np.float64) for j in (2, 3, 4))
               + (w0[i],) for k, i in enumerate(pr)]
        r = _core.branch_and_bound(net._core, sub, mode="input", time_limit=max(0.0, deadline - time.monotonic()),
                                   max_nodes=max(1, max_nodes - stats["nodes"]), margin=margin, min_width=min_width,
                                   max_leaves=max(1, max_leaves - len(leaves)), opt_iters=opt_iters,
                                   lookahead=lookahead, keep_open=keep_open, relu_below=int(thr[pr].max()))
        s = r["stats"]
        for key in ("nodes", "pruned", "infeasible", "leaves"):
            stats[key] += s[key]
        stats["relu_nodes"] += s["nodes"]
        stats["max_queue"] = max(stats["max_queue"], s["max_queue"])
        leaves.extend((pr[leaf[0]],) + tuple(leaf[1:]) for leaf in r["leaves"])
        if r["outcome"] == "candidate":
            return finish("candidate", x=np.asarray(r["x"], dtype=np.float64), problem=pr[r["problem"]])
        if r["outcome"] in ("timeout", "node_limit"):
            extra_open.extend((pr[o[0]],) + tuple(o[1:]) for o in r.get("open", []))
            return stop(r["outcome"])
        return None

    with torch.no_grad():
        widths: list[int] = []
        q_pri = torch.zeros((len(P), 0), dtype=dtype, device=dev)  # each box's pre-activation bounds (flat)
        if P:
            root = propagate(net, torch.stack([p[0] for p in P]), torch.stack([p[1] for p in P]))
            widths, q_pri = [l.shape[1] for l, _ in root.pre], flat(root.pre, root.lo)
            stats["stable"], stats["unstable"] = stability(acts, root.pre)
            if hybrid:
                thr = (relu_share * unstable_counts(acts, root.pre).double()).long() if relu_below is None \
                    else torch.full((len(P),), int(relu_below), dtype=torch.long, device=dev)
                stats["relu_below"] = int(thr[0])
        # the queue: boxes, root problem, score (lowest first), depth
        q_lo = torch.stack([p[0] for p in P]) if P else torch.zeros((0, net.input_dim), dtype=dtype, device=dev)
        q_hi = torch.stack([p[1] for p in P]) if P else q_lo.clone()
        q_pr = torch.arange(len(P), device=dev)
        q_sc = torch.full((len(P),), -float("inf"), dtype=dtype, device=dev)
        q_dp = torch.zeros(len(P), dtype=torch.long, device=dev)
        q_sl = torch.zeros(len(P), dtype=torch.long, device=dev)  # lookahead slices in a row
        # optimised slopes: the gain of the last optimisation on the path (NaN: none yet) and its slopes (flat)
        iters = OPT_ITERS if opt_iters is None else int(opt_iters)
        q_gain = torch.full((len(P),), float("nan"), dtype=dtype, device=dev)
        q_warm = torch.zeros((len(P), K * sum(widths) if iters else 0), dtype=dtype, device=dev)
        q_has = torch.zeros(len(P), dtype=torch.bool, device=dev)
        cols = lambda: (q_lo, q_hi, q_pr, q_sc, q_dp, q_sl, q_pri, q_gain, q_warm, q_has)  # noqa: E731
        look = lookahead and net.input_dim <= LOOKAHEAD_MAX_DIM
        while q_lo.shape[0] > 0 or h_lo:
            if time.monotonic() >= deadline:
                return stop("timeout")
            if stats["nodes"] >= max_nodes:
                return stop("node_limit")
            if q_lo.shape[0] == 0:
                done = relu_search()
                if done is not None:
                    return done
                continue
            take = ctx.plan(q_lo.shape[0])
            order = torch.argsort(q_sc, stable=True)
            sel, rest = order[:take], order[take:]
            _, _, _, _, _, _, _, b_gain, b_warm, b_has = (v[sel] for v in cols())
            b_lo, b_hi, b_pr, b_dp, b_sl, b_pri = (v[sel] for v in (q_lo, q_hi, q_pr, q_dp, q_sl, q_pri))
            q_lo, q_hi, q_pr, q_sc, q_dp, q_sl, q_pri, q_gain, q_warm, q_has = (v[rest] for v in cols())
            stats["nodes"] += take
            stats["max_depth"] = max(stats["max_depth"], int(b_dp.max()))
            kids = None
            # all root problems in one padded batch: rows a = 0, c = +inf never prune and are always met
            a_y, a_x, c, valid = Ay[b_pr], Ax[b_pr], Cc[b_pr], Valid[b_pr]
            prop = propagate(net, b_lo, b_hi, prior=unflat(b_pri, widths))
            lb, lam = objective(prop, a_y, a_x)
            if iters:  # optimised slopes on the boxes whose gap the last gain on their path could close
                gap0 = (c + margin - lb).min(1).values
                go = ~prop.infeasible & ~((lb - c) > margin).any(1) & (torch.isnan(b_gain) | (gap0 <= OPT_GATE * b_gain))
                g = go.nonzero()[:, 0]
                if g.numel():
                    lb_o, _, params, _ = optimise(select(prop, g), acts, a_y[g], a_x[g], (c + margin)[g],
                                            _unflat_warm(b_warm[g], widths, K), b_has[g], iters)
                    lb[g] = torch.maximum(lb[g], lb_o)  # (the split choice keeps the fixed-slope coefficients)
                    b_gain[g] = gap0[g] - (c + margin - lb)[g].min(1).values
                    b_warm[g] = _flat_warm(params, widths, K, g.numel(), lb)
                    b_has[g] = True
            score, best = (lb - c).max(1)
            safe = prop.infeasible | (score > margin)
            stats["pruned"] += int(safe.sum())
            stats["infeasible"] += int(prop.infeasible.sum())
            o = (~safe).nonzero()[:, 0]
            if o.numel():
                lo_o, hi_o = b_lo[o], b_hi[o]
                found = first_candidate(module, lo_o, hi_o, lam[o], a_y[o], a_x[o], c[o], valid[o])
                if found is not None:
                    return finish("candidate", x=found[1], problem=int(b_pr[o[found[0]]]))
                if hybrid:  # few unstable units left: ReLU splitting in the core decides these boxes
                    un = unstable_counts(acts, [(l[o], u[o]) for l, u in prop.pre])
                    hand = (un > 0) & (un <= thr[b_pr[o]])
                    if bool(hand.any()):
                        k = o[hand]
                        h_lo.append(b_lo[k]), h_hi.append(b_hi[k]), h_pr.append(b_pr[k]), h_sc.append(score[k])
                        o, lo_o, hi_o = o[~hand], lo_o[~hand], hi_o[~hand]
                is_leaf = (hi_o - lo_o).max(1).values < min_width
                for k in is_leaf.nonzero()[:, 0].tolist():
                    j = int(o[k])
                    pre = [(l[j].cpu().numpy().astype(np.float64), u[j].cpu().numpy().astype(np.float64))
                           for l, u in prop.pre]
                    leaves.append((int(b_pr[j]), b_lo[j].cpu().numpy().astype(np.float64),
                                   b_hi[j].cpu().numpy().astype(np.float64), [], pre))
                    stats["leaves"] += 1
                    if len(leaves) >= max_leaves:
                        return finish("node_limit")
                sp = o[~is_leaf]
                if sp.numel() and stats["nodes"] >= max_nodes:  # undecided boxes left: never "holds"
                    return stop("node_limit", b_lo[sp], b_hi[sp], b_pr[sp])  # (no children past the limit)
                if sp.numel():
                    lo_s, hi_s = b_lo[sp], b_hi[sp]
                    lam_best = lam[sp, best[sp]]
                    dim = _split_dims(lo_s, hi_s, lam_best, W0[b_pr[sp]], min_width)
                    kid_sl = torch.zeros_like(b_sl[sp])
                    # the children start from this box's bounds (valid on both halves), or from their own where
                    # the lookahead bounded them; halves it proved are not searched again
                    pri = flat(prop.pre, b_lo)[sp]
                    kid_pri, kid_done = torch.stack([pri, pri], 1), torch.zeros((sp.numel(), 2), dtype=torch.bool,
                                                                                  device=dev)
                    if look and time.monotonic() >= deadline:  # the lookahead costs 2n bound passes a box
                        return stop("timeout", lo_s, hi_s, b_pr[sp])
                    if look:
                        dim, kid_sl, kid_done, kid_pri = _lookahead(net, lo_s, hi_s, a_y[sp], a_x[sp], c[sp],
                                                                    score[sp], dim, b_sl[sp], W0[b_pr[sp]], margin,
                                                                    min_width, pri, widths)
                    mid = 0.5 * (lo_s.gather(1, dim[:, None]) + hi_s.gather(1, dim[:, None]))
                    hi1, lo2 = hi_s.clone(), lo_s.clone()
                    hi1.scatter_(1, dim[:, None], mid)
                    lo2.scatter_(1, dim[:, None], mid)
                    keep = ~torch.cat([kid_done[:, 0], kid_done[:, 1]])
                    n_done = int((~keep).sum())
                    stats["nodes"] += n_done  # bounded (by the lookahead) and proved: searched nodes, as in the core
                    stats["pruned"] += n_done
                    kids = tuple(v[keep] for v in (
                        torch.cat([lo_s, lo2]), torch.cat([hi1, hi_s]), b_pr[sp].repeat(2), score[sp].repeat(2),
                        b_dp[sp].repeat(2) + 1, kid_sl.repeat(2), torch.cat([kid_pri[:, 0], kid_pri[:, 1]]),
                        b_gain[sp].repeat(2), b_warm[sp].repeat(2, 1), b_has[sp].repeat(2)))
            ctx.measured(take)
            if kids is not None:
                q_lo, q_hi, q_pr, q_sc, q_dp, q_sl, q_pri, q_gain, q_warm, q_has = (
                    torch.cat([q, k]) for q, k in zip(cols(), kids))
                if ctx.queue_full(cols()):
                    return stop("node_limit")
            stats["max_queue"] = max(stats["max_queue"], q_lo.shape[0])
    return finish("undecided" if leaves else "holds")
