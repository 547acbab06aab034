"""Optimised lower bounds of objective rows (alpha-CROWN slopes), batched over boxes (torch).

Mirrors the alpha part of ``rust/core/src/bounds/optimize.rs``: the lower line of an unstable ReLU-like unit
``max(z, a z)`` (a <= 1) may be ``alpha z`` for any alpha in [a, 1], one alpha per unit and objective row;
projected Adam ascent (the core's step sizes) on the back-substituted bound, keeping the best iterate of each
row; a box stops once one of its rows exceeds its target (proved). Every iterate is a sound bound: only the
projection onto [a, 1] matters for soundness. The intermediate-layer bounds keep their fixed slopes, as in the
core. With ReLU splits, a multiplier beta >= 0 per split and row adds ``beta s z_j`` (s z_j <= 0 on the split's
sub-domain) to the coefficient reaching the unit (beta-CROWN), ascended and projected alike.
"""

from __future__ import annotations

from typing import Any

from .propagate import ParamDiag, Propagation, back_substitute, concretize
from .relax import Diag, Pairs

LR_ALPHA, LR_BETA, BETA1, BETA2, EPS = 0.1, 0.05, 0.9, 0.999, 1e-8


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


def alpha_floor(act: Any) -> float | None:
    """The lowest free slope of an activation's lower line (its leak: 0 for ReLU), or None when it has none
    (not ReLU-like, or a leak above 1)."""
    if act.kind == "relu":
        return 0.0
    if act.kind == "leaky_relu" and act.slope <= 1.0:
        return act.slope
    return None


def optimise(p: Propagation, acts: list, a_y: Any, a_x: Any, targets: Any, warm: list | None = None,
             warm_mask: Any = None, iters: int = 20, splits: list | None = None,
             warm_beta: list | None = None) -> tuple[Any, Any, list, list]:
    """alpha-CROWN (and, with ``splits``, beta-CROWN) on the K objective rows ``a_y f(x) + a_x x`` (a_y (B, K, out),
    a_x (B, K, in)) of the B boxes of ``p``; ``acts``: the network's activations (TAct, depth first), ``targets``
    (B, K): a box stops once a row's bound exceeds its target; ``warm``: starting slopes per activation layer
    ((B, K, n) or None), e.g. the parent's, used for the boxes in ``warm_mask`` (B,) (all when None; the others
    start from the relaxation's own lower slopes). ``splits``: the ReLU phases ``p`` was propagated with (per
    activation layer None or (B, n) int8, +1 active, -1 inactive), each with a multiplier beta >= 0 per row,
    starting from ``warm_beta`` (same layout as ``warm``; 0 where absent or outside ``warm_mask``). Returns the
    best bound of each row (B, K) (not yet maxed with the fixed-slope bound), its input coefficients (B, K, in),
    and the slopes and multipliers per activation layer (None where nothing is free)."""
    import torch

    B, K = a_y.shape[:2]
    rel = _relaxations(p.ops, [])
    pick = (lambda w, d: w) if warm_mask is None else (lambda w, d: torch.where(warm_mask[:, None, None], w, d))
    alphas, betas, a_spec, b_spec = [], [], [], []
    for i, (act, r, (l, u)) in enumerate(zip(acts, rel, p.pre)):
        a = alpha_floor(act)
        relu = act.kind in ("relu", "leaky_relu") and isinstance(r, Diag)
        if relu and a is not None:
            start = r.ls[:, None, :].expand(B, K, -1)
            if warm is not None and warm[i] is not None:
                start = pick(warm[i], start)
            alphas.append(start.detach().clone().clamp(a, 1.0).requires_grad_(True))
            a_spec.append(((l < 0) & (u > 0), a))
        else:
            alphas.append(None)
            a_spec.append(None)
        sp = splits[i] if splits is not None and relu else None
        if sp is not None and bool((sp != 0).any()):
            start = torch.zeros((B, K, l.shape[1]), dtype=l.dtype, device=l.device)
            if warm_beta is not None and warm_beta[i] is not None:
                start = pick(warm_beta[i], start)
            on = (sp != 0)[:, None, :]
            betas.append(torch.where(on, start, torch.zeros_like(start)).clamp(min=0).detach().requires_grad_(True))
            b_spec.append((sp != 0, -sp.to(l.dtype)))  # s = -1 for active (z >= 0), +1 for inactive
        else:
            betas.append(None)
            b_spec.append(None)
    groups = [(q, s[0], s[1], LR_ALPHA, 1.0) for q, s in zip(alphas, a_spec) if q is not None]
    groups += [(q, s[0], 0.0, LR_BETA, float("inf")) for q, s in zip(betas, b_spec) if q is not None]
    best = torch.full((B, K), -float("inf"), dtype=p.lo.dtype, device=p.lo.device)
    best_lam = torch.zeros_like(a_x)
    keep = lambda qs: [None if q is None else q.detach().clone() for q in qs]  # noqa: E731
    best_a, best_b = keep(alphas), keep(betas)
    if not groups:
        return best, best_lam, best_a, best_b
    live = [g[0] for g in groups]
    m1 = [torch.zeros_like(q) for q in live]
    m2 = [torch.zeros_like(q) for q in live]
    active = torch.ones(B, dtype=torch.bool, device=p.lo.device)
    with torch.enable_grad():
        for t in range(iters + 1):
            new = []
            for r, q, sa, b, sb in zip(rel, alphas, a_spec, betas, b_spec):
                if q is None and b is None:
                    new.append(r)
                else:
                    new.append(ParamDiag(r, q, None if sa is None else sa[0],
                                         None if b is None else b * sb[1][:, None, :]))
            lam, c = back_substitute([_replace(p.ops, new)], a_y)
            lam = lam + a_x
            bound = concretize(lam, c, p.lo, p.hi)
            with torch.no_grad():
                up = (bound > best) & active[:, None]
                best = torch.where(up, bound, best)
                best_lam = torch.where(up[..., None], lam, best_lam)
                upd = lambda qs, bs: [b if q is None else torch.where(up[..., None], q, b)  # noqa: E731
                                      for q, b in zip(qs, bs)]
                best_a, best_b = upd(alphas, best_a), upd(betas, best_b)
                active = active & ~(best > targets).any(1)
            if t == iters or not bool(active.any()):
                break
            grads = torch.autograd.grad(bound.sum(), live)
            with torch.no_grad():
                for (q, mask, lo, lr, hi), g, m, v in zip(groups, grads, m1, m2):
                    go = active[:, None, None] & mask[:, None, :]
                    m.copy_(torch.where(go, BETA1 * m + (1 - BETA1) * g, m))
                    v.copy_(torch.where(go, BETA2 * v + (1 - BETA2) * g * g, v))
                    mh, vh = m / (1 - BETA1 ** (t + 1)), v / (1 - BETA2 ** (t + 1))
                    q.copy_(torch.where(go, (q + lr * mh / (vh.sqrt() + EPS)).clamp(lo, hi), q))
    return best, best_lam.detach(), best_a, best_b


def output_coefficients(p: Propagation, a_y: Any, alphas: list, betas: list, splits: list | None,
                        has: Any = None) -> list:
    """The coefficient on every activation's output (per layer (B, n), depth first) of the back-substituted
    rows ``a_y`` (B, 1, out) at the given slopes and multipliers ((B, 1, n) per layer or None; for the boxes
    outside ``has`` the relaxation's own slopes and no multipliers): the ReLU-split heuristic's input."""
    import torch

    rel = _relaxations(p.ops, [])
    new = []
    for i, (r, q, b) in enumerate(zip(rel, alphas, betas)):
        if q is None and b is None:
            new.append(r)
            continue
        mask = None
        if q is not None:
            l, u = p.pre[i]
            mask = (l < 0) & (u > 0)
            if has is not None:
                q = torch.where(has[:, None, None], q, r.ls[:, None, :])
        bz = None
        if b is not None:
            bz = -b * splits[i].to(b.dtype)[:, None, :]
            if has is not None:
                bz = torch.where(has[:, None, None], bz, torch.zeros_like(bz))
        new.append(ParamDiag(r, q, mask, bz))
    rec: list = []
    with torch.no_grad():
        back_substitute([_replace(p.ops, new)], a_y, rec)
    return [v[:, 0] for v in reversed(rec)]
