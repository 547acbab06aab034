"""Primal-dual interior-point method for the exact convex program with the squared loss.

The program (one output; X (n, d) with the intercept column, D (n, P) 0/1, S = 2D - 1)

    min 0.5 ||sum_i D_i X (v_i - w_i) - y||^2 + beta sum_j t_j
    s.t. S_i o (X v_i) >= 0,  S_i o (X w_i) >= 0,  (t_j, u_j) in the second-order cone (u = [V, W], j < 2P)

is a conic QP  min 0.5 x'Px + q'x  s.t.  Gx + s = 0,  s in K  with n * 2P linear and 2P second-order cone
constraints. It is solved by the infeasible primal-dual path-following method with Nesterov-Todd scaling and
Mehrotra's predictor-corrector (the method of CVXOPT's coneqp, Vandenberghe 2010), with a Newton system that
uses the program's structure instead of a generic sparse factorisation:

- eliminating the cone multipliers leaves  P + G'W^{-2}G  on x = (t, u): per group j a (d+1) x (d+1) block
  (the scaled linear constraints give X' diag(z_j / s_j) X, batched over groups as one GEMM with the
  row-wise Kronecker products of X, plus the second-order cone's W_j^{-2}) and the loss term F'F, F = [G_D, -G_D],
  G_D = [D_1 X, ..., D_P X], which never changes;
- t_j is eliminated per group (a Schur complement B_j on u_j);
- the loss sees v - w only, so with a = v - w the system for (v, w) reduces to  (K + E^{-1}) da = r  with
  K = G_D'G_D (formed once) and E^{-1}_i = Bv_i (Bv_i + Bw_i)^{-1} Bw_i: one dense Pd x Pd Cholesky per
  Newton step, or, when that is cheaper, its Woodbury form through the n x n matrix I + G_D E G_D'.

A Newton step costs one of those Cholesky factorisations plus O(n d^2 P) for the blocks, and the method takes
~20 steps at n = 2,000 and ~45-70 at n = 20,000-60,000 (the many linear cones limit the steps); the ADMM takes
thousands of cheaper iterations to the same accuracy (bench/README.md). Numpy/LAPACK does the dense work; the hot operations are single BLAS/LAPACK calls.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.linalg as sla

from ..errors import SolverError
from .formulation import predictions

log = logging.getLogger("nncert.convex")

# Fraction of the step to the cone boundary (Mehrotra's safeguard).
STEP_FRACTION = 0.99
# Steps without a better iterate before the method stops as stalled (counted once the residuals are small: early
# on the gap may grow while they fall).
STALL_STEPS = 4
# Above this many doubles the row-wise products x_a x_b (a <= b; n x d(d+1)/2) are not stored but formed per
# block of rows at every Newton step.
KRON_MAX_DOUBLES = 1e8
# Doubles per block of X (x) X rows when the whole is not stored.
KRON_BLOCK_DOUBLES = 4e6
# Products below this many flops run on one BLAS thread (see group_grams).
PARALLEL_MIN_FLOPS = 2e9
# Rows per block when K = G_D'G_D and the group blocks are accumulated over blocks of samples (memory O(rows Pd)).
ROW_BLOCK = 4096


class _BlasThreads:
    """The run keeps BLAS single-threaded, except in the large factorisations: on the 2-core machine this was
    measured on, thread start-up on the many small products cost more than the second core gave back (n = 2000,
    d = 50, P = 50: 4.6 s single-threaded against 5.6-5.9 s with two threads; the Cholesky alone is 1.6x faster
    with two). Without threadpoolctl nothing is changed."""

    def __init__(self):
        try:
            from threadpoolctl import ThreadpoolController
            self.ctl = ThreadpoolController()
            self.threads = max([i["num_threads"] for i in self.ctl.info() if i["user_api"] == "blas"], default=1)
        except Exception:  # noqa: BLE001 - missing or unusable: leave the BLAS as it is
            self.ctl, self.threads = None, 1

    def limit(self, threads: int):
        if self.ctl is None:
            return contextlib.nullcontext()
        return self.ctl.limit(limits=threads, user_api="blas")

    def serial(self):
        return self.limit(1)

    def parallel(self):
        return self.limit(self.threads)


@dataclass
class IpmResult:
    v: np.ndarray
    w: np.ndarray
    status: str
    iterations: int
    history: np.ndarray  # rows: iter, primal objective, primal residual, dual residual, relative gap, seconds
    gap: float
    seconds: float
    system: str
    stats: dict = field(default_factory=dict)
    z: np.ndarray | None = None  # multipliers of the linear cone constraints (n, 2P), in the data's units


def _soc_scaling(s: np.ndarray, z: np.ndarray):
    """Nesterov-Todd scaling of each second-order cone (rows of s, z: (m, k) with s[:, 0] the cone's axis).

    Returns (beta, wbar) with W = beta [[w0, w1'], [w1, I + w1 w1'/(1 + w0)]], W z = W^{-1} s = lambda."""
    sJs = s[:, 0] ** 2 - np.sum(s[:, 1:] ** 2, axis=1)
    zJz = z[:, 0] ** 2 - np.sum(z[:, 1:] ** 2, axis=1)
    if np.any(sJs <= 0) or np.any(zJz <= 0):
        raise FloatingPointError("iterate left the second-order cone")
    sn = s / np.sqrt(sJs)[:, None]
    zn = z / np.sqrt(zJz)[:, None]
    gamma = np.sqrt(0.5 * (1.0 + np.sum(sn * zn, axis=1)))
    wbar = sn.copy()
    wbar[:, 0] += zn[:, 0]
    wbar[:, 1:] -= zn[:, 1:]
    wbar /= (2.0 * gamma)[:, None]
    beta = (sJs / zJz) ** 0.25
    return beta, wbar


def _soc_apply(beta: np.ndarray, wbar: np.ndarray, x: np.ndarray, inverse: bool = False) -> np.ndarray:
    """W x (or W^{-1} x) for each cone, without forming W."""
    w0, w1 = wbar[:, 0], wbar[:, 1:]
    x0, x1 = x[:, 0], x[:, 1:]
    sgn = -1.0 if inverse else 1.0
    w1x1 = np.sum(w1 * x1, axis=1)
    out = np.empty_like(x)
    out[:, 0] = w0 * x0 + sgn * w1x1
    out[:, 1:] = x1 + w1 * (sgn * x0 + w1x1 / (1.0 + w0))[:, None]
    scale = 1.0 / beta if inverse else beta
    return out * scale[:, None]


def _soc_matrix(beta: np.ndarray, wbar: np.ndarray, inverse: bool = False) -> np.ndarray:
    """The matrices W (or W^{-1}), (m, k, k)."""
    m, k = wbar.shape
    w0, w1 = wbar[:, 0], wbar[:, 1:]
    sgn = -1.0 if inverse else 1.0
    M = np.zeros((m, k, k))
    M[:, 0, 0] = w0
    M[:, 0, 1:] = sgn * w1
    M[:, 1:, 0] = sgn * w1
    M[:, 1:, 1:] = np.eye(k - 1)[None] + w1[:, :, None] * w1[:, None, :] / (1.0 + w0)[:, None, None]
    scale = 1.0 / beta if inverse else beta
    return M * scale[:, None, None]


def _soc_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jordan product a o b = (a'b, a0 b1 + b0 a1) per cone."""
    out = np.empty_like(a)
    out[:, 0] = np.sum(a * b, axis=1)
    out[:, 1:] = a[:, :1] * b[:, 1:] + b[:, :1] * a[:, 1:]
    return out


def _soc_divide(lam: np.ndarray, v: np.ndarray) -> np.ndarray:
    """x with lam o x = v per cone (lam in the interior)."""
    l0, l1 = lam[:, 0], lam[:, 1:]
    det = l0 ** 2 - np.sum(l1 ** 2, axis=1)
    x = np.empty_like(v)
    x[:, 0] = (l0 * v[:, 0] - np.sum(l1 * v[:, 1:], axis=1)) / det
    x[:, 1:] = (v[:, 1:] - x[:, :1] * l1) / l0[:, None]
    return x


def _soc_step(s: np.ndarray, ds: np.ndarray) -> float:
    """Largest alpha with s + alpha ds in the second-order cones (inf when unbounded)."""
    a = ds[:, 0] ** 2 - np.sum(ds[:, 1:] ** 2, axis=1)
    b = s[:, 0] * ds[:, 0] - np.sum(s[:, 1:] * ds[:, 1:], axis=1)
    c = s[:, 0] ** 2 - np.sum(s[:, 1:] ** 2, axis=1)
    best = np.inf
    for ai, bi, ci in zip(a, b, c):
        # Roots of a t^2 + 2 b t + c; the first positive one is where the ray leaves the cone (c > 0).
        if abs(ai) <= 1e-300:
            if bi < 0:
                best = min(best, -ci / (2.0 * bi))
            continue
        disc = bi * bi - ai * ci
        if disc < 0:
            continue
        q = -(bi + np.copysign(np.sqrt(disc), bi))
        for r in ((q / ai) if ai != 0 else np.inf, (ci / q) if q != 0 else np.inf):
            if r > 0:
                best = min(best, r)
    return best


def _spd_inverse(B: np.ndarray) -> np.ndarray:
    """(Regularised) inverses of a stack of symmetric positive definite matrices, Jacobi-scaled first (late in the method a
    block's diagonal spans many orders of magnitude, which an unscaled inverse reports as singular)."""
    r = 1.0 / np.sqrt(np.einsum("pii->pi", B))
    Bs = B * r[:, :, None] * r[:, None, :]
    # A relative regularisation at rounding level keeps numerically singular blocks invertible; the iterative
    # refinement against the exact operator removes its effect on the Newton direction.
    Bs[:, np.arange(B.shape[1]), np.arange(B.shape[1])] += 1e-13
    inv = np.linalg.inv(Bs) * r[:, :, None] * r[:, None, :]
    return 0.5 * (inv + np.swapaxes(inv, 1, 2))


def _lp_step(s: np.ndarray, ds: np.ndarray) -> float:
    worst = float(np.min(ds / s))
    return np.inf if worst >= 0 else -1.0 / worst


def dual_lower_bound(X: np.ndarray, y: np.ndarray, D: np.ndarray, beta: float, V: np.ndarray, W: np.ndarray,
                     z: np.ndarray) -> float:
    """A lower bound on the optimum of the program, from any multipliers z >= 0 of the linear cone constraints.

    The dual of the program is  max_lam  lam'y - ||lam||^2 / 2  s.t.  ||F_j'lam + A_j'z_j|| <= beta,  z_j >= 0,
    with F_j = +-D_i X the group's loss columns and A_j = (2D_i - I) X its constraint rows (the group norms'
    conjugates). lam = y - (predictions of V, W) and the solver's z, both divided by kappa = the largest
    ||F_j'lam + A_j'z_j|| / beta when that exceeds 1 (the constraints are homogeneous), are dual feasible, so
    their dual value bounds every feasible point's objective from below: a certificate computed after the solver
    returns, with nothing taken from its own convergence test."""
    P = D.shape[1]
    lam = y - predictions(X, D, V, W)
    z = np.maximum(z, 0.0)
    S = 2.0 * D - 1.0
    G = X.T @ (D * lam[:, None])  # F_j'lam for the v groups; the w groups have its negative
    Cv = G + X.T @ (S * z[:, :P])
    Cw = -G + X.T @ (S * z[:, P:])
    kappa = max(1.0, float(np.max(np.linalg.norm(np.hstack([Cv, Cw]), axis=0), initial=0.0)) / beta)
    lam = lam / kappa
    return float(lam @ y - 0.5 * lam @ lam)


def choose_system(n: int, d: int, P: int, system: str = "auto", memory_limit: float = np.inf) -> tuple[str, float]:
    """(system, bytes): the Newton system's form and the memory the solver needs.

    "pattern": the Pd x Pd matrix K + E^{-1} ((Pd)^3 / 3 flops per Newton step); "sample": its Woodbury form
    through an n x n matrix (n^2 Pd + n^3 / 3). "auto" takes the cheaper one that fits in memory_limit bytes."""
    pd = P * d
    nsym = d * (d + 1) // 2
    kron = n * nsym if n * nsym <= KRON_MAX_DOUBLES else 0
    block = min(n, ROW_BLOCK) * pd + KRON_BLOCK_DOUBLES
    mem = {"pattern": 8.0 * (2 * pd * pd + block + kron), "sample": 8.0 * (2 * n * n + 2 * n * pd + kron)}
    flops = {"pattern": pd ** 3 / 3.0, "sample": n * n * pd + n ** 3 / 3.0}
    if system not in ("auto", "pattern", "sample"):
        raise ValueError(f"system must be 'auto', 'pattern' or 'sample', got {system!r}")
    options = [system] if system != "auto" else sorted(flops, key=flops.get)
    for s in options:
        if mem[s] <= memory_limit:
            return s, mem[s]
    s = min(options, key=mem.get)
    raise MemoryError(f"the interior-point Newton system ({s}: {'Pd x Pd' if s == 'pattern' else 'n x n'}) "
                      f"needs {mem[s] / 2**30:.2f} GiB, more than the {memory_limit / 2**30:.2f} GiB available")


class SquaredLossIPM:
    """The structured interior-point solver for one output (see the module docstring)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, D: np.ndarray, beta: float, system: str = "auto",
                 memory_limit: float = np.inf, correctors: int = 2):
        # The method works on y / c (unit root-mean-square targets) with beta / c: the cones are unchanged,
        # u = c u' and the objective is c^2 times the scaled one, so its tolerances (relative to
        # max(1, |objective|)) mean the same for targets of any size (unscaled, targets of size 1e-5 stopped at an
        # absolute gap of 1e-7, three orders of magnitude above the optimum). X is not rescaled: a uniform scale
        # would also shrink the intercept column, and per-column scales change the group norms.
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.D = np.ascontiguousarray(D, dtype=np.float64)
        n, d = self.X.shape
        P = self.D.shape[1]
        self.n, self.d, self.P = n, d, P
        self.beta_given = float(beta)
        self.set_targets(y)
        self.correctors = int(correctors)
        self.blas = _BlasThreads()
        self.S2 = np.hstack([2.0 * self.D - 1.0, 2.0 * self.D - 1.0])  # (n, 2P): sign of group j's rows
        self.system, self.memory_bytes = choose_system(n, d, P, system, memory_limit)
        system = self.system
        if system == "pattern":
            # Lower triangle of K = G_D'G_D, accumulated over blocks of rows of G_D = [D_1 X, ..., D_P X].
            self.K = None
            for lo in range(0, n, ROW_BLOCK):
                GDb = self._pattern_rows(lo, min(n, lo + ROW_BLOCK))
                if self.K is None:
                    self.K = sla.blas.dsyrk(1.0, GDb, trans=1, lower=1)
                else:
                    self.K = sla.blas.dsyrk(1.0, GDb, beta=1.0, c=self.K, trans=1, lower=1, overwrite_c=1)
            self.GDt = None
        else:
            self.K = None
            # G_D' as (P, d, n): row block p is (D_p X)'.
            self.GDt = np.ascontiguousarray((self.X.T[None, :, :] * self.D.T[:, None, :]))
        # Row-wise products x_k,a x_k,b for a <= b: X' diag(w) X for every group is one GEMM with them.
        self.sym = np.triu_indices(d)
        self.kron = self._kron_rows(0, n) if n * len(self.sym[0]) <= KRON_MAX_DOUBLES else None

    def set_targets(self, y: np.ndarray) -> "SquaredLossIPM":
        """Another output's targets: K and the row products depend on X and the patterns only, so several
        outputs share them."""
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (self.n,):
            raise ValueError(f"targets must have shape ({self.n},), got {y.shape}")
        rms = float(np.sqrt(np.mean(y * y))) if y.size else 0.0
        self.yscale = rms if np.isfinite(rms) and rms > 0 else 1.0
        self.y = y / self.yscale
        self.beta = self.beta_given / self.yscale
        return self

    def _pattern_rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo:hi of G_D = [D_1 X, ..., D_P X], (hi - lo, Pd)."""
        Db, Xb = self.D[lo:hi], self.X[lo:hi]
        return (Db[:, :, None] * Xb[:, None, :]).reshape(hi - lo, self.P * self.d)

    # -- operators -------------------------------------------------------------------------------------------
    def predict(self, U: np.ndarray) -> np.ndarray:
        """F u = sum_i D_i X (v_i - w_i)."""
        return predictions(self.X, self.D, U[:, :self.P], U[:, self.P:])

    def loss_gradient(self, r: np.ndarray) -> np.ndarray:
        g = self.X.T @ (self.D * r[:, None])
        return np.hstack([g, -g])

    def _kron_rows(self, lo: int, hi: int) -> np.ndarray:
        Xb = self.X[lo:hi]
        return Xb[:, self.sym[0]] * Xb[:, self.sym[1]]

    def group_grams(self, omega: np.ndarray) -> np.ndarray:
        """X' diag(omega_j) X for every column j of omega (n, m): (m, d, d)."""
        d = self.d
        # Two BLAS threads only for a large product: after a parallel call the idle worker keeps spinning for a
        # while, which slowed the serial work that follows (n = 2000, P = 50: 4.9 s instead of 3.4 s).
        big = 2.0 * omega.shape[1] * self.n * len(self.sym[0]) >= PARALLEL_MIN_FLOPS
        with (self.blas.parallel() if big else contextlib.nullcontext()):
            if self.kron is not None:
                G = omega.T @ self.kron
            else:
                G = np.zeros((omega.shape[1], len(self.sym[0])))
                rows = max(16, int(KRON_BLOCK_DOUBLES // len(self.sym[0])))
                for lo in range(0, self.n, rows):
                    G += omega[lo:lo + rows].T @ self._kron_rows(lo, min(self.n, lo + rows))
        out = np.empty((omega.shape[1], d, d))
        out[:, self.sym[0], self.sym[1]] = G
        out[:, self.sym[1], self.sym[0]] = G
        return out

    # -- Newton system ---------------------------------------------------------------------------------------
    def factor(self, omega: np.ndarray, Winv2: np.ndarray):
        """Factor P + G' W^{-2} G for LP scalings omega (n, 2P) and second-order cone blocks Winv2 (2P, d+1, d+1)."""
        P, d = self.P, self.d
        M = self.group_grams(omega)
        M += Winv2[:, 1:, 1:]
        a = Winv2[:, 0, 0]
        c = Winv2[:, 1:, 0]
        B = M - c[:, :, None] * c[:, None, :] / a[:, None, None]  # t eliminated
        Bv, Bw = B[:P], B[P:]
        Cinv = _spd_inverse(Bv + Bw)
        Einv = Bv @ Cinv @ Bw
        Einv = 0.5 * (Einv + np.swapaxes(Einv, 1, 2))
        fac = dict(a=a, c=c, Bv=Bv, Bw=Bw, Cinv=Cinv)
        if self.system == "pattern":
            # K is Fortran-ordered (from dsyrk); keeping H so spares LAPACK a copy of the Pd x Pd matrix.
            H = self.K.copy(order="F")
            Hv = H.reshape(d, P, d, P, order="F")  # Hv[a, p, b, q] = H[p d + a, q d + b], a view
            idx = np.arange(P)
            Hv[:, idx, :, idx] += Einv
            with self.blas.parallel():
                fac["chol"] = sla.cho_factor(H, lower=True, overwrite_a=True, check_finite=False)
        else:
            # (K + E^{-1})^{-1} = E - E GD' (I + GD E GD')^{-1} GD E with E = blockdiag(Einv_i^{-1}).
            # E_i = Bv_i^{-1} + Bw_i^{-1}: a sum of positive definite terms (inverting Einv instead loses digits
            # late in the method, when the blocks' scales spread).
            E = _spd_inverse(Bv) + _spd_inverse(Bw)
            lam, Q = np.linalg.eigh(E)  # E_i = L_i L_i' (eigh: rounding can leave E_i barely indefinite)
            L = Q * np.sqrt(np.maximum(lam, 0.0))[:, None, :]
            # G_D L as its transpose (P, d, n) = (Pd, n), C-ordered: the n x n product is then a dsyrk on a
            # Fortran-ordered (n, Pd) view, with no copy.
            GLt = np.matmul(np.swapaxes(L, 1, 2), self.GDt).reshape(P * d, self.n)
            with self.blas.parallel():
                Cn = sla.blas.dsyrk(1.0, GLt.T, lower=1)
                Cn[np.diag_indices_from(Cn)] += 1.0
                fac["chol"] = sla.cho_factor(Cn, lower=True, overwrite_a=True, check_finite=False)
            fac["E"] = E
        return fac

    def _solve_pattern_system(self, fac, r: np.ndarray) -> np.ndarray:
        """(K + E^{-1})^{-1} r for r (P, d)."""
        P, d = self.P, self.d
        if self.system == "pattern":
            return sla.cho_solve(fac["chol"], r.reshape(-1), check_finite=False).reshape(P, d)
        E = fac["E"]
        Er = np.einsum("pkl,pl->pk", E, r)
        GDt = self.GDt.reshape(P * d, self.n)
        t = GDt.T @ Er.reshape(-1)
        t = sla.cho_solve(fac["chol"], t, check_finite=False)
        back = (GDt @ t).reshape(P, d)
        return Er - np.einsum("pkl,pl->pk", E, back)

    def solve(self, fac, bt: np.ndarray, bu: np.ndarray):
        """(dt, du) with (P + G'W^{-2}G)(dt, du) = (bt, bu); bt (2P,), bu (d, 2P)."""
        P = self.P
        a, c = fac["a"], fac["c"]
        bu_t = bu.T - c * (bt / a)[:, None]  # (2P, d)
        b1, b2 = bu_t[:P], bu_t[P:]
        Cinv, Bv, Bw = fac["Cinv"], fac["Bv"], fac["Bw"]
        Cb1 = np.einsum("pkl,pl->pk", Cinv, b1)
        Cb2 = np.einsum("pkl,pl->pk", Cinv, b2)
        r = np.einsum("pkl,pl->pk", Bw, Cb1) - np.einsum("pkl,pl->pk", Bv, Cb2)
        da = self._solve_pattern_system(fac, r)
        dv = np.einsum("pkl,pl->pk", Cinv, b1 + b2 + np.einsum("pkl,pl->pk", Bw, da))
        dw = dv - da
        du = np.vstack([dv, dw])  # (2P, d)
        dt = (bt - np.sum(c * du, axis=1)) / a
        return dt, du.T.copy()

    def apply(self, omega: np.ndarray, Winv2: np.ndarray, dt: np.ndarray, du: np.ndarray):
        """(P + G'W^{-2}G)(dt, du) through the operators (for iterative refinement)."""
        g = self.loss_gradient(self.predict(du))
        g += self.X.T @ (omega * (self.X @ du))
        tu = np.hstack([dt[:, None], du.T])
        wt = np.einsum("jkl,jl->jk", Winv2, tu)
        return wt[:, 0], g + wt[:, 1:].T

    def refined_solve(self, fac, omega, Winv2, bt, bu, steps: int = 3):
        """solve() followed by up to ``steps`` rounds of iterative refinement against the operator (the factor is
        of an ill-conditioned matrix late in the method; refinement restores the digits the elimination lost)."""
        dt, du = self.solve(fac, bt, bu)
        if steps == 0:
            return dt, du
        bnorm = np.sqrt(np.sum(bt ** 2) + np.sum(bu ** 2))
        for _ in range(steps):
            at, au = self.apply(omega, Winv2, dt, du)
            et, eu = bt - at, bu - au
            if np.sqrt(np.sum(et ** 2) + np.sum(eu ** 2)) <= 1e-13 * bnorm:
                break
            ct, cu = self.solve(fac, et, eu)
            dt, du = dt + ct, du + cu
        return dt, du

    def hessian_dense(self, omega: np.ndarray, Winv2: np.ndarray) -> np.ndarray:
        """P + G'W^{-2}G as a dense matrix on (t_0, u_0, t_1, u_1, ...) (tests only)."""
        n, d, P = self.n, self.d, self.P
        k = d + 1
        H = np.zeros((2 * P * k, 2 * P * k))
        F = np.zeros((n, 2 * P * k))
        for j in range(2 * P):
            i = j % P
            sign = 1.0 if j < P else -1.0
            F[:, j * k + 1:(j + 1) * k] = sign * self.D[:, i:i + 1] * self.X
            blk = Winv2[j].copy()
            blk[1:, 1:] += (self.X * omega[:, j:j + 1]).T @ self.X
            H[j * k:(j + 1) * k, j * k:(j + 1) * k] += blk
        return H + F.T @ F

    # -- the method ------------------------------------------------------------------------------------------
    def run(self, tol: float = 1e-8, feastol: float = 1e-8, max_iter: int = 100, time_limit: float = np.inf,
            callback: Callable | None = None) -> IpmResult:
        # Late in a degenerate run (cones without interior) a direction can overflow; that is detected below and
        # the best iterate returned, so numpy's warnings would only be noise.
        with self.blas.serial(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._run(tol, feastol, max_iter, time_limit, callback)

    def _run(self, tol, feastol, max_iter, time_limit, callback) -> IpmResult:
        t_start = time.perf_counter()
        n, d, P = self.n, self.d, self.P
        m = 2 * P
        k = d + 1
        X, S2, beta = self.X, self.S2, self.beta
        degree = n * m + m
        e_soc = np.zeros((m, k))
        e_soc[:, 0] = 1.0

        def G_apply(T, U):
            """G x: (LP part (n, m), SOC part (m, k))."""
            return -S2 * (X @ U), -np.hstack([T[:, None], U.T])

        def GT_apply(zl, zq):
            """G' z: (t part (m,), u part (d, m))."""
            return -zq[:, 0], -(X.T @ (S2 * zl)) - zq[:, 1:].T

        # Initial point (CVXOPT's): solve with W = I, then shift s and z into the cones.
        fac = self.factor(np.ones((n, m)), np.broadcast_to(np.eye(k), (m, k, k)).copy())
        q_t = np.full(m, beta)
        q_u = self.loss_gradient(-self.y)  # q = -F'y
        T, U = self.solve(fac, -q_t, -q_u)
        gl, gq = G_apply(T, U)
        sl, sq = -gl, -gq
        zl, zq = gl.copy(), gq.copy()

        def shift(vl, vq):
            lo = min(float(vl.min()), float(np.min(vq[:, 0] - np.linalg.norm(vq[:, 1:], axis=1))))
            if lo < 1e-8 * max(1.0, float(np.abs(vl).max())):
                delta = 1.0 + max(0.0, -lo)
                vl = vl + delta
                vq = vq + delta * e_soc
            return vl, vq

        sl, sq = shift(sl, sq)
        zl, zq = shift(zl, zq)

        hist = []
        status = "max_iter"
        steps = 0
        best = None  # (score, step, T, U, relgap, zl): the returned iterate
        n_corr = 0
        q_norm = max(1.0, float(np.sqrt(np.sum(q_u ** 2) + np.sum(q_t ** 2))))
        for _ in range(max_iter + 1):
            r = self.predict(U) - self.y
            pobj = 0.5 * float(r @ r) + beta * float(T.sum())
            # Residuals: r_x = P x + q + G'z, r_z = G x + s.
            gt, gu = GT_apply(zl, zq)
            rx_t = q_t + gt
            rx_u = self.loss_gradient(r) + gu
            gl, gq = G_apply(T, U)
            rz_l = gl + sl
            rz_q = gq + sq
            gap = float(np.sum(sl * zl) + np.sum(sq * zq))
            mu = gap / degree
            pres = float(np.sqrt(np.sum(rz_l ** 2) + np.sum(rz_q ** 2))) / max(
                1.0, float(np.sqrt(np.sum(sl ** 2) + np.sum(sq ** 2))))
            dres = float(np.sqrt(np.sum(rx_u ** 2) + np.sum(rx_t ** 2))) / q_norm
            relgap = gap / max(1.0, abs(pobj))
            elapsed = time.perf_counter() - t_start
            obj_given = pobj * self.yscale ** 2
            hist.append((steps, obj_given, pres, dres, relgap, elapsed))
            if callback is not None:
                callback(steps, obj_given, pres, dres)
            score = max(relgap / tol, pres / feastol, dres / feastol)
            if best is None or score < best[0]:
                best = (score, steps, T, U, relgap, zl)
            if score <= 1.0:
                status = "converged"
                break
            if max(pres, dres) <= 100 * feastol and steps - best[1] >= STALL_STEPS:
                # Late in the method rounding can stop progress short of tol; the best iterate is returned.
                status = "stalled"
                break
            if elapsed > time_limit:
                status = "time_limit"
                break
            if steps == max_iter:
                break
            # Iterative refinement once the scalings spread (relative gap below 1e-2); earlier
            # the elimination loses no digits that matter.
            refine = 3 if relgap < 1e-2 else 0
            # Scalings.
            try:
                beta_q, wbar = _soc_scaling(sq, zq)
            except FloatingPointError:
                status = "numerical_error"
                break
            omega = zl / sl
            lam_l = np.sqrt(sl * zl)
            lam_q = _soc_apply(beta_q, wbar, zq)
            Wq_inv = _soc_matrix(beta_q, wbar, inverse=True)
            Winv2 = Wq_inv @ Wq_inv
            try:
                fac = self.factor(omega, Winv2)
            except (np.linalg.LinAlgError, sla.LinAlgError):
                status = "numerical_error"
                break

            def direction(ds_l, ds_q):
                # x-equation right-hand side: -r_x - G'[W^{-2} r_z + W^{-1}(lam \ ds)].
                vl = omega * rz_l + ds_l / sl
                vq = np.einsum("jkl,jl->jk", Winv2, rz_q) + _soc_apply(beta_q, wbar, _soc_divide(lam_q, ds_q),
                                                                      inverse=True)
                gt_, gu_ = GT_apply(vl, vq)
                dT, dU = self.refined_solve(fac, omega, Winv2, -rx_t - gt_, -rx_u - gu_, steps=refine)
                gdl, gdq = G_apply(dT, dU)
                # ds from the linearised equality G dx + ds = -r_z, dz from the linearised complementarity
                # lam o (W dz + W^{-T} ds) = ds_target: the algebraically equal W^{-2}(G dx + r_z + ...) loses
                # its digits to cancellation once the scalings grow.
                dsl = -rz_l - gdl
                dsq = -rz_q - gdq
                dzl = (ds_l - zl * dsl) / sl
                dzq = _soc_apply(beta_q, wbar, _soc_divide(lam_q, ds_q)
                                 - _soc_apply(beta_q, wbar, dsq, inverse=True), inverse=True)
                return dT, dU, dsl, dsq, dzl, dzq

            def max_step(dsl, dsq, dzl, dzq):
                return min(_lp_step(sl, dsl), _lp_step(zl, dzl), _soc_step(sq, dsq), _soc_step(zq, dzq))

            # Predictor.
            ds_l = -lam_l * lam_l
            ds_q = -_soc_product(lam_q, lam_q)
            dT, dU, dsl, dsq, dzl, dzq = direction(ds_l, ds_q)
            alpha = min(1.0, max_step(dsl, dsq, dzl, dzq))
            mu_aff = float(np.sum((sl + alpha * dsl) * (zl + alpha * dzl))
                           + np.sum((sq + alpha * dsq) * (zq + alpha * dzq))) / degree
            sigma = min(1.0, max(0.0, mu_aff / mu)) ** 3
            # Corrector: ds = -lam o lam - (W^{-T} ds_a) o (W dz_a) + sigma mu e.
            ds_l = -lam_l * lam_l - (dsl * np.sqrt(omega)) * (dzl / np.sqrt(omega)) + sigma * mu
            ds_q = (-_soc_product(lam_q, lam_q)
                    - _soc_product(_soc_apply(beta_q, wbar, dsq, inverse=True), _soc_apply(beta_q, wbar, dzq))
                    + sigma * mu * e_soc)
            dirn = direction(ds_l, ds_q)
            alpha = min(1.0, STEP_FRACTION * max_step(*dirn[2:]))
            # Gondzio's centrality correctors on the linear cones (they limit the step in the middle of the run):
            # push the complementarity products of the trial point (step 1.5 alpha) into [0.1, 10] sigma mu,
            # reusing the factorisation; kept while the step grows.
            for _ in range(self.correctors):
                if alpha >= 0.99:
                    break
                trial = min(1.0, 1.5 * alpha + 0.1)
                v = (sl + trial * dirn[2]) * (zl + trial * dirn[4])
                lo, hi = 0.1 * sigma * mu, 10.0 * sigma * mu
                corr = np.clip(v, lo, hi) - v
                np.maximum(corr, -hi, out=corr)
                cand = direction(ds_l + corr, ds_q)
                a_new = min(1.0, STEP_FRACTION * max_step(*cand[2:]))
                if a_new < 1.01 * alpha:
                    break
                dirn, alpha, ds_l = cand, a_new, ds_l + corr
                n_corr += 1
            dT, dU, dsl, dsq, dzl, dzq = dirn
            if not (np.isfinite(alpha) and all(np.all(np.isfinite(a)) for a in dirn)):
                status = "numerical_error"
                break
            log.debug("IPM step %d: sigma %.3g, step %.3g", steps, sigma, alpha)
            T = T + alpha * dT
            U = U + alpha * dU
            sl, sq = sl + alpha * dsl, sq + alpha * dsq
            zl, zq = zl + alpha * dzl, zq + alpha * dzq
            steps += 1
        _, _, T, U, relgap, zl = best
        if not np.all(np.isfinite(U)):
            raise SolverError("the interior-point method produced non-finite weights")
        U = U * self.yscale
        return IpmResult(v=U[:, :P].copy(), w=U[:, P:].copy(), status=status, iterations=steps,
                         history=np.array(hist), gap=relgap,
                         seconds=time.perf_counter() - t_start, system=self.system, stats={"centrality_correctors": n_corr},
                         z=zl * self.yscale)
