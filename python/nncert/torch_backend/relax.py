"""Linear relaxations of each activation over a batch of boxes [l, u] (each (B, n)), torch ops.

Mirrors ``rust/core/src/bounds/relax.rs`` with the default ``Slopes::Adaptive`` choice: element-wise
activations give ``Diag`` relaxations (ls, li, us, ui), each (B, n): output k lies in
[ls x_k + li, us x_k + ui]; MaxMin pairs give ``Pairs`` relaxations with coefficients (B, P, 3)
c0 x_a + c1 x_b + c2 for lo/up of the max (a) and the min (b).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .compiled import TAct


@dataclass
class Diag:
    ls: Any
    li: Any
    us: Any
    ui: Any


@dataclass
class Pairs:
    a: Any  # (P,) unit index of each pair's max output
    b: Any  # (P,) unit index of the min output
    lo_a: Any  # (B, P, 3)
    up_a: Any
    lo_b: Any
    up_b: Any


def _relu_like(l: Any, u: Any, a: float) -> Diag:
    import torch

    one, zero = torch.ones_like(l), torch.zeros_like(l)
    d = torch.where(u > l, u - l, one)
    s = (u - a * l) / d
    chord_i = u - s * u
    lo_s, hi_s = min(a, 1.0), max(a, 1.0)
    alpha = torch.where(u >= -l, hi_s * one, lo_s * one)
    if a <= 1.0:
        ls, li, us, ui = alpha, zero, s, chord_i
    else:
        ls, li, us, ui = s, chord_i, alpha, zero
    pos, neg = l >= 0, (l < 0) & (u <= 0)

    def pick(v, v_pos, v_neg):
        return torch.where(pos, v_pos, torch.where(neg, v_neg, v))

    return Diag(pick(ls, one, a * one), pick(li, zero, zero), pick(us, one, a * one), pick(ui, zero, zero))


def _tanh_crit(s: Any) -> list[tuple[Any, Any]]:
    import torch

    ok = (s > 0) & (s < 1)
    t = torch.sqrt(torch.clamp(1 - s, min=0)).clamp(max=1.0 - 1e-16)
    x = torch.atanh(torch.where(ok, t, torch.zeros_like(t)))
    return [(x, ok), (-x, ok)]


def _sigmoid_crit(s: Any) -> list[tuple[Any, Any]]:
    import torch

    ok = (s > 0) & (s < 0.25)
    r = torch.sqrt(torch.clamp(1 - 4 * s, min=0))
    out = []
    for p in ((1 + r) / 2, (1 - r) / 2):
        okp = ok & (p > 0) & (p < 1)
        pp = torch.where(okp, p, 0.5 * torch.ones_like(p))
        out.append((torch.log(pp / (1 - pp)), okp))
    return out


def _sigmoid(x: Any) -> Any:
    import torch
    # the core's two-branch form (exact same rounding as rust/core/src/network.rs `sigmoid`)
    e = torch.exp(-x.abs())
    return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _smooth(l: Any, u: Any, f, crit) -> Diag:
    import torch

    fl, fu = f(l), f(u)
    w = u - l
    flat = (w <= 1e-9) | torch.isnan(w)
    d = torch.where(flat, torch.ones_like(w), w)
    s = (fu - fl) / d
    lo = torch.minimum(fl - s * l, fu - s * u)
    hi = torch.maximum(fl - s * l, fu - s * u)
    for x, ok in crit(s):
        inside = ok & (x > l) & (x < u)
        g = f(torch.where(inside, x, l)) - s * torch.where(inside, x, l)
        lo = torch.where(inside, torch.minimum(lo, g), lo)
        hi = torch.where(inside, torch.maximum(hi, g), hi)
    pad = 1e-12 * (1 + torch.maximum(lo.abs(), hi.abs()) + s.abs() * torch.maximum(l.abs(), u.abs()))
    fpad = 1e-12 * (1 + torch.maximum(fl.abs(), fu.abs()))
    zero = torch.zeros_like(s)
    return Diag(torch.where(flat, zero, s), torch.where(flat, torch.minimum(fl, fu) - fpad, lo - pad),
                torch.where(flat, zero, s), torch.where(flat, torch.maximum(fl, fu) + fpad, hi + pad))


def _maxmin(l: Any, u: Any, groups: Any) -> Pairs:
    import torch

    a, b = groups[:, 0], groups[:, 1]
    la, ua, lb, ub = l[:, a], u[:, a], l[:, b], u[:, b]
    one, zero = torch.ones_like(la), torch.zeros_like(la)
    ld, ud = la - ub, ua - lb
    d = torch.where(ud > ld, ud - ld, one)
    k = ud / d
    alpha = torch.where(ud >= -ld, one, zero)
    st = lambda *c: torch.stack(c, dim=-1)  # noqa: E731
    up_a, lo_a = st(k, 1 - k, -k * ld), st(alpha, 1 - alpha, zero)
    lo_b, up_b = st(1 - k, k, k * ld), st(1 - alpha, alpha, zero)
    id_a, id_b = st(one, zero, zero), st(zero, one, zero)
    a_top = (la >= ub)[..., None]
    b_top = ((lb >= ua) & ~(la >= ub))[..., None]

    def pick(v, v_atop, v_btop):
        return torch.where(a_top, v_atop, torch.where(b_top, v_btop, v))

    return Pairs(a, b, pick(lo_a, id_a, id_b), pick(up_a, id_a, id_b), pick(lo_b, id_b, id_a),
                 pick(up_b, id_b, id_a))


def act_interval(act: TAct, l: Any, u: Any) -> tuple[Any, Any]:
    """The interval enclosure of the activation's output for inputs in [l, u]."""
    import torch

    if act.kind == "relu":
        return l.clamp(min=0), u.clamp(min=0)
    if act.kind == "leaky_relu":
        f = lambda v: torch.where(v > 0, v, act.slope * v)  # noqa: E731
        fa, fb = f(l), f(u)
        lo, hi = torch.minimum(fa, fb), torch.maximum(fa, fb)
        lo = torch.where((l < 0) & (u > 0), lo.clamp(max=0), lo)
        return lo, hi
    if act.kind == "tanh":
        return torch.tanh(l), torch.tanh(u)
    if act.kind == "sigmoid":
        return _sigmoid(l), _sigmoid(u)
    if act.kind == "groupsort":
        g = act.groups
        lo, hi = l.clone(), u.clone()
        lo[:, g] = torch.sort(l[:, g], dim=-1, descending=True).values
        hi[:, g] = torch.sort(u[:, g], dim=-1, descending=True).values
        return lo, hi
    raise AssertionError(act.kind)


def relax(act: TAct, l: Any, u: Any) -> Diag | Pairs:
    """The relaxation of ``act`` for inputs in the boxes [l, u] (adaptive lower slopes)."""
    import torch

    if act.kind == "relu":
        return _relu_like(l, u, 0.0)
    if act.kind == "leaky_relu":
        return _relu_like(l, u, act.slope)
    if act.kind == "tanh":
        return _smooth(l, u, torch.tanh, _tanh_crit)
    if act.kind == "sigmoid":
        return _smooth(l, u, _sigmoid, _sigmoid_crit)
    if act.kind == "groupsort" and act.groups.shape[1] == 2:
        return _maxmin(l, u, act.groups)
    lo, hi = act_interval(act, l, u)
    z = torch.zeros_like(l)
    return Diag(z, lo, z, hi)
