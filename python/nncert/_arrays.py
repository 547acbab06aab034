"""Input conversion shared by every entry point: numpy or torch in, checked, without copies where possible."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidInputError, ShapeError


def is_torch_tensor(x: Any) -> bool:
    t = type(x)
    return t.__module__.startswith("torch") and t.__name__ in ("Tensor", "Parameter")


def as_float_array(x: Any, name: str, *, ndim: int | tuple[int, ...] | None = None,
                   allow_float32: bool = False, copy: bool = False) -> np.ndarray:
    """Returns ``x`` as a float64 (or float32 when allowed) numpy array, checking dtype, shape and finiteness.

    Views are kept: a float64 array (C- or F-ordered, or strided) comes back as the same memory.
    Integer and boolean arrays are converted to float64; complex, object and string arrays are rejected.
    """
    if is_torch_tensor(x):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype == np.float64 or (allow_float32 and arr.dtype == np.float32):
        pass
    elif arr.dtype.kind in "biuf":
        arr = arr.astype(np.float64)
    else:
        raise InvalidInputError(f"{name}: dtype {arr.dtype} is not supported (expected a real floating-point array)")
    if ndim is not None:
        dims = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in dims:
            want = " or ".join(f"{d}-D" for d in dims)
            raise ShapeError(f"{name}: expected a {want} array, got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInputError(f"{name}: array is empty (shape {arr.shape})")
    if copy:
        arr = np.array(arr, dtype=arr.dtype, copy=True)
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise InvalidInputError(f"{name}{list(idx)} is {arr[idx]} ({name} must be finite)")


def frozen_copy(x: Any, name: str, *, ndim: int) -> np.ndarray:
    """A private, read-only, C-contiguous float64 copy (layer parameters are immutable once built)."""
    arr = as_float_array(x, name, ndim=ndim)
    arr = np.ascontiguousarray(arr, dtype=np.float64).copy()
    check_finite(arr, name)
    arr.setflags(write=False)
    return arr
