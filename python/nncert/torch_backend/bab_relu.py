"""ReLU-split branch and bound on a torch device, many sub-problems per batch.

The same search as ``rust/core/src/bounds/bab.rs`` in ``SplitMode::Relu``: a node is a root problem's input box
with some ReLU units fixed to a phase (active z >= 0 or inactive z <= 0); its bounds come from the parent's
pre-activation bounds with the splits clamped in, and its objective rows get optimised slopes and split
multipliers (alpha/beta-CROWN, :mod:`~nncert.torch_backend.optimize`, warm-started from the parent's) on every
node; it is pruned when a row's bound exceeds its ``c`` by more than ``margin``, yields a candidate when the
box centre or a vertex minimising an optimised row's linear bound violates the property, and otherwise branches
on the unstable unit whose chord costs the binding row's bound most (BaBSR-style: the negative part of its
output coefficient times the chord's intercept, ties to the widest unit). A node without unstable units is a
leaf for Z3 (on the CPU). The lowest-scored nodes of all root problems are processed together, batches sized
from the measured time per node so the deadline holds. Returns the same dict as ``_core.branch_and_bound``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .bab import OPT_ITERS, Search, _flat_warm, _unflat_warm, first_candidate, flat, stability, unflat
from .optimize import optimise, output_coefficients, select
from .propagate import objective, propagate


def _layers(v: Any, widths: list[int]) -> list:
    """A (B, sum n_k) per-unit tensor as its per-layer (B, n_k) slices."""
    out, k = [], 0
    for n in widths:
        out.append(v[:, k:k + n])
        k += n
    return out


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


def bab_relu(net: Any, problems: list[tuple], device: Any, time_limit: float = 60.0, max_nodes: int | None = None,
             margin: float = 1e-8, batch: int | None = None, max_leaves: int = 10000, dtype: Any = None,
             opt_iters: int | None = None) -> dict[str, Any]:
    """ReLU-split branch and bound over ``problems`` (a list of (lo, hi, a_y, a_x, c): is some x in the box with
    a_y f(x) + a_x x <= c?) on the torch ``device`` (a :class:`~nncert.devices.Device`), in float64.
    ``opt_iters``: optimisation steps per node (None: 20, the core's default; 0: fixed CROWN slopes)."""
    import torch

    ctx = Search(net, problems, device, time_limit, max_nodes, batch, dtype)
    dev, dtype, max_nodes = ctx.dev, ctx.dtype, ctx.max_nodes
    P, K, Ay, Ax, Cc, Valid, acts, module = ctx.P, ctx.K, ctx.Ay, ctx.Ax, ctx.Cc, ctx.Valid, ctx.acts, ctx.module
    stats, leaves, finish = ctx.stats, ctx.leaves, ctx.finish
    iters = OPT_ITERS if opt_iters is None else int(opt_iters)

    if not P:
        return finish("holds")
    with torch.no_grad():
        P_lo, P_hi = torch.stack([p[0] for p in P]), torch.stack([p[1] for p in P])
        root = propagate(net, P_lo, P_hi)
        stats["stable"], stats["unstable"] = stability(acts, root.pre)
        widths = [l.shape[1] for l, _ in root.pre]
        offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
        U, N = int(sum(widths)), len(P)
        # the queue: root problem, phases (+1 active, -1 inactive, 0 free) per unit, bounds (flat), score, depth,
        # and the optimised slopes and multipliers of the last optimisation (flat; has: any yet)
        q_pr = torch.arange(N, device=dev)
        q_sp = torch.zeros((N, U), dtype=torch.int8, device=dev)
        q_pri = flat(root.pre, P_lo)
        q_sc = torch.full((N,), -float("inf"), dtype=dtype, device=dev)
        q_dp = torch.zeros(N, dtype=torch.long, device=dev)
        q_wa = torch.zeros((N, K * U if iters else 0), dtype=dtype, device=dev)
        q_wb = torch.zeros_like(q_wa)
        q_has = torch.zeros(N, dtype=torch.bool, device=dev)
        cols = lambda: (q_pr, q_sp, q_pri, q_sc, q_dp, q_wa, q_wb, q_has)  # noqa: E731
        while q_pr.shape[0] > 0:
            if time.monotonic() >= ctx.deadline:
                return finish("timeout")
            if stats["nodes"] >= max_nodes:
                return finish("node_limit")
            take = ctx.plan(q_pr.shape[0])
            order = torch.argsort(q_sc, stable=True)
            sel, rest = order[:take], order[take:]
            b_pr, b_sp, b_pri, b_sc, b_dp, b_wa, b_wb, b_has = (v[sel] for v in cols())
            q_pr, q_sp, q_pri, q_sc, q_dp, q_wa, q_wb, q_has = (v[rest] for v in cols())
            stats["nodes"] += take
            stats["max_depth"] = max(stats["max_depth"], int(b_dp.max()))
            b_lo, b_hi = P_lo[b_pr], P_hi[b_pr]
            a_y, a_x, c, valid = Ay[b_pr], Ax[b_pr], Cc[b_pr], Valid[b_pr]
            splits = _layers(b_sp, widths)
            prop = propagate(net, b_lo, b_hi, prior=unflat(b_pri, widths), splits=splits)
            lb, lam = objective(prop, a_y, a_x)
            B = take
            alphas: list = [None] * len(widths)
            betas: list = [None] * len(widths)
            pos = torch.full((B,), -1, dtype=torch.long, device=dev)
            g = (~prop.infeasible & ~((lb - c) > margin).any(1)).nonzero()[:, 0]
            if iters and g.numel():
                sub = [s[g] for s in splits]
                lb_o, lam_o, alphas, betas = optimise(
                    select(prop, g), acts, a_y[g], a_x[g], (c + margin)[g], _unflat_warm(b_wa[g], widths, K),
                    b_has[g], iters, splits=sub, warm_beta=_unflat_warm(b_wb[g], widths, K))
                better = lb_o > lb[g]
                lb[g] = torch.where(better, lb_o, lb[g])
                lam[g] = torch.where(better[..., None], lam_o, lam[g])
                b_wa[g] = _flat_warm(alphas, widths, K, g.numel(), lb)
                b_wb[g] = _flat_warm(betas, widths, K, g.numel(), lb)
                b_has[g] = True
                pos[g] = torch.arange(g.numel(), device=dev)
            score, best = (lb - c).max(1)
            safe = prop.infeasible | (score > margin)
            stats["pruned"] += int(safe.sum())
            stats["infeasible"] += int(prop.infeasible.sum())
            o = (~safe).nonzero()[:, 0]
            kids = None
            if o.numel():
                found = first_candidate(module, b_lo[o], b_hi[o], lam[o], a_y[o], a_x[o], c[o], valid[o])
                if found is not None:
                    return finish("candidate", x=found[1], problem=int(b_pr[o[found[0]]]))
                # the binding row's coefficient on every unit's output, at that row's optimised parameters
                row = best[o]
                og = pos[o]
                pick_row = lambda qs: [None if q is None else q[og, row][:, None] for q in qs]  # noqa: E731
                vout = output_coefficients(select(prop, o), a_y[o, row][:, None], pick_row(alphas), pick_row(betas),
                                           [s[o] for s in splits])
                unit, has_unit = branch_choice(acts, [(l[o], u[o]) for l, u in prop.pre], vout, o.numel(), dev)
                for k in (~has_unit).nonzero()[:, 0].tolist():
                    j = int(o[k])
                    sp = b_sp[j].cpu().numpy()
                    lay = np.searchsorted(offsets, np.flatnonzero(sp), side="right") - 1
                    leaves.append((int(b_pr[j]), b_lo[j].cpu().numpy().astype(np.float64),
                                   b_hi[j].cpu().numpy().astype(np.float64),
                                   [(int(a), int(f - offsets[a]), bool(sp[f] > 0)) for a, f in
                                    zip(lay, np.flatnonzero(sp))],
                                   [(l[j].cpu().numpy().astype(np.float64), u[j].cpu().numpy().astype(np.float64))
                                    for l, u in prop.pre]))
                    stats["leaves"] += 1
                    if len(leaves) >= max_leaves:
                        return finish("node_limit")
                br, unit = o[has_unit], unit[has_unit]
                if br.numel():
                    sp_on, sp_off = b_sp[br].clone(), b_sp[br].clone()
                    rows = torch.arange(br.numel(), device=dev)
                    sp_on[rows, unit], sp_off[rows, unit] = 1, -1
                    pri = flat(prop.pre, b_lo)[br]
                    kids = (b_pr[br].repeat(2), torch.cat([sp_on, sp_off]), pri.repeat(2, 1), score[br].repeat(2),
                            b_dp[br].repeat(2) + 1, b_wa[br].repeat(2, 1), b_wb[br].repeat(2, 1), b_has[br].repeat(2))
            ctx.measured(take)
            if kids is not None:
                q_pr, q_sp, q_pri, q_sc, q_dp, q_wa, q_wb, q_has = (torch.cat([q, k]) for q, k in zip(cols(), kids))
                if ctx.queue_full(cols()):
                    return finish("node_limit")
            stats["max_queue"] = max(stats["max_queue"], q_pr.shape[0])
    return finish("undecided" if leaves else "holds")
