"""Exact Z3 encodings (real arithmetic, weights as exact rationals of their float64 values).

``encode`` writes the network as composed affine maps over the inputs: a Z3 variable is introduced
only for the output of an *unstable* piecewise-linear unit; units that the given pre-activation
bounds prove stable are written as affine expressions (active) or 0 (inactive). With ``pre=None``
every unit is treated as unstable: the plain whole-network encoding.
"""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from ..errors import UnsupportedModelError
from ..layers import Dense, GroupSort, LeakyReLU, ReLU, Residual


class EncodingTimeout(Exception):
    """The deadline passed while the encoding was being built."""


def _q(z3, v: float):
    f = Fraction(float(v))
    return z3.RealVal(f.numerator) / f.denominator if f.denominator != 1 else z3.RealVal(f.numerator)


def _affine(z3, W: np.ndarray, b: np.ndarray, h: list, deadline: float | None = None):
    out = []
    for i in range(W.shape[0]):
        if deadline is not None and time.monotonic() > deadline:
            raise EncodingTimeout()
        terms = [_q(z3, W[i, j]) * h[j] for j in range(W.shape[1]) if W[i, j] != 0.0 and not _is_zero(z3, h[j])]
        if b[i] != 0.0:
            terms.append(_q(z3, b[i]))
        out.append(z3.Sum(terms) if len(terms) > 1 else (terms[0] if terms else z3.RealVal(0)))
    return out


def _is_zero(z3, e) -> bool:
    return z3.is_rational_value(e) and e.as_fraction() == 0


class Encoding:
    def __init__(self, z3, solver, x, y, n_vars: int):
        self.z3, self.solver, self.x, self.y, self.n_vars = z3, solver, x, y, n_vars


def encode(net, lo: np.ndarray, hi: np.ndarray, pre: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
           splits: Sequence[tuple[int, int, bool]] = (), deadline: float | None = None) -> Encoding:
    import z3

    from ..layers import reject_implicit
    reject_implicit(net.layers, "the Z3 encoding")
    solver = z3.Solver()
    x = [z3.Real(f"X_{j}") for j in range(net.input_dim)]
    for j in range(net.input_dim):
        solver.add(x[j] >= _q(z3, lo[j]), x[j] <= _q(z3, hi[j]))
    state = {"act": 0, "vars": 0}
    split_map: dict[tuple[int, int], bool] = {(a, u): s for a, u, s in splits}

    def fresh(name):
        state["vars"] += 1
        return z3.Real(f"{name}_{state['vars']}")

    def run(layers, h):
        for layer in layers:
            if deadline is not None and time.monotonic() > deadline:
                raise EncodingTimeout()
            if isinstance(layer, Dense):
                h = _affine(z3, layer.W, layer.b, h, deadline)
            elif isinstance(layer, Residual):
                f = run(layer.layers, list(h))
                if layer.skip is not None:
                    h = _affine(z3, layer.skip, np.zeros(len(h)), h, deadline)
                h = [a + b for a, b in zip(h, f)]
            else:
                a = state["act"]
                state["act"] += 1
                l, u = (None, None) if pre is None else pre[a]
                h = act(layer, a, h, l, u)
        return h

    def act(layer, a, h, l, u):
        if isinstance(layer, (ReLU, LeakyReLU)):
            s = 0.0 if isinstance(layer, ReLU) else layer.slope
            out = []
            for k, e in enumerate(h):
                sp = split_map.get((a, k))
                if sp is not None:
                    solver.add(e >= 0 if sp else e <= 0)
                if sp is True or (l is not None and l[k] >= _margin(l[k], u[k])):
                    out.append(e)
                elif sp is False or (u is not None and u[k] <= -_margin(l[k], u[k])):
                    out.append(e * _q(z3, s) if s != 0.0 else z3.RealVal(0))
                else:
                    t = fresh("r")
                    neg = e * _q(z3, s) if s != 0.0 else z3.RealVal(0)
                    solver.add(t == z3.If(e > 0, e, neg))
                    out.append(t)
            return out
        if isinstance(layer, GroupSort) and layer.group_size == 2:
            n = len(h)
            out = list(h)
            for grp in layer.groups(n):
                ia, ib = grp
                ea, eb = h[ia], h[ib]
                if l is not None and l[ia] >= u[ib] + _margin(l[ia], u[ib]):
                    continue
                if l is not None and l[ib] >= u[ia] + _margin(l[ib], u[ia]):
                    out[ia], out[ib] = eb, ea
                    continue
                mx, mn = fresh("max"), fresh("min")
                solver.add(mx == z3.If(ea >= eb, ea, eb), mn == z3.If(ea >= eb, eb, ea))
                out[ia], out[ib] = mx, mn
            return out
        raise UnsupportedModelError(f"the Z3 encoding supports ReLU, LeakyReLU and MaxMin activations, not "
                                    f"{type(layer).__name__} (activation layer {a})")

    y = run(net.layers, list(x))
    return Encoding(z3, solver, x, y, state["vars"])


def _margin(lo: float, hi: float) -> float:
    """How far a float bound must clear a threshold before a unit counts as stable. The bounds come from
    float arithmetic without directed rounding; a unit within this margin stays an exact Z3 variable."""
    return 1e-9 * (1.0 + max(abs(lo), abs(hi)))


def add_conjunction(enc: Encoding, a_y: np.ndarray, a_x: np.ndarray, c: np.ndarray, slack: float = 0.0) -> None:
    z3 = enc.z3
    for i in range(a_y.shape[0]):
        terms = [_q(z3, a_y[i, j]) * enc.y[j] for j in range(a_y.shape[1]) if a_y[i, j] != 0.0]
        terms += [_q(z3, a_x[i, j]) * enc.x[j] for j in range(a_x.shape[1]) if a_x[i, j] != 0.0]
        lhs = z3.Sum(terms) if len(terms) > 1 else (terms[0] if terms else z3.RealVal(0))
        enc.solver.add(lhs <= _q(z3, c[i] - slack) if slack else lhs <= _q(z3, c[i]))


def check(enc: Encoding, deadline: float) -> tuple[str, np.ndarray | None]:
    """Runs Z3 until ``deadline`` (time.monotonic()); returns ("sat", x), ("unsat", None), ("timeout", None) or
    ("unknown", None)."""
    z3 = enc.z3
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return "timeout", None
    enc.solver.set("timeout", max(1, int(remaining * 950)))
    # Belt and braces: interrupt the context at the deadline in case Z3 overruns its own timeout.
    timer = threading.Timer(remaining, enc.solver.ctx.interrupt)
    timer.daemon = True
    timer.start()
    try:
        r = enc.solver.check()
    finally:
        timer.cancel()
    if r == z3.sat:
        m = enc.solver.model()
        x = np.array([_val(m.eval(v, model_completion=True)) for v in enc.x])
        return "sat", x
    if r == z3.unsat:
        return "unsat", None
    reason = enc.solver.reason_unknown()
    if any(w in reason for w in ("timeout", "canceled", "interrupt")) or time.monotonic() >= deadline - 0.05 * remaining:
        return "timeout", None
    return "unknown", None


def _val(v: Any) -> float:
    if hasattr(v, "as_fraction"):
        return float(v.as_fraction())
    return float(v.approx(20).as_fraction())


def check_isolated(build, deadline: float) -> tuple[str, np.ndarray | None]:
    """Builds and checks an encoding in a forked process that is killed at ``deadline``: Z3 does not
    always honour its timeout or an interrupt promptly on large encodings, and the caller's time limit
    is hard. ``build()`` returns an :class:`Encoding`."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def target():
        try:
            out = check(build(), deadline)
        except EncodingTimeout:
            out = ("timeout", None)
        except BaseException as e:  # reported to the parent as unknown
            out = ("unknown", repr(e))
        send.send(out)

    proc = ctx.Process(target=target, daemon=True)
    proc.start()
    send.close()
    try:
        if recv.poll(max(0.0, deadline - time.monotonic()) + 0.05):
            res = recv.recv()
        else:
            res = ("timeout", None)
    except EOFError:
        res = ("unknown", None)
    finally:
        proc.kill()
        proc.join()
    status, x = res
    return status, (x if isinstance(x, np.ndarray) else None)
