"""Assertions for users' test suites: guard a model in CI with ``assert_holds``, ``assert_robust`` and
``assert_lipschitz_below``. Each raises AssertionError with a message that says what was found: the
verdict and the replayed counterexample (input, output, violated constraint), a timeout (not a
violation), or the certified bound and its gap."""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_TIMEOUT = 60.0


def _default_timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    from . import pytest_plugin
    return pytest_plugin.current_timeout() or DEFAULT_TIMEOUT


def _fmt(v: np.ndarray) -> str:
    return np.array2string(np.asarray(v), precision=6, max_line_width=120, threshold=20)


def _describe(r, prop) -> str:
    if r.status == "violated":
        x, y = r.counterexample
        info = r.violated or {}
        j = info.get("conjunction", 0)
        a_y, a_x, c = prop.unsafe[j]
        rows = []
        for k in range(a_y.shape[0]):
            terms = " + ".join(f"{a_y[k, i]:g}*Y_{i}" for i in np.nonzero(a_y[k])[0])
            terms += "".join(f" + {a_x[k, i]:g}*X_{i}" for i in np.nonzero(a_x[k])[0])
            rows.append(f"{terms} <= {c[k]:g} (value {float(info['values'][k]) + c[k]:.6g})" if "values" in info
                        else f"{terms} <= {c[k]:g}")
        return (f"property violated (method {r.method}, {r.seconds:.2f} s): counterexample replayed in float64 and "
                f"float32\n  input  x = {_fmt(x)}\n  output y = {_fmt(y)}\n  unsafe constraints met: "
                + "; ".join(rows))
    if r.status == "timeout":
        return (f"verification TIMED OUT after {r.seconds:.2f} s (this is not a violation: the property was neither "
                f"proved nor refuted; raise the timeout, e.g. --nncert-timeout). {r.message}")
    return f"verification returned {r.status!r} (neither proved nor refuted): {r.message}"


def assert_holds(net, prop, timeout: float | None = None, **kw: Any):
    """Asserts ``nncert.verify(net, prop)`` proves the property; returns the result."""
    from .verify import verify

    r = verify(net, prop, timeout=_default_timeout(timeout), **kw)
    if r.status != "holds":
        raise AssertionError(_describe(r, prop.bind(net.output_dim)))
    return r


def assert_robust(net, x: Any, eps: float, label: int | None = None, lo: float | None = 0.0, hi: float | None = 1.0,
                  timeout: float | None = None, **kw: Any):
    """Asserts every input within l-inf distance ``eps`` of ``x`` (clipped to [lo, hi]) keeps ``label``
    (default: the network's prediction at x) as the strict arg-max."""
    from .verify import Property

    if label is None:
        label = int(np.argmax(net(np.asarray(x, dtype=np.float64))))
    prop = Property.robustness(x, eps, label, lo=lo, hi=hi, n_outputs=net.output_dim)
    return assert_holds(net, prop, timeout=timeout, **kw)


def assert_lipschitz_below(net, L: float, norm: Any = 2, **kw: Any):
    """Asserts a certified Lipschitz upper bound of ``net`` (``nncert.lipschitz``) is below ``L``."""
    import nncert

    lipschitz = getattr(nncert, "lipschitz", None)
    if lipschitz is None:
        from .lipschitz import lipschitz  # type: ignore[no-redef]
    res = lipschitz(net, norm=norm, **kw)
    bound = float(res.bound)
    if not getattr(res, "certified", True):
        raise AssertionError(f"Lipschitz bound {bound:.6g} (method {res.method}) is not certified")
    if not bound < L:
        gap = bound - L
        lower = getattr(res, "lower_bound", None)
        msg = (f"certified Lipschitz bound {bound:.6g} (norm {norm}, method {res.method}) is not below {L:g} "
               f"(gap {gap:.3g})")
        if lower is not None:
            msg += f"; a lower bound on the true constant is {float(lower):.6g}"
        raise AssertionError(msg)
    return res


__all__ = ["assert_holds", "assert_robust", "assert_lipschitz_below"]
