"""Interval (IBP) and linear (CROWN back-substitution) bound propagation, batched over boxes (torch).

Mirrors ``rust/core/src/bounds/propagate.rs`` (default options: adaptive slopes, no splits, no prior
bounds): the network is walked once; before each activation the pre-activation box comes from interval
arithmetic, tightened (with ``crown``) by back-substituting the identity through the relaxations built
so far down to the input box. Residual blocks are nested op lists. Every tensor carries a leading batch
dimension B (one box per row), so one call bounds many sub-problems at once on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ShapeError
from .compiled import TAct, TDense, TResidual, compiled
from .relax import Diag, Pairs, act_interval, relax

#: An interval crossing by more than this (relative) proves the box empty; smaller crossings are rounding.
CROSS_TOL = 1e-9


@dataclass
class Propagation:
    ops: list
    pre: list = field(default_factory=list)  # [(l, u)] per activation layer, depth first, each (B, n)
    out: tuple = (None, None)
    infeasible: Any = None  # (B,) bool
    lo: Any = None
    hi: Any = None


def _ibp_dense(d: TDense, l: Any, u: Any) -> tuple[Any, Any]:
    Wp, Wn = d.W.clamp(min=0).T, d.W.clamp(max=0).T
    return l @ Wp + u @ Wn + d.b, u @ Wp + l @ Wn + d.b


def concretize(lam: Any, c: Any, lo: Any, hi: Any) -> Any:
    """Lower bound of each row of ``lam x + c`` (lam (B, K, n), c (B, K)) over the boxes [lo, hi] (B, n)."""
    return c + (lam.clamp(min=0) @ lo[..., None])[..., 0] + (lam.clamp(max=0) @ hi[..., None])[..., 0]


@dataclass
class ParamDiag:
    """A ReLU/LeakyReLU relaxation with free parameters per objective row (K rows): where ``mask`` (B, n) (unstable
    units) the lower line is ``alpha z`` (alpha-CROWN; alpha (B, K, n) within [leak slope, 1]), and ``bz``
    (B, K, n) is added to the coefficient that reaches the pre-activation (beta-CROWN: beta s z_j <= 0 on the
    sub-domain of a split s z_j <= 0); either may be None."""
    base: Diag
    alpha: Any = None
    mask: Any = None
    bz: Any = None


def _back_act(r: Diag | Pairs | ParamDiag, lam: Any, c: Any) -> tuple[Any, Any]:
    import torch

    if isinstance(r, ParamDiag):
        d = r.base
        pos = lam >= 0
        if r.alpha is not None:  # a lower line alpha z: the relaxations with free slopes have zero intercepts
            ls = torch.where(r.mask[:, None, :], r.alpha, d.ls[:, None, :])
            c = c + (lam.clamp(max=0) * d.ui[:, None, :]).sum(-1)
        else:
            ls = d.ls[:, None, :]
            c = c + torch.where(pos, lam * d.li[:, None, :], lam * d.ui[:, None, :]).sum(-1)
        out = lam * torch.where(pos, ls, d.us[:, None, :])
        return (out if r.bz is None else out + r.bz), c
    if isinstance(r, Diag):
        pos = lam >= 0
        c = c + torch.where(pos, lam * r.li[:, None, :], lam * r.ui[:, None, :]).sum(-1)
        return torch.where(pos, lam * r.ls[:, None, :], lam * r.us[:, None, :]), c
    out = torch.zeros_like(lam)
    va, vb = lam[..., r.a], lam[..., r.b]  # (B, K, P)
    ca = torch.where((va >= 0)[..., None], r.lo_a[:, None], r.up_a[:, None])  # (B, K, P, 3)
    cb = torch.where((vb >= 0)[..., None], r.lo_b[:, None], r.up_b[:, None])
    out[..., r.a] = va * ca[..., 0] + vb * cb[..., 0]
    out[..., r.b] = va * ca[..., 1] + vb * cb[..., 1]
    return out, c + (va * ca[..., 2] + vb * cb[..., 2]).sum(-1)


def _back_list(ops: list, lam: Any, c: Any, record: list | None) -> tuple[Any, Any]:
    for kind, op in reversed(ops):
        if kind == "dense":
            c = c + lam @ op.b
            lam = lam @ op.W
        elif kind == "act":
            if record is not None:
                record.append(lam)
            lam, c = _back_act(op, lam, c)
        else:
            inner, skip = op
            f, c = _back_list(inner, lam, c, record)
            lam = f + (lam if skip is None else lam @ skip.W)
    return lam, c


def back_substitute(ctx: list[list], lam: Any, record: list | None = None) -> tuple[Any, Any]:
    """Sends the rows of ``lam`` (B, K, n_cur) back through every level of ``ctx`` to the input; returns the
    input coefficients (B, K, n_in) and the constant (B, K) of each row's lower bound. ``record``: a list that
    receives the coefficients on every activation's output, last activation first."""
    import torch

    c = torch.zeros(lam.shape[:2], dtype=lam.dtype, device=lam.device)
    for level in reversed(ctx):
        lam, c = _back_list(level, lam, c, record)
    return lam, c


def _walk(layers: list, ctx: list[list], l: Any, u: Any, st: Propagation, crown: bool,
          prior: list | None, splits: list | None) -> tuple[Any, Any]:
    import torch

    for layer in layers:
        if isinstance(layer, TDense):
            l, u = _ibp_dense(layer, l, u)
            ctx[-1].append(("dense", layer))
        elif isinstance(layer, TResidual):
            ctx.append([])
            fl, fu = _walk(layer.inner, ctx, l, u, st, crown, prior, splits)
            inner = ctx.pop()
            ctx[-1].append(("res", (inner, layer.skip)))
            if layer.skip is not None:
                l, u = _ibp_dense(layer.skip, l, u)
            l, u = l + fl, u + fu
        else:
            assert isinstance(layer, TAct)
            B, n = l.shape
            if prior is not None:  # as in the core: first, so that units it makes stable need no linear bounds
                pl, pu = prior[len(st.pre)]
                l, u = torch.maximum(l, pl), torch.minimum(u, pu)
            if splits is not None and splits[len(st.pre)] is not None:  # ReLU phases: active z >= 0, inactive z <= 0
                sp = splits[len(st.pre)]
                l, u = torch.where(sp > 0, l.clamp(min=0), l), torch.where(sp < 0, u.clamp(max=0), u)
            only_first_dense = len(ctx) == 1 and len(ctx[0]) == 1 and ctx[0][0][0] == "dense"
            has_ops = any(level for level in ctx)
            if crown and has_ops and not only_first_dense:
                eye = torch.eye(n, dtype=l.dtype, device=l.device)
                lam = torch.cat([eye, -eye]).expand(B, 2 * n, n)
                lam_in, c = back_substitute(ctx, lam)
                lb = concretize(lam_in, c, st.lo, st.hi)
                # As in the core: (Leaky)ReLU units already one-signed keep their interval bounds
                # (their relaxation is exact either way; the core skips their rows).
                need = (l < 0) & (u > 0) if layer.kind in ("relu", "leaky_relu") else torch.ones_like(l, dtype=torch.bool)
                l = torch.where(need, torch.maximum(l, lb[:, :n]), l)
                u = torch.where(need, torch.minimum(u, -lb[:, n:]), u)
            cross = l > u
            if bool(cross.any()):
                gap = (l - u) > CROSS_TOL * (1 + l.abs() + u.abs())
                st.infeasible = st.infeasible | (cross & gap).any(1)
                l, u = torch.where(cross, u, l), torch.where(cross, l, u)
            r = relax(layer, l, u)
            st.pre.append((l, u))
            ctx[-1].append(("act", r))
            l, u = act_interval(layer, l, u)
    return l, u


def propagate(net: Any, lo: Any, hi: Any, crown: bool = True, prior: list | None = None,
              splits: list | None = None) -> Propagation:
    """Bounds of every layer of ``net`` over the boxes [lo, hi] (torch tensors (B, input_dim), on the device
    and in the dtype to compute in). ``prior``: pre-activation bounds valid on each box (e.g. its parent's), one
    (l, u) pair of (B, n) per activation layer as in ``Propagation.pre``, intersected in. ``splits``: ReLU phases
    per activation layer (None or (B, n) int8: +1 active, z >= 0; -1 inactive, z <= 0; 0 free), as in the core
    clamped into the unit's interval before its linear bounds."""
    import torch

    layers = compiled(net, lo.device, lo.dtype)
    st = Propagation(ops=[], lo=lo, hi=hi, infeasible=torch.zeros(lo.shape[0], dtype=torch.bool, device=lo.device))
    ctx: list[list] = [[]]
    st.out = _walk(layers, ctx, lo, hi, st, crown, prior, splits)
    st.ops = ctx.pop()
    return st


def objective(p: Propagation, a_y: Any, a_x: Any, crown: bool = True) -> tuple[Any, Any]:
    """Lower bounds (B, K) of ``a_y f(x) + a_x x`` (a_y (B, K, out) or (K, out), a_x likewise over inputs)
    over each box, with the input coefficients (B, K, in) of each row's linear lower bound."""
    import torch

    B = p.lo.shape[0]
    a_y = a_y.expand(B, *a_y.shape[-2:])
    a_x = a_x.expand(B, *a_x.shape[-2:])
    ol, ou = p.out
    ib = (torch.where(a_y >= 0, a_y * ol[:, None], a_y * ou[:, None]).sum(-1)
          + torch.where(a_x >= 0, a_x * p.lo[:, None], a_x * p.hi[:, None]).sum(-1))
    if not crown:
        return ib, a_x
    lam, c = back_substitute([p.ops], a_y)
    lam = lam + a_x
    return torch.maximum(concretize(lam, c, p.lo, p.hi), ib), lam


def output_bounds(net: Any, lo: Any, hi: Any, a_y: Any, a_x: Any, method: str = "crown", device: Any = "cpu",
                  dtype: Any = None) -> dict[str, Any]:
    """The torch counterpart of ``_core.output_bounds``, batched: ``lo``/``hi`` (B, n) or (n,). Returns numpy
    arrays: lower (B, K), out_lo / out_hi (B, out), pre (list of (l, u), each (B, width)), infeasible (B,)."""
    import torch

    from ..devices import resolve_device

    if method not in ("crown", "interval"):
        raise InvalidInputError(f"method must be 'crown' or 'interval', got {method!r}")
    dev = resolve_device(device).torch()
    dtype = dtype or torch.float64
    t = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=dtype, device=dev)  # noqa: E731
    lo_t, hi_t = t(np.atleast_2d(lo)), t(np.atleast_2d(hi))
    n = net.input_dim
    if lo_t.shape != hi_t.shape or lo_t.shape[1] != n:
        raise ShapeError(f"lo and hi must be (B, {n}) or ({n},), got {tuple(np.shape(lo))} and {tuple(np.shape(hi))}")
    if not (bool(torch.isfinite(lo_t).all()) and bool(torch.isfinite(hi_t).all())):
        raise InvalidInputError("input box is unbounded or not finite")
    if bool((lo_t > hi_t).any()):
        raise InvalidInputError("input box is empty (lo > hi in some dimension)")
    a_y_t, a_x_t = t(a_y), t(a_x)
    if a_y_t.shape[-1] != net.output_dim or a_x_t.shape[-1] != n or a_y_t.shape[-2] != a_x_t.shape[-2]:
        raise ShapeError(f"a_y must be (k, {net.output_dim}) and a_x (k, {n}), got {tuple(a_y_t.shape)} and "
                         f"{tuple(a_x_t.shape)}")
    crown = method == "crown"
    with torch.no_grad():
        p = propagate(net, lo_t, hi_t, crown)
        lb, _ = objective(p, a_y_t, a_x_t, crown)
    npy = lambda v: v.detach().cpu().numpy()  # noqa: E731
    return {"lower": npy(lb), "out_lo": npy(p.out[0]), "out_hi": npy(p.out[1]),
            "pre": [(npy(a), npy(b)) for a, b in p.pre], "infeasible": npy(p.infeasible)}
