"""Turning what users pass as a matrix (scipy sparse, dense numpy/torch, torch sparse, LinearOperator)
into what the core reads, with the cheap checks every solver needs: square, finite, symmetric,
b of the right length, and the singular pure-Neumann case."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from .._arrays import as_float_array, check_finite, is_torch_tensor
from ..errors import InvalidInputError, ShapeError


@dataclass
class Operator:
    n: int
    csr: sp.csr_matrix | None  # float64, canonical, contiguous arrays (None for a LinearOperator)
    matvec: Callable[[np.ndarray], np.ndarray]
    original: Any
    singular: bool = False  # constants span the null space (pure Neumann)

    def core_args(self) -> tuple:
        A = self.csr
        return (A.indptr, A.indices, A.data, A.shape[1])


def _to_csr(A: Any) -> sp.csr_matrix | sla.LinearOperator:
    if isinstance(A, sla.LinearOperator):
        return A
    if is_torch_tensor(A):
        import torch
        A = A.detach()
        if A.layout != torch.strided:
            A = A.to_sparse_csr().cpu()
            m = sp.csr_matrix((A.values().double().numpy(), A.col_indices().numpy(), A.crow_indices().numpy()),
                              shape=tuple(A.shape))
            return m
        A = A.cpu().numpy()
    if sp.issparse(A):
        if A.ndim != 2:
            raise ShapeError(f"A: expected a 2-D matrix, got shape {A.shape}")
        A = A if A.format == "csr" else A.tocsr()
    else:
        arr = as_float_array(A, "A", ndim=2)
        check_finite(arr, "A")
        A = sp.csr_matrix(arr)
    if A.dtype != np.float64:
        if A.dtype.kind not in "biuf":
            raise InvalidInputError(f"A: dtype {A.dtype} is not supported (expected real floating point)")
        A = A.astype(np.float64)
    if not A.has_canonical_format:
        A = A.copy()
        A.sum_duplicates()
    if A.indices.dtype != A.indptr.dtype:
        A.indices = A.indices.astype(np.int64)
        A.indptr = A.indptr.astype(np.int64)
    return A


def prepare(A: Any, *, check_symmetric: bool = True) -> Operator:
    grid = getattr(A, "nncert_grid", None)
    M = _to_csr(A)
    if M.shape[0] != M.shape[1]:
        raise ShapeError(f"A must be square, got shape {M.shape}")
    n = M.shape[0]
    if n == 0:
        raise InvalidInputError("A is empty (0x0)")
    if isinstance(M, sla.LinearOperator):
        def mv(v, M=M):
            y = np.asarray(M.matvec(v), dtype=np.float64).reshape(-1)
            if y.shape != (n,):
                raise ShapeError(f"the LinearOperator returned shape {y.shape} for a vector of length {n}")
            return y
        op = Operator(n, None, mv, A)
    else:
        if not np.all(np.isfinite(M.data)):
            k = int(np.flatnonzero(~np.isfinite(M.data))[0])
            row = int(np.searchsorted(M.indptr, k, side="right") - 1)
            raise InvalidInputError(f"A[{row}, {int(M.indices[k])}] is {M.data[k]} (A must be finite)")
        for name in ("indptr", "indices", "data"):
            arr = getattr(M, name)
            if not arr.flags.c_contiguous:
                setattr(M, name, np.ascontiguousarray(arr))
        op = Operator(n, M, M.dot, A)
        if grid is not None:
            M.nncert_grid = grid
    if check_symmetric:
        _check_symmetric(op)
    op.singular = _constant_null_space(op)
    return op


def _check_symmetric(op: Operator) -> None:
    """u.Av = v.Au for random u, v (two products: cheap, and catches any asymmetry with probability 1)."""
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(op.n), rng.standard_normal(op.n)
    Au, Av = op.matvec(u), op.matvec(v)
    lhs, rhs = float(u @ Av), float(v @ Au)
    scale = np.linalg.norm(u) * np.linalg.norm(Av) + np.linalg.norm(v) * np.linalg.norm(Au)
    if not np.isfinite(scale) or abs(lhs - rhs) > 1e-10 * max(scale, 1e-300):
        raise InvalidInputError(
            f"A is not symmetric (u.Av = {lhs:.6g} but v.Au = {rhs:.6g} for random u, v); "
            "CG and DCDM need a symmetric positive definite matrix")


def _constant_null_space(op: Operator) -> bool:
    ones = np.ones(op.n)
    s = op.matvec(ones)
    scale = float(np.abs(op.csr.data).max()) if op.csr is not None and op.csr.nnz else float(np.linalg.norm(op.matvec(
        np.random.default_rng(1).standard_normal(op.n)))) / np.sqrt(op.n)
    return bool(np.max(np.abs(s)) <= 1e-12 * max(scale, 1e-300))


def prepare_rhs(op: Operator, b: Any, x0: Any, tol: float
                ) -> tuple[np.ndarray, np.ndarray | None, float, bool, np.ndarray]:
    """(b to solve with, x0, inner tol, projected?, the original b): contiguous float64 vectors; for a singular (pure Neumann) A, b's constant component is
    projected out when it is negligible (then the inner tolerance is tightened so that the residual of the
    ORIGINAL b still meets tol), and rejected otherwise."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or not (0 < tol < 1):
        raise InvalidInputError(f"tol must be a number in (0, 1), got {tol!r}")
    bb = as_float_array(b, "b", ndim=(1, 2))
    if bb.ndim == 2:
        if 1 not in bb.shape:
            raise ShapeError(f"b must be a vector, got shape {bb.shape}")
        bb = bb.reshape(-1)
    if bb.shape[0] != op.n:
        raise ShapeError(f"b has length {bb.shape[0]} but A is {op.n}x{op.n}")
    check_finite(bb, "b")
    bb = np.ascontiguousarray(bb, dtype=np.float64)
    xx = None
    if x0 is not None:
        xx = as_float_array(x0, "x0", ndim=1)
        if xx.shape[0] != op.n:
            raise ShapeError(f"x0 has length {xx.shape[0]} but A is {op.n}x{op.n}")
        check_finite(xx, "x0")
        xx = np.ascontiguousarray(xx, dtype=np.float64)
    inner_tol = float(tol)
    projected = False
    original = bb
    if op.singular:
        bnorm = np.linalg.norm(bb)
        comp = abs(bb.sum()) / np.sqrt(op.n)
        if bnorm > 0 and comp > 0.1 * tol * bnorm:
            raise InvalidInputError(
                f"A is singular: constant vectors are in its null space (a pure-Neumann system), and b has a "
                f"component {comp:.3g} along them (relative {comp / bnorm:.3g}), so A x = b has no solution. "
                "Subtract b.mean() from b, or make the system nonsingular (a Dirichlet cell).")
        if bnorm > 0:
            bb = bb - bb.mean()
            inner_tol = 0.9 * tol
            projected = True
    return bb, xx, inner_tol, projected, original
