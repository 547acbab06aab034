"""Branch and bound on a torch device over input boxes or ReLU phases, many nodes per batch.

The same search as ``rust/core/src/bounds/bab.rs`` (best-first on the largest bound margin; a node is pruned when
some row's lower bound exceeds its ``c`` by more than ``margin``; the box centre and the bound-minimising vertices
are tried as candidates; each node starts from its parent's bounds; optimised bounds (alpha/beta-CROWN) gated as
in the core; input boxes split on the side the lookahead picks, ReLU nodes on the unit the BaBSR-style score picks;
the hybrid switch from input boxes to ReLU phases), but the lowest-scored nodes of the queue (all root problems
together, their conjunctions padded to one row count) are bounded together by
:func:`~nncert.torch_backend.propagate.propagate`: batches grow from 8 nodes to ``batch`` and are sized from the
measured time per node so that the deadline holds. Bounds are computed in float64 (``dtype`` is for experiments
only: float32 bounds are not sound enough to prove properties). Returns the same dict as
``_core.branch_and_bound`` so the verify engine treats both alike (leaves go to Z3 on the CPU).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ShapeError
from .compiled import TAct, TResidual, compiled
from .network_ops import torch_module
from .optimize import alpha_floor, optimise, output_coefficients, select
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
    """A device search's set-up and bookkeeping: its limits, the padded problem tensors, the network on the device,
    batch sizing, the queue's memory budget, the statistics and leaves, and the result dict."""

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
        self.P, self.K, self.Ay, self.Ax, self.Cc, self.Valid, self.W0 = problem_tensors(net, problems, self.dev,
                                                                                     self.dtype)
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

    def shrink(self, taken: int) -> bool:
        """After the device ran out of memory on a batch of ``taken`` nodes: later batches take at most half as
        many (``stats["memory_retries"]`` counts these). False when a single node did not fit."""
        if taken <= 1:
            return False
        self.batch = self._cap = taken // 2
        self.stats["memory_retries"] = self.stats.get("memory_retries", 0) + 1
        return True

    def measured(self, taken: int) -> None:
        """Records the time per node of the batch just done."""
        dt = (time.monotonic() - self._tb) / taken
        self._per = dt if self._per == 0 else 0.5 * (self._per + dt)

    def finish(self, outcome: str, **extra: Any) -> dict[str, Any]:
        self.stats["seconds"] = time.monotonic() - self.t0
        return {"outcome": outcome, "leaves": self.leaves, "stats": self.stats, **extra}


def problem_tensors(net: Any, problems: list[tuple], dev: Any, dtype: Any) -> tuple:
    """The problems as tensors: P (per problem (lo, hi, a_y, a_x, c)), the padded row count K, Ay (N, K, out),
    Ax (N, K, in), Cc (N, K), Valid (N, K) (padding rows: a = 0, c = +inf, never prune, always met) and W0 (N, in),
    the side widths of each problem's root box."""
    import torch

    t = lambda v: torch.as_tensor(np.array(v, dtype=np.float64), dtype=dtype, device=dev)  # noqa: E731
    P = [tuple(t(v) for v in p[:5]) for p in problems]
    # the side widths input splitting measures boxes against: the root's, or those given with a resumed problem
    W0 = torch.stack([t(p[5]) if len(p) > 5 else q[1] - q[0] for p, q in zip(problems, P)]) if P else None
    K = max((len(p[4]) for p in P), default=1)
    Ay = torch.zeros((len(P), K, net.output_dim), dtype=dtype, device=dev)
    Ax = torch.zeros((len(P), K, net.input_dim), dtype=dtype, device=dev)
    Cc = torch.full((len(P), K), float("inf"), dtype=dtype, device=dev)
    Valid = torch.zeros((len(P), K), dtype=torch.bool, device=dev)
    for i, (_, _, a_y, a_x, c) in enumerate(P):
        k = len(c)
        Ay[i, :k], Ax[i, :k], Cc[i, :k], Valid[i, :k] = a_y, a_x, c, True
    return P, K, Ay, Ax, Cc, Valid, W0


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


def _relative(widths: Any, w0: Any) -> tuple[Any, Any]:
    """Side widths relative to the root box's (0 where the root's side is 0), and the relatively widest side."""
    import torch

    rel = torch.where(w0 > 0, widths / torch.where(w0 > 0, w0, torch.ones_like(w0)), torch.zeros_like(widths))
    return rel, _last_argmax(rel)


def _split_dims(lo: Any, hi: Any, lam_best: Any, w0: Any, min_width: float) -> Any:
    import torch

    widths = hi - lo
    dim = _last_argmax(widths)
    s = torch.where(widths >= min_width, lam_best.abs() * widths, torch.zeros_like(widths))
    dim = torch.where(s.max(1).values > 0, s.argmax(1), dim)
    rel, widest = _relative(widths, w0)
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


def _layers(v: Any, sizes: list[int]) -> list:
    """A (B, sum sizes) queue column as its per-layer (B, size) slices."""
    out, k = [], 0
    for n in sizes:
        out.append(v[:, k:k + n])
        k += n
    return out


def unflat(v: Any, widths: list[int]) -> list:
    """The inverse of :func:`flat`: [(l, u)] per activation layer."""
    return [(s[:, :n], s[:, n:]) for s, n in zip(_layers(v, [2 * n for n in widths]), widths)]


def _flat_warm(params: list, widths: list[int], K: int, B: int, like: Any) -> Any:
    """Slopes per activation layer ((B, K, n) or None) as one (B, K sum n) tensor (a queue column)."""
    import torch
    return torch.cat([like.new_zeros((B, 0))] + [(like.new_zeros((B, K, n)) if q is None else q).reshape(B, K * n)
                                                 for q, n in zip(params, widths)], 1)


def _twice(v: Any) -> Any:
    """A batch column stacked on itself: the columns of both children of every node (first halves, then second)."""
    return v.repeat(2, *([1] * (v.dim() - 1)))


def _unflat_warm(v: Any, widths: list[int], K: int) -> list:
    """The inverse of :func:`_flat_warm`: (B, K, n) per activation layer."""
    return [s.reshape(-1, K, n) for s, n in zip(_layers(v, [K * n for n in widths]), widths)]


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
    rel, widest = _relative(widths, w0)
    far = rel.gather(1, widest[:, None])[:, 0] > 32 * rel.gather(1, out[:, None])[:, 0]
    out = torch.where(far, widest, out)
    rows = torch.arange(S, device=lo.device)
    return out, kid_slices, proved[rows, out], flat(q.pre, q.lo).reshape(S, n, 2, -1)[rows, out]


def branch_choice(acts: list, pre: list, vout: list, count: int, device: Any) -> tuple[Any, Any]:
    """The unit each of the ``count`` nodes branches on, as a flat unit index (S,), and whether it has one (S,): the largest
    ``max(-v, 0) * u (-l) / (u - l) * |1 - slope|`` over unstable ReLU/LeakyReLU units (v: the binding row's
    coefficient on the unit's output), ties to the widest ``u (-l) / (u - l)``, then to the first, as in the core."""
    import torch

    scores, widths = [], []
    for act, (l, u), v in zip(acts, pre, vout):
        unst = (l < 0) & (u > 0)
        if act.kind in ("relu", "leaky_relu"):
            slope = act.slope if act.kind == "leaky_relu" else 0.0
            w = torch.where(unst, u * (-l) / torch.where(unst, u - l, torch.ones_like(l)), torch.zeros_like(l))
            s = (-v).clamp(min=0) * w * abs(1.0 - slope)
        else:
            unst = torch.zeros_like(unst)
            w = s = torch.zeros_like(l)
        ninf = torch.full_like(l, -float("inf"))
        scores.append(torch.where(unst, s, ninf))
        widths.append(torch.where(unst, w, ninf))
    if not scores:  # no activations: nothing to branch on
        return (torch.zeros(count, dtype=torch.long, device=device),
                torch.zeros(count, dtype=torch.bool, device=device))
    s, w = torch.cat(scores, 1), torch.cat(widths, 1)
    top = s.max(1, keepdim=True).values
    tie = (s == top) & torch.isfinite(s)
    w2 = torch.where(tie, w, torch.full_like(w, -float("inf")))
    pick = (tie & (w2 == w2.max(1, keepdim=True).values)).to(torch.int8).argmax(1)
    return pick, torch.isfinite(top[:, 0])


def bab(net: Any, problems: list[tuple], device: Any, time_limit: float = 60.0, max_nodes: int | None = None,
        margin: float = 1e-8, batch: int | None = None, min_width: float = 1e-7, max_leaves: int = 10000,
        dtype: Any = None, lookahead: bool = True, keep_open: bool = False, relu_share: float = 0.2,
        relu_below: int | None = None, opt_iters: int | None = None, mode: str = "input") -> dict[str, Any]:
    """Branch and bound over ``problems`` (a list of (lo, hi, a_y, a_x, c): is some x in the box with
    a_y f(x) + a_x x <= c?, optionally with a sixth entry: the root box's side widths, against which split
    sides are measured when a search resumes from sub-boxes) on the torch ``device`` (a
    :class:`~nncert.devices.Device`), splitting input boxes (``mode="input"``) or ReLU phases (``"relu"``).
    lookahead: choose each input split side as the core does, by bounding both halves along every side (inputs up
    to 16). keep_open: a search stopped by its time or node limit also returns ``open``, its undecided boxes as
    (problem, lo, hi, None, None), most undecided first, as the core does.

    Optimised bounds, as in the core: ``opt_iters`` (None: 20) steps of alpha-CROWN (and beta-CROWN where a node
    has ReLU splits) on a node's rows (:mod:`~nncert.torch_backend.optimize`), warm-started from its parent's;
    input splitting optimises a box only when its gap is within the gain of the last optimisation on its path
    (gate 1; every box without one) and keeps the fixed-slope coefficients for its split choice and vertices;
    nodes with ReLU splits are optimised always and use the optimised coefficients. 0: fixed slopes only.

    ReLU splitting branches on the unstable unit whose chord costs the binding row's bound most (BaBSR-style); a
    node without unstable units is a leaf for Z3. Hybrid, as in the core: with every activation a ReLU or
    LeakyReLU, an input box whose unstable units are at most ``relu_share`` of its root's (or at most
    ``relu_below``, e.g. when a search resumes from sub-boxes) is split on ReLU phases from then on, and once all
    its units are fixed its box is halved again (keeping the phases). Input halving alone removes the last few
    unstable units slowly (ACAS Xu 4_2 / property 2: a timeout after 30 s without, against 3 s in the core)."""
    import torch

    if mode not in ("input", "relu"):
        raise InvalidInputError(f"mode must be 'input' or 'relu', got {mode!r}")
    ctx = Search(net, problems, device, time_limit, max_nodes, batch, dtype)
    deadline, dev, dtype, max_nodes = ctx.deadline, ctx.dev, ctx.dtype, ctx.max_nodes
    P, K, Ay, Ax, Cc, Valid, W0 = ctx.P, ctx.K, ctx.Ay, ctx.Ax, ctx.Cc, ctx.Valid, ctx.W0
    acts, module, stats, leaves, finish = ctx.acts, ctx.module, ctx.stats, ctx.leaves, ctx.finish
    stats["relu_nodes"] = 0
    relu_like = [a.kind in ("relu", "leaky_relu") for a in acts]
    alpha_layers = [alpha_floor(a) is not None for a in acts]
    hybrid = mode == "input" and relu_share > 0 and bool(acts) and all(relu_like)
    iters = OPT_ITERS if opt_iters is None else int(opt_iters)
    gate = OPT_GATE if mode == "input" else float("inf")

    def stop(outcome: str, *unsearched: Any) -> dict[str, Any]:
        """A time or node limit: with keep_open, the queue (and the boxes taken from it but not split:
        ``unsearched`` = (lo, hi, problem)) go back to the caller, lowest score first."""
        if not keep_open:
            return finish(outcome)
        lo, hi, pr, sc = q_lo, q_hi, q_pr, q_sc
        if unsearched:
            u_lo, u_hi, u_pr = unsearched
            lo, hi, pr = torch.cat([u_lo, lo]), torch.cat([u_hi, hi]), torch.cat([u_pr, pr])
            sc = torch.cat([torch.full((u_lo.shape[0],), -float("inf"), dtype=dtype, device=dev), sc])
        order = torch.argsort(sc, stable=True).tolist()
        lo64, hi64, pr64 = (v.cpu().numpy() for v in (lo.double(), hi.double(), pr))
        return finish(outcome, open=[(int(pr64[k]), lo64[k].copy(), hi64[k].copy(), None, None) for k in order])

    def leaf(j: int, prop: Any, b_pr: Any, b_lo: Any, b_hi: Any, b_sp: Any) -> None:
        sp = b_sp[j].cpu().numpy()
        units = np.flatnonzero(sp)
        lay = np.searchsorted(offsets, units, side="right") - 1
        leaves.append((int(b_pr[j]), b_lo[j].cpu().numpy().astype(np.float64), b_hi[j].cpu().numpy().astype(np.float64),
                       [(int(a), int(f - offsets[a]), bool(sp[f] > 0)) for a, f in zip(lay, units)],
                       [(l[j].cpu().numpy().astype(np.float64), u[j].cpu().numpy().astype(np.float64))
                        for l, u in prop.pre]))
        stats["leaves"] += 1

    with torch.no_grad():
        widths: list[int] = []
        q_pri = torch.zeros((len(P), 0), dtype=dtype, device=dev)  # each box's pre-activation bounds (flat)
        thr = torch.zeros(len(P), dtype=torch.long, device=dev)  # per problem: ReLU-split at or below this many units
        if P:
            root = propagate(net, torch.stack([p[0] for p in P]), torch.stack([p[1] for p in P]))
            widths, q_pri = [l.shape[1] for l, _ in root.pre], flat(root.pre, root.lo)
            stats["stable"], stats["unstable"] = stability(acts, root.pre)
            if hybrid:
                thr = (relu_share * unstable_counts(acts, root.pre).double()).long() if relu_below is None \
                    else torch.full((len(P),), int(relu_below), dtype=torch.long, device=dev)
                stats["relu_below"] = int(thr[0])
        U = sum(widths)
        offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
        # the queue: boxes, root problem, score (lowest first), depth, lookahead slices in a row, bounds (flat), the
        # gain of the last optimisation on the path (NaN: none yet), its slopes and multipliers (flat; has: any
        # yet) and the ReLU phases (+1 active, -1 inactive, 0 free; one column per unit)
        q_lo = torch.stack([p[0] for p in P]) if P else torch.zeros((0, net.input_dim), dtype=dtype, device=dev)
        q_hi = torch.stack([p[1] for p in P]) if P else q_lo.clone()
        q_pr = torch.arange(len(P), device=dev)
        q_sc = torch.full((len(P),), -float("inf"), dtype=dtype, device=dev)
        q_dp = torch.zeros(len(P), dtype=torch.long, device=dev)
        q_sl = torch.zeros(len(P), dtype=torch.long, device=dev)
        q_gain = torch.full((len(P),), float("nan"), dtype=dtype, device=dev)
        q_wa = torch.zeros((len(P), K * U if iters else 0), dtype=dtype, device=dev)
        q_wb = torch.zeros_like(q_wa)
        q_has = torch.zeros(len(P), dtype=torch.bool, device=dev)
        q_sp = torch.zeros((len(P), U), dtype=torch.int8, device=dev)
        cols = lambda: (q_lo, q_hi, q_pr, q_sc, q_dp, q_sl, q_pri, q_gain, q_wa, q_wb, q_has, q_sp)  # noqa: E731
        look = lookahead and net.input_dim <= LOOKAHEAD_MAX_DIM

        def run_batch(take: int, b_lo: Any, b_hi: Any, b_pr: Any, _b_sc: Any, b_dp: Any, b_sl: Any, b_pri: Any,
                      b_gain: Any, b_wa: Any, b_wb: Any, b_has: Any, b_sp: Any) -> tuple[dict[str, Any] | None, list]:
            """Bounds, prunes and splits one batch of nodes taken from the queue. Returns the search's result where
            the batch ends it (else None) and the children to queue. Its tensors die with it, which is what lets
            the loop retry the batch in halves when the device runs out of memory."""
            stats["nodes"] += take
            stats["max_depth"] = max(stats["max_depth"], int(b_dp.max()))
            # all root problems in one padded batch: rows a = 0, c = +inf never prune and are always met
            a_y, a_x, c, valid = Ay[b_pr], Ax[b_pr], Cc[b_pr], Valid[b_pr]
            with_splits = (b_sp != 0).any(1)
            node_relu = with_splits | (mode == "relu")
            stats["relu_nodes"] += int(node_relu.sum())
            splits = _layers(b_sp, widths) if bool(with_splits.any()) else None
            prop = propagate(net, b_lo, b_hi, prior=unflat(b_pri, widths), splits=splits)
            lb, lam = objective(prop, a_y, a_x)
            if iters:  # optimised bounds where the last gain on the path could close the gap (always with splits)
                gap0 = (c + margin - lb).min(1).values
                go = (~prop.infeasible & ~((lb - c) > margin).any(1)
                      & (node_relu | torch.isnan(b_gain) | (gap0 <= gate * b_gain)))
                g = go.nonzero()[:, 0]
                if g.numel():
                    lb_o, lam_o, alphas, betas = optimise(
                        select(prop, g), acts, a_y[g], a_x[g], (c + margin)[g], _unflat_warm(b_wa[g], widths, K),
                        b_has[g], iters, splits=None if splits is None else [s[g] for s in splits],
                        warm_beta=_unflat_warm(b_wb[g], widths, K))
                    better = lb_o > lb[g]
                    lb[g] = torch.where(better, lb_o, lb[g])
                    # (copies: a batch retried after running out of memory must find its columns as they were)
                    b_gain, b_wa, b_wb, b_has = (v.clone() for v in (b_gain, b_wa, b_wb, b_has))
                    # input splitting keeps the fixed-slope coefficients for its split choice and vertices (the
                    # optimised ones took more nodes on ACAS Xu in the core)
                    lam[g] = torch.where((better & node_relu[g][:, None])[..., None], lam_o, lam[g])
                    b_gain[g] = gap0[g] - (c + margin - lb)[g].min(1).values
                    b_wa[g] = _flat_warm(alphas, widths, K, g.numel(), lb)
                    b_wb[g] = _flat_warm(betas, widths, K, g.numel(), lb)
                    b_has[g] = True
            score, best = (lb - c).max(1)
            safe = prop.infeasible | (score > margin)
            stats["pruned"] += int(safe.sum())
            stats["infeasible"] += int(prop.infeasible.sum())
            o = (~safe).nonzero()[:, 0]
            kids: list[tuple] = []
            if o.numel():
                found = first_candidate(module, b_lo[o], b_hi[o], lam[o], a_y[o], a_x[o], c[o], valid[o])
                if found is not None:
                    return (finish("candidate", x=found[1], problem=int(b_pr[o[found[0]]])), [])
                pre_flat = flat(prop.pre, b_lo)  # the children's starting bounds
                if mode == "relu":
                    to_relu = torch.ones(o.numel(), dtype=torch.bool, device=dev)
                else:
                    un = unstable_counts(acts, [(l[o], u[o]) for l, u in prop.pre]) if widths else \
                        torch.zeros(o.numel(), dtype=torch.long, device=dev)
                    to_relu = (un > 0) & (node_relu[o] | (hybrid & (un <= thr[b_pr[o]])))
                r_idx, i_idx = o[to_relu], o[~to_relu]
                if r_idx.numel():  # ReLU phases: the binding row's coefficients at the node's parameters pick the unit
                    S, rows = r_idx.numel(), best[r_idx]
                    al = be = [None] * len(widths)
                    if iters:
                        ar = torch.arange(S, device=dev)
                        al = [q[ar, rows][:, None] if ok else None
                              for q, ok in zip(_unflat_warm(b_wa[r_idx], widths, K), alpha_layers)]
                        be = [q[ar, rows][:, None] if ok else None
                              for q, ok in zip(_unflat_warm(b_wb[r_idx], widths, K), relu_like)]
                    vout = output_coefficients(select(prop, r_idx), a_y[r_idx, rows][:, None], al, be,
                                               _layers(b_sp[r_idx], widths), has=b_has[r_idx])
                    unit, has_unit = branch_choice(acts, [(l[r_idx], u[r_idx]) for l, u in prop.pre], vout, S, dev)
                    for k in (~has_unit).nonzero()[:, 0].tolist():
                        leaf(int(r_idx[k]), prop, b_pr, b_lo, b_hi, b_sp)
                        if len(leaves) >= max_leaves:
                            return (finish("node_limit"), [])
                    br, unit = r_idx[has_unit], unit[has_unit]
                    if br.numel():
                        sp_on, sp_off = b_sp[br].clone(), b_sp[br].clone()
                        ar = torch.arange(br.numel(), device=dev)
                        sp_on[ar, unit], sp_off[ar, unit] = 1, -1
                        kids.append(tuple(_twice(v) for v in (
                            b_lo[br], b_hi[br], b_pr[br], score[br], b_dp[br] + 1, torch.zeros_like(b_sl[br]),
                            pre_flat[br], b_gain[br], b_wa[br], b_wb[br], b_has[br]))
                                    + (torch.cat([sp_on, sp_off]),))
                if i_idx.numel():  # input boxes
                    is_leaf = (b_hi[i_idx] - b_lo[i_idx]).max(1).values < min_width
                    for k in is_leaf.nonzero()[:, 0].tolist():
                        leaf(int(i_idx[k]), prop, b_pr, b_lo, b_hi, b_sp)
                        if len(leaves) >= max_leaves:
                            return (finish("node_limit"), [])
                    sp = i_idx[~is_leaf]
                    if sp.numel() and stats["nodes"] >= max_nodes:  # undecided boxes left: never "holds"
                        return (stop("node_limit", b_lo[sp], b_hi[sp], b_pr[sp]), [])  # (no children past the limit)
                    if sp.numel():
                        lo_s, hi_s = b_lo[sp], b_hi[sp]
                        dim = _split_dims(lo_s, hi_s, lam[sp, best[sp]], W0[b_pr[sp]], min_width)
                        kid_sl = torch.zeros_like(b_sl[sp])
                        # the children start from this box's bounds (valid on both halves), or from their own
                        # where the lookahead bounded them; halves it proved are not searched again
                        pri = pre_flat[sp]
                        kid_pri = torch.stack([pri, pri], 1)
                        kid_done = torch.zeros((sp.numel(), 2), dtype=torch.bool, device=dev)
                        if look and time.monotonic() >= deadline:  # the lookahead costs 2n bound passes a box
                            return (stop("timeout", lo_s, hi_s, b_pr[sp]), [])
                        if look:
                            dim, kid_sl, kid_done, kid_pri = _lookahead(net, lo_s, hi_s, a_y[sp], a_x[sp], c[sp],
                                                                        score[sp], dim, b_sl[sp], W0[b_pr[sp]],
                                                                        margin, min_width, pri, widths)
                        mid = 0.5 * (lo_s.gather(1, dim[:, None]) + hi_s.gather(1, dim[:, None]))
                        hi1, lo2 = hi_s.clone(), lo_s.clone()
                        hi1.scatter_(1, dim[:, None], mid)
                        lo2.scatter_(1, dim[:, None], mid)
                        keep = ~torch.cat([kid_done[:, 0], kid_done[:, 1]])
                        n_done = int((~keep).sum())
                        stats["nodes"] += n_done  # bounded (by the lookahead) and proved: searched, as in the core
                        stats["pruned"] += n_done
                        kids.append(tuple(v[keep] for v in (
                            torch.cat([lo_s, lo2]), torch.cat([hi1, hi_s]), _twice(b_pr[sp]), _twice(score[sp]),
                            _twice(b_dp[sp]) + 1, _twice(kid_sl), torch.cat([kid_pri[:, 0], kid_pri[:, 1]]),
                            _twice(b_gain[sp]), _twice(b_wa[sp]), _twice(b_wb[sp]), _twice(b_has[sp]),
                            _twice(b_sp[sp]))))
            return None, kids

        while q_lo.shape[0] > 0:
            if time.monotonic() >= deadline:
                return stop("timeout")
            if stats["nodes"] >= max_nodes:
                return stop("node_limit")
            take = ctx.plan(q_lo.shape[0])
            order = torch.argsort(q_sc, stable=True)
            sel, rest = order[:take], order[take:]
            batch = tuple(v[sel] for v in cols())
            q_lo, q_hi, q_pr, q_sc, q_dp, q_sl, q_pri, q_gain, q_wa, q_wb, q_has, q_sp = (v[rest] for v in cols())
            saved = dict(stats), len(leaves)
            try:
                done, kids = run_batch(take, *batch)
            except torch.cuda.OutOfMemoryError:
                # the batch goes back to the queue as it was, and later batches take half as many nodes (a single
                # node too many: raise)
                stats.clear()
                stats.update(saved[0])
                del leaves[saved[1]:]
                q_lo, q_hi, q_pr, q_sc, q_dp, q_sl, q_pri, q_gain, q_wa, q_wb, q_has, q_sp = (
                    torch.cat([b, q]) for b, q in zip(batch, cols()))
                batch = None
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                if not ctx.shrink(take):
                    raise
                continue
            if done is not None:
                return done
            ctx.measured(take)
            if kids:
                q_lo, q_hi, q_pr, q_sc, q_dp, q_sl, q_pri, q_gain, q_wa, q_wb, q_has, q_sp = (
                    torch.cat([q] + [k[i] for k in kids]) for i, q in enumerate(cols()))
                if ctx.queue_full(cols()):
                    return stop("node_limit")
            stats["max_queue"] = max(stats["max_queue"], q_lo.shape[0])
    return finish("undecided" if leaves else "holds")
