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

import os
import warnings
from typing import Any

from .propagate import ParamDiag, Propagation, back_substitute, concretize
from .relax import Diag, Pairs

LR_ALPHA, LR_BETA, BETA1, BETA2, EPS = 0.1, 0.05, 0.9, 0.999, 1e-8
#: On CUDA, optimisations of at least this many steps replay one captured graph per step (NNCERT_CUDA_GRAPHS=0: never)
GRAPH_MIN_ITERS = 4
#: Replays between two checks (each a host synchronisation) whether any box still ascends
GRAPH_CHECK_EVERY = 4
_graphs = {"enabled": os.environ.get("NNCERT_CUDA_GRAPHS", "1") != "0"}


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
    # Every free parameter lives in one tensor theta (B, K, N): per activation layer its slopes and then its split
    # multipliers, each a slice; lo/hi/lr give each column its projection and step.
    starts, cols, a_spec, b_spec = [], [], [], []  # cols: (lo, hi, lr, width) per slice
    for i, (act, r, (l, u)) in enumerate(zip(acts, rel, p.pre)):
        a = alpha_floor(act)
        relu = act.kind in ("relu", "leaky_relu") and isinstance(r, Diag)
        a_spec.append(None)
        if relu and a is not None:
            start = r.ls[:, None, :].expand(B, K, -1)
            if warm is not None and warm[i] is not None:
                start = pick(warm[i], start)
            a_spec[-1] = (l < 0) & (u > 0)
            starts.append(start.clamp(a, 1.0))
            cols.append((a, 1.0, LR_ALPHA, l.shape[1]))
        sp = splits[i] if splits is not None and relu else None
        b_spec.append(None)
        if sp is not None and bool((sp != 0).any()):
            start = torch.zeros((B, K, l.shape[1]), dtype=l.dtype, device=l.device)
            if warm_beta is not None and warm_beta[i] is not None:
                start = pick(warm_beta[i], start)
            b_spec[-1] = -sp.to(l.dtype)  # s = -1 for active (z >= 0), +1 for inactive
            starts.append(torch.where((sp != 0)[:, None, :], start, torch.zeros_like(start)).clamp(min=0))
            cols.append((0.0, float("inf"), LR_BETA, l.shape[1]))
    dt, dev = p.lo.dtype, p.lo.device
    best = torch.full((B, K), -float("inf"), dtype=dt, device=dev)
    best_lam = torch.zeros_like(a_x)

    def per_layer(v: Any) -> tuple[list, list]:
        parts = iter(v.split([c[3] for c in cols], -1))  # one split (its gradient is one concatenation)
        alphas, betas = [], []
        for sa, sb in zip(a_spec, b_spec):  # (in the order the slices were laid out)
            alphas.append(None if sa is None else next(parts))
            betas.append(None if sb is None else next(parts))
        return alphas, betas

    if not cols:
        return best, best_lam, [None] * len(rel), [None] * len(rel)
    theta = torch.cat(starts, -1).detach().requires_grad_(True)
    col = lambda k: torch.cat([torch.full((c[3],), c[k], dtype=dt, device=dev) for c in cols])  # noqa: E731
    lo_t, hi_t, lr_t = col(0), col(1), col(2)
    best_theta = theta.detach().clone()
    m1, m2 = torch.zeros_like(best_theta), torch.zeros_like(best_theta)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    # the iteration updates theta, m1, m2, best, best_lam, best_theta and active in place: the same code runs
    # eagerly and, on CUDA, as a captured graph

    def evaluate() -> Any:
        """The bound at theta; keeps each row's best iterate and stops the boxes whose target is met."""
        alphas, betas = per_layer(theta)
        new = []
        for r, q, sa, b, sb in zip(rel, alphas, a_spec, betas, b_spec):
            new.append(r if q is None and b is None else
                       ParamDiag(r, q, sa, None if b is None else b * sb[:, None, :]))
        lam, c = back_substitute([_replace(p.ops, new)], a_y)
        lam = lam + a_x
        bound = concretize(lam, c, p.lo, p.hi)
        with torch.no_grad():
            up = (bound > best) & active[:, None]
            best.copy_(torch.where(up, bound, best))
            best_lam.copy_(torch.where(up[..., None], lam, best_lam))
            best_theta.copy_(torch.where(up[..., None], theta, best_theta))
            active.copy_(active & ~(best > targets).any(1))
        return bound

    def step(bc1: Any, bc2: Any) -> None:
        """One projected Adam ascent step (bias corrections bc1, bc2). Every entry moves: the gradient is exactly
        zero on the units a slice leaves fixed (stable units, unsplit ones), so those never change, and a box
        that stopped moves on but its best iterate is kept."""
        (g,) = torch.autograd.grad(evaluate().sum(), [theta])
        with torch.no_grad():
            m1.copy_(BETA1 * m1 + (1 - BETA1) * g)
            m2.copy_(BETA2 * m2 + (1 - BETA2) * g * g)
            mh, vh = m1 / bc1, m2 / bc2
            theta.copy_((theta + lr_t * mh / (vh.sqrt() + EPS)).clamp(lo_t, hi_t))

    bias = lambda t: (1 - BETA1 ** (t + 1), 1 - BETA2 ** (t + 1))  # noqa: E731
    with torch.enable_grad():
        t = 0
        if dev.type == "cuda" and iters >= GRAPH_MIN_ITERS and _graphs["enabled"]:
            t = _graphed_steps(step, bias, iters, active, theta)
        for t in range(t, iters + 1):
            if t == iters or not bool(active.any()):
                evaluate()
                break
            step(*bias(t))
    best_a, best_b = per_layer(best_theta)
    return best, best_lam.detach(), best_a, best_b


def _graphed_steps(step: Any, bias: Any, iters: int, active: Any, like: Any) -> int:
    """Steps 0 .. iters - 1 of ``step`` on CUDA: step 0 eagerly on a side stream (the warm-up a capture needs),
    then one captured graph replayed per step: one launch for the few hundred small kernels of a step, where
    launching them one by one from Python costs far more than running them. Every GRAPH_CHECK_EVERY steps it
    stops if no box ascends any more. Returns the next step for the eager loop: ``iters``, or earlier where it
    stopped; 1 if the capture failed (graphs are then off for the process, with a warning)."""
    import torch

    dev = like.device
    side = torch.cuda.Stream(device=dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        step(*bias(0))
    torch.cuda.current_stream(dev).wait_stream(side)
    bc = torch.ones(2, dtype=like.dtype, device=dev)  # the bias corrections, refilled before each replay
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, stream=side):
            step(bc[0], bc[1])
    except Exception as e:  # noqa: BLE001 - any capture failure: run eagerly from now on
        _graphs["enabled"] = False
        warnings.warn(f"CUDA graph capture of the bound optimisation failed ({e}); running it eagerly",
                      RuntimeWarning, stacklevel=3)
        return 1
    try:
        for t in range(1, iters):
            if (t - 1) % GRAPH_CHECK_EVERY == 0 and not bool(active.any()):
                return t
            b1, b2 = bias(t)
            bc[0].fill_(b1)
            bc[1].fill_(b2)
            graph.replay()
        return iters
    finally:
        torch.cuda.current_stream(dev).synchronize()
        graph.reset()


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
