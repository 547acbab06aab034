"""Optimised lower bounds of objective rows (alpha-CROWN slopes), batched over boxes (torch).

Mirrors the alpha part of ``rust/core/src/bounds/optimize.rs``: the lower line of an unstable ReLU-like unit
``max(z, a z)`` (a <= 1) may be ``alpha z`` for any alpha in [a, 1], one alpha per unit and objective row;
projected Adam ascent (the core's step sizes) on the back-substituted bound, keeping the best iterate of each
row; a box stops once one of its rows exceeds its target (proved). Every iterate is a sound bound: only the
projection onto [a, 1] matters for soundness. The intermediate-layer bounds keep their fixed slopes, as in the
core. Split multipliers (beta) are not here: ReLU-split nodes are searched by the core.
"""

from __future__ import annotations

from typing import Any

from .propagate import AlphaDiag, Propagation, back_substitute, concretize
from .relax import Diag, Pairs

LR_ALPHA, BETA1, BETA2, EPS = 0.1, 0.9, 0.999, 1e-8


def _relaxations(ops: list, out: list) -> list:
    for kind, op in ops:
        if kind == "act":
            out.append(op)
        elif kind == "res":
            _relaxations(op[0], out)
    return out


def _replace(ops: list, new: list) -> list:
    """``ops`` with its activation relaxations (depth first) taken from ``new`` in order."""
    out = []
    for kind, op in ops:
        if kind == "act":
            out.append((kind, new.pop(0)))
        elif kind == "res":
            out.append((kind, (_replace(op[0], new), op[1])))
        else:
            out.append((kind, op))
    return out


def _slice_relax(r: Diag | Pairs, idx: Any) -> Diag | Pairs:
    if isinstance(r, Diag):
        return Diag(r.ls[idx], r.li[idx], r.us[idx], r.ui[idx])
    return Pairs(r.a, r.b, r.lo_a[idx], r.up_a[idx], r.lo_b[idx], r.up_b[idx])


def select(p: Propagation, idx: Any) -> Propagation:
    """The propagation of the boxes ``idx`` only."""
    rel = [_slice_relax(r, idx) for r in _relaxations(p.ops, [])]
    return Propagation(ops=_replace(p.ops, rel), pre=[(l[idx], u[idx]) for l, u in p.pre],
                       out=tuple(v[idx] for v in p.out), infeasible=p.infeasible[idx], lo=p.lo[idx], hi=p.hi[idx])


def optimise(p: Propagation, acts: list, a_y: Any, a_x: Any, targets: Any, warm: list | None = None,
             warm_mask: Any = None, iters: int = 20) -> tuple[Any, list]:
    """alpha-CROWN on the K objective rows ``a_y f(x) + a_x x`` (a_y (B, K, out), a_x (B, K, in)) of the B boxes of
    ``p``; ``acts``: the network's activations (TAct, depth first), ``targets`` (B, K): a box stops once a row's
    bound exceeds its target; ``warm``: starting slopes per activation layer ((B, K, n) or None), e.g. the
    parent's, used for the boxes in ``warm_mask`` (B,) (all when None; the others start from the relaxation's own
    lower slopes). Returns the best bound of each row (B, K) (not yet maxed with the fixed-slope bound) and the slopes
    per activation layer (None where nothing is optimisable)."""
    import torch

    B, K = a_y.shape[:2]
    rel = _relaxations(p.ops, [])
    specs = []  # per activation layer: (mask (B, n), lowest slope) or None
    for act, r, (l, u) in zip(acts, rel, p.pre):
        a = act.slope if act.kind == "leaky_relu" else 0.0
        ok = act.kind in ("relu", "leaky_relu") and a <= 1.0 and isinstance(r, Diag)
        specs.append(((l < 0) & (u > 0), a) if ok else None)
    params = []
    for i, (s, r) in enumerate(zip(specs, rel)):
        if s is None:
            params.append(None)
            continue
        start = r.ls[:, None, :].expand(B, K, -1)
        if warm is not None and warm[i] is not None:
            start = warm[i] if warm_mask is None else torch.where(warm_mask[:, None, None], warm[i], start)
        params.append(start.detach().clone().clamp(s[1], 1.0).requires_grad_(True))
    live = [q for q in params if q is not None]
    best = torch.full((B, K), -float("inf"), dtype=p.lo.dtype, device=p.lo.device)
    best_params = [None if q is None else q.detach().clone() for q in params]
    if not live:
        return best, best_params
    m1 = [torch.zeros_like(q) for q in live]
    m2 = [torch.zeros_like(q) for q in live]
    active = torch.ones(B, dtype=torch.bool, device=p.lo.device)
    with torch.enable_grad():
        for t in range(iters + 1):
            new = [r if s is None else AlphaDiag(r, q, s[0]) for r, s, q in zip(rel, specs, params)]
            lam, c = back_substitute([_replace(p.ops, new)], a_y)
            bound = concretize(lam + a_x, c, p.lo, p.hi)
            with torch.no_grad():
                up = (bound > best) & active[:, None]
                best = torch.where(up, bound, best)
                best_params = [b if q is None else torch.where(up[..., None], q, b) for q, b in zip(params, best_params)]
                active = active & ~(best > targets).any(1)
            if t == iters or not bool(active.any()):
                break
            grads = torch.autograd.grad(bound.sum(), live)
            with torch.no_grad():
                for q, g, m, v, s in zip(live, grads, m1, m2, [s for s in specs if s is not None]):
                    go = active[:, None, None] & s[0][:, None, :]
                    m.copy_(torch.where(go, BETA1 * m + (1 - BETA1) * g, m))
                    v.copy_(torch.where(go, BETA2 * v + (1 - BETA2) * g * g, v))
                    mh, vh = m / (1 - BETA1 ** (t + 1)), v / (1 - BETA2 ** (t + 1))
                    q.copy_(torch.where(go, (q + LR_ALPHA * mh / (vh.sqrt() + EPS)).clamp(s[1], 1.0), q))
    return best.detach(), best_params
