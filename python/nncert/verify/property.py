"""Safety properties: an input region and an unsafe set over outputs (and inputs)."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .._arrays import as_float_array, check_finite
from ..errors import InvalidInputError, ShapeError


class Property:
    """``holds`` iff no input in the region reaches the unsafe set.

    ``regions``: a list of boxes ``(lo, hi)``, each (n_inputs,), finite, lo <= hi (their union is the
    input region). ``unsafe``: a list of conjunctions ``(A_y, A_x, c)`` meaning
    ``A_y @ y + A_x @ x <= c`` row-wise, with A_y (k, n_outputs), A_x (k, n_inputs) or None; the unsafe
    set is their union. ``pairs`` (optional) restricts which (region, conjunction) combinations are
    checked (VNN-LIB files may tie an output condition to one input box); by default every combination.
    """

    def __init__(self, regions: Sequence[tuple[Any, Any]], unsafe: Sequence[tuple[Any, Any, Any]],
                 pairs: Sequence[tuple[int, int]] | None = None, name: str | None = None):
        if isinstance(regions, tuple) and len(regions) == 2 and not isinstance(regions[0], tuple):
            regions = [regions]
        if not regions:
            raise InvalidInputError("Property: needs at least one input box")
        if not unsafe:
            raise InvalidInputError("Property: needs at least one unsafe conjunction")
        self.regions: list[tuple[np.ndarray, np.ndarray]] = []
        for k, (lo, hi) in enumerate(regions):
            lo = np.array(as_float_array(lo, f"regions[{k}] lo", ndim=1), dtype=np.float64)
            hi = np.array(as_float_array(hi, f"regions[{k}] hi", ndim=1), dtype=np.float64)
            if lo.shape != hi.shape:
                raise ShapeError(f"Property: box {k} has lo of shape {lo.shape} but hi of shape {hi.shape}")
            for arr, nm in ((lo, "lo"), (hi, "hi")):
                if not np.all(np.isfinite(arr)):
                    i = int(np.argwhere(~np.isfinite(arr))[0][0])
                    raise InvalidInputError(f"Property: box {k} is unbounded in input {i} ({nm} = {arr[i]}); "
                                            f"the input region must be a bounded box")
            if np.any(lo > hi):
                i = int(np.argmax(lo > hi))
                raise InvalidInputError(f"Property: box {k} is empty in input {i} (lo {lo[i]} > hi {hi[i]})")
            self.regions.append((lo, hi))
        n = self.regions[0][0].shape[0]
        if any(r[0].shape[0] != n for r in self.regions):
            raise ShapeError("Property: boxes have different numbers of inputs")
        self.unsafe: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        m = None
        for k, conj in enumerate(unsafe):
            if len(conj) == 2:
                a_y, c = conj
                a_x = None
            else:
                a_y, a_x, c = conj
            a_y = np.array(np.atleast_2d(as_float_array(a_y, f"unsafe[{k}] A_y", ndim=(1, 2))), dtype=np.float64)
            c = np.array(np.atleast_1d(as_float_array(c, f"unsafe[{k}] c", ndim=(0, 1))), dtype=np.float64)
            a_x = np.zeros((a_y.shape[0], n)) if a_x is None else \
                np.array(np.atleast_2d(as_float_array(a_x, f"unsafe[{k}] A_x", ndim=(1, 2))), dtype=np.float64)
            m = a_y.shape[1] if m is None else m
            if a_y.shape[1] != m or a_x.shape != (a_y.shape[0], n) or c.shape != (a_y.shape[0],):
                raise ShapeError(f"Property: unsafe conjunction {k} has A_y {a_y.shape}, A_x {a_x.shape}, c {c.shape}; "
                                 f"expected (k, {m}), (k, {n}), (k,)")
            for arr, nm in ((a_y, "A_y"), (a_x, "A_x"), (c, "c")):
                check_finite(arr, f"unsafe[{k}] {nm}")
            self.unsafe.append((a_y, a_x, c))
        self.n_inputs = n
        self.n_outputs = int(m)
        if pairs is None:
            pairs = [(i, j) for i in range(len(self.regions)) for j in range(len(self.unsafe))]
        self.pairs = [(int(i), int(j)) for i, j in pairs]
        for i, j in self.pairs:
            if not (0 <= i < len(self.regions) and 0 <= j < len(self.unsafe)):
                raise InvalidInputError(f"Property: pair ({i}, {j}) is out of range")
        self.name = name

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_vnnlib(cls, path: str | os.PathLike) -> "Property":
        """Reads a VNN-LIB property (the VNN-COMP 2021 subset; see ``nncert.verify.vnnlib``)."""
        from .vnnlib import read_vnnlib
        return read_vnnlib(path)

    @classmethod
    def robustness(cls, x: Any, eps: float, label: int, lo: float | None = 0.0, hi: float | None = 1.0,
                   n_outputs: int | None = None) -> "Property":
        """l-inf robustness: every input within ``eps`` of ``x`` (clipped to [lo, hi]; None: no clipping)
        keeps ``label`` the strict arg-max. Unsafe: some other logit >= the label's.
        ``n_outputs`` defaults to ``label + 1`` only if given; pass it (or use verify(), which fills it in)."""
        x = np.array(as_float_array(x, "x", ndim=1), dtype=np.float64).ravel()
        check_finite(x, "x")
        eps = float(eps)
        if not np.isfinite(eps) or eps < 0:
            raise InvalidInputError(f"robustness: eps must be finite and >= 0, got {eps}")
        lo_b = x - eps if lo is None else np.maximum(x - eps, lo)
        hi_b = x + eps if hi is None else np.minimum(x + eps, hi)
        if np.any(lo_b > hi_b):
            raise InvalidInputError("robustness: x lies outside [lo, hi], so the clipped box is empty")
        label = int(label)
        prop = cls.__new__(cls)
        prop._robust = (lo_b, hi_b, label)
        if n_outputs is not None:
            return _robust_property(lo_b, hi_b, label, int(n_outputs))
        prop.regions = [(lo_b, hi_b)]
        prop.unsafe = []
        prop.pairs = []
        prop.n_inputs = x.shape[0]
        prop.n_outputs = None
        prop.name = f"robustness(label={label}, eps={eps:g})"
        return prop

    def bind(self, n_outputs: int) -> "Property":
        """This property with the output count fixed (robustness properties are built lazily)."""
        rob = getattr(self, "_robust", None)
        if rob is not None and not self.unsafe:
            return _robust_property(*rob, n_outputs)
        return self

    # ------------------------------------------------------------------ checks
    def conj_values(self, j: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``A_y y + A_x x - c`` for conjunction j (all <= 0 means unsafe). x, y may be batches."""
        a_y, a_x, c = self.unsafe[j]
        return y @ a_y.T + x @ a_x.T - c

    def in_region(self, i: int, x: np.ndarray) -> bool:
        lo, hi = self.regions[i]
        return bool(np.all(x >= lo) and np.all(x <= hi))

    def __repr__(self) -> str:
        nm = f"{self.name!r}, " if self.name else ""
        return (f"Property({nm}{self.n_inputs} inputs, {self.n_outputs} outputs, {len(self.regions)} box(es), "
                f"{len(self.unsafe)} unsafe conjunction(s))")


def _robust_property(lo: np.ndarray, hi: np.ndarray, label: int, m: int) -> Property:
    if not 0 <= label < m:
        raise InvalidInputError(f"robustness: label {label} is out of range for {m} outputs")
    unsafe = []
    for j in range(m):
        if j != label:
            a = np.zeros((1, m))
            a[0, label], a[0, j] = 1.0, -1.0
            unsafe.append((a, None, np.zeros(1)))
    p = Property([(lo, hi)], unsafe, name=f"robustness(label={label})")
    return p
