"""Input-splitting branch and bound on a torch device, many boxes per batch.

The same search as ``rust/core/src/bounds/bab.rs`` in ``SplitMode::Input`` (best-first on the largest
bound margin, node pruned when some row's lower bound exceeds its ``c`` by more than ``margin``, box
centre and bound-minimising vertices tried as candidates, split on the input side where the binding row's
linear bound is most sensitive), but the lowest-scored nodes of the queue (all root problems together, their
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


# the core's lookahead constants (rust/core/src/bounds/bab.rs): only up to this many inputs, and at most this
# many splits in a row that leave the worse half no better than its parent
LOOKAHEAD_MAX_DIM, MAX_SLICES = 16, 2


def _lookahead(net: Any, lo: Any, hi: Any, a_y: Any, a_x: Any, c: Any, node_m: Any, dim: Any, slices: Any,
               w0: Any, margin: float, min_width: float) -> tuple[Any, Any]:
    """The side to split for each of the S boxes (lo, hi), as the core picks it: bound both halves along every
    side (one batch of 2 n S boxes) and keep the side whose halves leave the least total gap (a proved half
    counts as no gap); the heuristic's ``dim`` wins ties. Returns (dims, the children's slice counters)."""
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
    q = propagate(net, c_lo.reshape(-1, n), c_hi.reshape(-1, n))
    lb, _ = objective(q, rep(a_y), rep(a_x))
    m = (lb - rep(c) - margin).max(1).values  # -gap of each half
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
    return torch.where(far, widest, out), kid_slices


def bab(net: Any, problems: list[tuple], device: Any, time_limit: float = 60.0, max_nodes: int | None = None,
        margin: float = 1e-8, batch: int | None = None, min_width: float = 1e-7, max_leaves: int = 10000,
        dtype: Any = None, lookahead: bool = True, keep_open: bool = False) -> dict[str, Any]:
    """Branch and bound over ``problems`` (a list of (lo, hi, a_y, a_x, c): is some x in the box with
    a_y f(x) + a_x x <= c?, optionally with a sixth entry: the root box's side widths, against which split
    sides are measured when a search resumes from sub-boxes) on the torch ``device`` (a
    :class:`~nncert.devices.Device`). lookahead: choose each split side as the core does, by bounding both
    halves along every side (inputs up to 16). keep_open: a search stopped by its time or node limit also returns
    ``open``, its undecided boxes as (problem, lo, hi, None, None), most undecided first, as the core does."""
    import torch

    t0 = time.monotonic()
    deadline = t0 + max(0.0, float(time_limit))
    _check(net, problems)
    dev = device.torch()
    dtype = dtype or torch.float64
    batch = batch or (2048 if dev.type == "cuda" else 64)
    max_nodes = max_nodes if max_nodes is not None else 1 << 62
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
    W0 = torch.stack([t(p[5]) if len(p) > 5 else q[1] - q[0] for p, q in zip(problems, P)]) if P else None
    acts = _acts(compiled(net, dev, dtype), [])
    module = torch_module(net, device, dtype)
    stats: dict[str, Any] = {"nodes": 0, "pruned": 0, "infeasible": 0, "leaves": 0, "max_depth": 0, "max_queue": 0,
                             "stable": 0, "unstable": 0, "seconds": 0.0}
    leaves: list[tuple] = []

    def finish(outcome: str, **extra: Any) -> dict[str, Any]:
        stats["seconds"] = time.monotonic() - t0
        return {"outcome": outcome, "leaves": leaves, "stats": stats, **extra}

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

    with torch.no_grad():
        if P and time.monotonic() < deadline:
            root = propagate(net, P[0][0][None], P[0][1][None])
            stats["stable"], stats["unstable"] = stability(acts, root.pre)
        # the queue: boxes, root problem, score (lowest first), depth
        q_lo = torch.stack([p[0] for p in P]) if P else torch.zeros((0, net.input_dim), dtype=dtype, device=dev)
        q_hi = torch.stack([p[1] for p in P]) if P else q_lo.clone()
        q_pr = torch.arange(len(P), device=dev)
        q_sc = torch.full((len(P),), -float("inf"), dtype=dtype, device=dev)
        q_dp = torch.zeros(len(P), dtype=torch.long, device=dev)
        q_sl = torch.zeros(len(P), dtype=torch.long, device=dev)  # lookahead slices in a row
        look = lookahead and net.input_dim <= LOOKAHEAD_MAX_DIM
        per_box = 0.0  # seconds per box of the recent batches (sizes the next batch near the deadline)
        cap = max(len(P), 8)
        while q_lo.shape[0] > 0:
            if time.monotonic() >= deadline:
                return stop("timeout")
            if stats["nodes"] >= max_nodes:
                return stop("node_limit")
            # batches grow from a few boxes to ``batch``, and none is planned longer than a third of the time left
            take = min(batch, cap, q_lo.shape[0], max_nodes - stats["nodes"])
            if per_box > 0:
                take = max(1, min(take, int((deadline - time.monotonic()) / (3 * per_box))))
            cap *= 2
            tb = time.monotonic()
            order = torch.argsort(q_sc, stable=True)
            sel, rest = order[:take], order[take:]
            b_lo, b_hi, b_pr, b_dp, b_sl = q_lo[sel], q_hi[sel], q_pr[sel], q_dp[sel], q_sl[sel]
            q_lo, q_hi, q_pr, q_sc, q_dp, q_sl = (v[rest] for v in (q_lo, q_hi, q_pr, q_sc, q_dp, q_sl))
            stats["nodes"] += take
            stats["max_depth"] = max(stats["max_depth"], int(b_dp.max()))
            kids = None
            # all root problems in one padded batch: rows a = 0, c = +inf never prune and are always met
            a_y, a_x, c, valid = Ay[b_pr], Ax[b_pr], Cc[b_pr], Valid[b_pr]
            prop = propagate(net, b_lo, b_hi)
            lb, lam = objective(prop, a_y, a_x)
            score, best = (lb - c).max(1)
            safe = prop.infeasible | (score > margin)
            stats["pruned"] += int(safe.sum())
            stats["infeasible"] += int(prop.infeasible.sum())
            o = (~safe).nonzero()[:, 0]
            if o.numel():
                # cheap concrete candidates: the centre and, per row, the box vertex minimising the bound
                lo_o, hi_o = b_lo[o], b_hi[o]
                centre = 0.5 * (lo_o + hi_o)
                verts = torch.where(lam[o] >= 0, lo_o[:, None], hi_o[:, None])
                verts = torch.where(valid[o][..., None], verts, centre[:, None])
                cand = torch.cat([centre[:, None], verts], 1)  # (S, 1 + K, n)
                S, C, n = cand.shape
                y = module(cand.reshape(S * C, n)).reshape(S, C, -1)
                v = y @ a_y[o].transpose(1, 2) + cand @ a_x[o].transpose(1, 2) - c[o][:, None]  # (S, C, K)
                ok = (v <= 0).all(2)
                if bool(ok.any()):
                    s_i, c_i = ok.nonzero()[0].tolist()
                    return finish("candidate", x=cand[s_i, c_i].cpu().numpy().astype(np.float64),
                                  problem=int(b_pr[o[s_i]]))
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
                    if look and time.monotonic() >= deadline:  # the lookahead costs 2n bound passes a box
                        return stop("timeout", lo_s, hi_s, b_pr[sp])
                    if look:
                        dim, kid_sl = _lookahead(net, lo_s, hi_s, a_y[sp], a_x[sp], c[sp], score[sp], dim,
                                                 b_sl[sp], W0[b_pr[sp]], margin, min_width)
                    mid = 0.5 * (lo_s.gather(1, dim[:, None]) + hi_s.gather(1, dim[:, None]))
                    hi1, lo2 = hi_s.clone(), lo_s.clone()
                    hi1.scatter_(1, dim[:, None], mid)
                    lo2.scatter_(1, dim[:, None], mid)
                    kids = (torch.cat([lo_s, lo2]), torch.cat([hi1, hi_s]), b_pr[sp].repeat(2), score[sp].repeat(2),
                            b_dp[sp].repeat(2) + 1, kid_sl.repeat(2))
            dt = (time.monotonic() - tb) / take
            per_box = dt if per_box == 0 else 0.5 * (per_box + dt)
            if kids is not None:
                q_lo, q_hi, q_pr, q_sc, q_dp, q_sl = (torch.cat([q, k]) for q, k in
                                                      zip((q_lo, q_hi, q_pr, q_sc, q_dp, q_sl), kids))
            stats["max_queue"] = max(stats["max_queue"], q_lo.shape[0])
    return finish("undecided" if leaves else "holds")
