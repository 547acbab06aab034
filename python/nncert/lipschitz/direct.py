"""The chain SDP built directly as SCS problem data (no cvxpy): the same LMIs as :mod:`.sdp` (and as the Rust
certificate in ``rust/core/src/lipschitz/certify.rs``), assembled from per-variable coefficient matrices into one
sparse constraint matrix ``A`` with ``A x + s = b``, ``s`` in (nonnegative orthant) x (PSD cones), and handed to
``scs.solve``.

Why: on the deep MaxMin benchmarks cvxpy spends about a minute compiling the dense ``W^T Q W`` coefficients that
are known in closed form here, and SCS at the default 1e-6 tolerance spends ~1000 iterations. The direct build is
fast, and the solve runs at a looser tolerance (``DEFAULTS``; ``RESIDUAL_DEFAULTS``, tighter, for chains with
residual stages): the multipliers it returns are then repaired by the Rust certificate, so the reported bound stays
a certified upper bound; only its tightness depends on the tolerance (measured within 0.1% of the interior-point
optimum on the benchmark networks, bench/README.md).

Vectorisation: a symmetric N x N matrix M is stored as its lower triangle, column by column, off-diagonal entries
times sqrt(2) (SCS's convention), so <svec(A), svec(B)> = tr(AB).

Variables, in order: rho; d (l-inf only); per stage: t (sector, per neuron; per layer: one tau shared by all
neurons) or lambda, gamma (groups); then the free symmetric interface multiplier X_{k+1} (entries a >= b) where
the stage has one.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError

#: SCS settings of the direct path. Loose on purpose: the certificate repairs the remaining infeasibility.
DEFAULTS: dict[str, Any] = {"eps_abs": 1e-5, "eps_rel": 1e-5, "max_iters": 20_000, "acceleration_lookback": 10}
#: SCS settings for chains with residual stages: their repair cascades backwards through the residual LMIs
#: (-S^T X' S, -G^T X' G), so SCS's infeasibility costs more there. Measured (bench/README.md): at eps 1e-5 the
#: certified bound is 0.060% / 0.10% above the interior-point optimum on maxmin_residual_5_32 / 8_32, at 1e-6
#: 0.032% / 0.002% for 2x / 1.3x the SCS time.
RESIDUAL_DEFAULTS: dict[str, Any] = {"eps_abs": 1e-6, "eps_rel": 1e-6, "max_iters": 100_000,
                                     "acceleration_lookback": 10}
SQRT2 = np.sqrt(2.0)
#: variables per chunk when forming dense coefficient stacks (bounds memory at CHUNK * n^2 floats)
CHUNK = 256


class Entries:
    """A symmetric matrix affine in the variables, as sparse entries: X = sum_e val_e x_{var_e} E_{row_e, col_e}
    (both triangles listed)."""

    def __init__(self, size: int, var: np.ndarray, row: np.ndarray, col: np.ndarray, val: np.ndarray):
        self.size = size
        self.var, self.row, self.col, self.val = (np.asarray(var, dtype=np.int64), np.asarray(row, dtype=np.int64),
                                                  np.asarray(col, dtype=np.int64), np.asarray(val, dtype=np.float64))

    def scaled(self, s: float) -> "Entries":
        return Entries(self.size, self.var, self.row, self.col, self.val * s)

    def chunks(self):
        """(unique variables of the chunk, entries of the chunk mapped to 0..k-1)."""
        uv, inv = np.unique(self.var, return_inverse=True)
        for s in range(0, len(uv), CHUNK):
            sel = (inv >= s) & (inv < s + CHUNK)
            yield uv[s:s + CHUNK], inv[sel] - s, self.row[sel], self.col[sel], self.val[sel]

    def quad(self, W: np.ndarray, V: np.ndarray | None = None):
        """Coefficient stacks of W^T X W (n x n), or of W^T X V (n x V.shape[1]) when ``V`` is given, per chunk of
        variables."""
        V = W if V is None else V
        for uv, k, r, c, v in self.chunks():
            out = np.zeros((len(uv), W.shape[1], V.shape[1]))
            # sum over entries of v * outer(W[r], V[c]); grouped by (var) via add.at on the first axis
            np.add.at(out, k, v[:, None, None] * W[r][:, :, None] * V[c][:, None, :])
            yield uv, out

    def bilinear(self, A: np.ndarray, B: np.ndarray):
        """Coefficient stacks of A^T X B (A.shape[1] x B.shape[1]), per chunk of variables."""
        for uv, k, r, c, v in self.chunks():
            out = np.zeros((len(uv), A.shape[1], B.shape[1]))
            np.add.at(out, k, v[:, None, None] * A[r][:, :, None] * B[c][:, None, :])
            yield uv, out

    def left(self, G: np.ndarray):
        """Coefficient stacks of X G (size x G.shape[1]), per chunk of variables."""
        for uv, k, r, c, v in self.chunks():
            out = np.zeros((len(uv), self.size, G.shape[1]))
            np.add.at(out, (k, r), v[:, None] * G[c])
            yield uv, out


class Lmi:
    """One LMI M(x) = M0 + sum_v x_v C_v >= 0 of size N, collected as sparse svec columns."""

    def __init__(self, N: int):
        self.N = N
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.const = np.zeros((N, N))

    def _idx(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        # lower triangle, column-major: column j starts at j N - j (j - 1) / 2
        return j * self.N - (j * (j - 1)) // 2 + (i - j)

    def _push(self, var: np.ndarray, i: np.ndarray, j: np.ndarray, val: np.ndarray) -> None:
        keep = val != 0
        var, i, j, val = var[keep], i[keep], j[keep], val[keep]
        lo = i >= j
        i, j = np.where(lo, i, j), np.where(lo, j, i)
        self.rows.append(self._idx(i, j))
        self.cols.append(var)
        self.vals.append(np.where(i == j, val, SQRT2 * val))

    def entries(self, X: Entries, off: int = 0, sign: float = 1.0) -> None:
        """Adds sign * X on the diagonal block starting at ``off`` (lower-triangle entries only)."""
        lo = X.row >= X.col
        self._push(X.var[lo], X.row[lo] + off, X.col[lo] + off, sign * X.val[lo])

    def dense(self, uv: np.ndarray, coefs: np.ndarray, r0: int, c0: int) -> None:
        """Adds coefs[k] x_{uv[k]} on the block at (r0, c0): a diagonal block (r0 == c0, symmetric coefs: its lower
        triangle is used) or a block strictly below the diagonal."""
        k, p, q = coefs.shape
        if r0 == c0:
            il, jl = np.tril_indices(p)
        else:
            if r0 < c0 + q:
                raise AssertionError("off-diagonal blocks must lie strictly below the diagonal")
            il, jl = (a.ravel() for a in np.meshgrid(np.arange(p), np.arange(q), indexing="ij"))
        vals = coefs[:, il, jl]
        var = np.repeat(uv, len(il))
        self._push(var, np.tile(il + r0, k), np.tile(jl + c0, k), vals.ravel())

    def matrix(self, nvars: int) -> tuple[sp.csc_matrix, np.ndarray]:
        """(A_k, b_k) with s = b_k - A_k x = svec(M(x))."""
        L = self.N * (self.N + 1) // 2
        if self.rows:
            rows, cols, vals = np.concatenate(self.rows), np.concatenate(self.cols), np.concatenate(self.vals)
        else:
            rows = cols = np.zeros(0, dtype=np.int64)
            vals = np.zeros(0)
        A = sp.csc_matrix((-vals, (rows, cols)), shape=(L, nvars))
        il, jl = np.tril_indices(self.N)
        # the constant, in the same order (column-major lower triangle)
        order = np.lexsort((il, jl))
        il, jl = il[order], jl[order]
        b = self.const[il, jl] * np.where(il == jl, 1.0, SQRT2)
        return A, b


class Layout:
    """Variable indices of the chain SDP."""

    def __init__(self) -> None:
        self.n = 0
        self.nonneg: list[np.ndarray] = []

    def take(self, k: int, nonneg: bool = False) -> np.ndarray:
        ids = np.arange(self.n, self.n + k)
        self.n += k
        if nonneg:
            self.nonneg.append(ids)
        return ids


def _sym_entries(ids_tri: np.ndarray, o: int) -> Entries:
    """X = the free symmetric o x o matrix whose entry (a, b), a >= b, is variable ids_tri[...]."""
    a, b = np.tril_indices(o)
    off = a != b
    var = np.concatenate([ids_tri, ids_tri[off]])
    row = np.concatenate([a, b[off]])
    col = np.concatenate([b, a[off]])
    return Entries(o, var, row, col, np.ones(len(var)))


def _group_entries(st: dict[str, Any], lam: np.ndarray, gam: np.ndarray | None, m: int) -> Entries:
    E = np.asarray(st["E"])
    var, row, col, val = [], [], [], []
    for j, g in enumerate(st["groups"]):
        g = np.asarray(g)
        s = len(g)
        var.append(np.full(s, lam[j]))
        row.append(g)
        col.append(g)
        val.append(np.ones(s))
        if gam is not None:
            a, b = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
            var.append(np.full(s * s, gam[j]))
            row.append(g[a.ravel()])
            col.append(g[b.ravel()])
            val.append(E[a.ravel(), b.ravel()])
    return Entries(m, np.concatenate(var), np.concatenate(row), np.concatenate(col), np.concatenate(val))


def build(chain: dict[str, Any], norm: str, multipliers: str, Ws: list[np.ndarray], R: np.ndarray, n0: int,
          use_gamma: bool = True):
    """SCS data (A, b, c, cone) and a decoder of the solution vector. ``Ws``, ``R``, ``n0``: the (possibly row-space
    restricted) weights from :func:`.sdp.restrict`."""
    stages = chain["stages"]
    lay = Layout()
    rho = lay.take(1, nonneg=True)[0]
    d = None
    if norm == "2":
        X = Entries(n0, np.full(n0, rho), np.arange(n0), np.arange(n0), np.ones(n0))
    else:
        d = lay.take(n0, nonneg=True)
        X = Entries(n0, d, np.arange(n0), np.arange(n0), np.ones(n0))
    lmis: list[Lmi] = []
    decode: list[dict[str, Any]] = []
    for st, W in zip(stages, Ws):
        m, n = W.shape
        kind, residual = st["kind"], st["residual"]
        fam = st["act"] if kind == "implicit" else kind  # implicit stages: the activation's multipliers
        dec: dict[str, Any] = {"kind": fam, "m": m}
        Q = None
        if fam == "sector":
            if multipliers == "layer":
                tau = lay.take(1, nonneg=True)[0]
                t = np.full(m, tau)
            else:
                t = lay.take(m, nonneg=True)
            dec["t"] = t
            Q = Entries(m, t, np.arange(m), np.arange(m), np.ones(m))
        elif fam == "groups":
            G = len(st["groups"])
            lam = lay.take(G, nonneg=True)
            gam = lay.take(G) if use_gamma else None
            dec["lam"], dec["gam"] = lam, gam
            Q = _group_entries(st, lam, gam, m)
        Xn = None
        if not (kind == "groups" and not residual):
            o = n if residual else m
            tri = lay.take(o * (o + 1) // 2)
            dec["X"], dec["o"] = tri, o
            Xn = _sym_entries(tri, o)
        if kind == "implicit":  # see sdp.implicit_lmi
            from .sdp import implicit_coefficients
            F = np.asarray(st["F"])
            k2, k1, k0 = implicit_coefficients(st)
            lmi = Lmi(n + m)
            lmi.entries(X)
            if k2 != 0:
                for uv, cf in Q.quad(W):
                    lmi.dense(uv, k2 * cf, 0, 0)
            # the B^T block (m x n): k1 Q U + k2 F^T Q U
            for uv, cf in Q.left(W):
                lmi.dense(uv, k1 * cf, n, 0)
            if k2 != 0:
                for uv, cf in Q.bilinear(F, W):
                    lmi.dense(uv, k2 * cf, n, 0)
            lmi.entries(Q.scaled(k0), off=n)
            if k1 != 0:
                for uv, cf in Q.left(F):  # Q F; the block gets Q F + F^T Q
                    lmi.dense(uv, k1 * (cf + np.transpose(cf, (0, 2, 1))), n, n)
            for uv, cf in Q.quad(F):
                lmi.dense(uv, k2 * cf, n, n)
            lmi.entries(Xn, off=n, sign=-1.0)
            X = Xn
        elif kind == "linear":
            lmi = Lmi(n)
            lmi.entries(X)
            for uv, cf in Xn.quad(W):
                lmi.dense(uv, -cf, 0, 0)
            X = Xn
        elif kind == "groups" and not residual:
            lmi = Lmi(n)
            lmi.entries(X)
            for uv, cf in Q.quad(W):
                lmi.dense(uv, -cf, 0, 0)
            X = Q
        else:
            lmi = Lmi(n + m)
            lmi.entries(X)
            if kind == "sector":
                a, b = st["alpha"], st["beta"]
                for uv, cf in Q.quad(W):
                    lmi.dense(uv, 2 * a * b * cf, 0, 0)
                for uv, cf in Q.left(W):  # T W (m x n): the B^T block, -(a+b) T W
                    lmi.dense(uv, -(a + b) * cf, n, 0)
                lmi.entries(Q.scaled(2.0), off=n)
            else:
                for uv, cf in Q.quad(W):
                    lmi.dense(uv, -cf, 0, 0)
                lmi.entries(Q, off=n)
            if residual and st.get("S") is not None:  # z' = S z + G w: [[-S^T X' S, -S^T X' G], [., -G^T X' G]]
                Gm, Sm = np.asarray(st["G"]), np.asarray(st["S"])
                for uv, cf in Xn.quad(Sm):
                    lmi.dense(uv, -cf, 0, 0)
                for uv, cf in Xn.quad(Gm, Sm):  # G^T X' S (m x n): the B^T block
                    lmi.dense(uv, -cf, n, 0)
                for uv, cf in Xn.quad(Gm):
                    lmi.dense(uv, -cf, n, n)
            elif residual:  # z' = z + G w: [[-X', -X'G], [., -G^T X' G]]
                Gm = np.asarray(st["G"])
                lmi.entries(Xn, sign=-1.0)
                for uv, cf in Xn.left(Gm):  # X' G (n x m); the B^T block is its transpose
                    lmi.dense(uv, -np.transpose(cf, (0, 2, 1)), n, 0)
                for uv, cf in Xn.quad(Gm):
                    lmi.dense(uv, -cf, n, n)
            else:
                lmi.entries(Xn, off=n, sign=-1.0)
            X = Xn
        lmis.append(lmi)
        decode.append(dec)
    # final LMI
    if norm == "2":
        lmi = Lmi(R.shape[1])
        lmi.entries(X)
        lmi.const -= R.T @ R
    else:
        r = R.reshape(-1)
        N = r.shape[0]
        lmi = Lmi(N + 1)
        lmi.entries(X)
        lmi.const[N, :N] = r
        lmi.const[:N, N] = r
        lmi._push(np.array([rho]), np.array([N]), np.array([N]), np.array([1.0]))
    lmis.append(lmi)

    nv = lay.n
    nonneg = np.concatenate(lay.nonneg)
    blocks_A = [sp.csc_matrix((-np.ones(len(nonneg)), (np.arange(len(nonneg)), nonneg)), shape=(len(nonneg), nv))]
    blocks_b = [np.zeros(len(nonneg))]
    if d is not None:  # sum d <= rho:  rho - sum d >= 0
        row = np.zeros(nv)
        row[d] = 1.0
        row[rho] = -1.0
        blocks_A.append(sp.csc_matrix(row[None, :]))
        blocks_b.append(np.zeros(1))
    nl = sum(b.shape[0] for b in blocks_b)
    for lmi in lmis:
        A, b = lmi.matrix(nv)
        blocks_A.append(A)
        blocks_b.append(b)
    A = sp.vstack(blocks_A, format="csc")
    b = np.concatenate(blocks_b)
    c = np.zeros(nv)
    c[rho] = 1.0
    cone = {"l": nl, "s": [lmi.N for lmi in lmis]}

    def decoder(x: np.ndarray):
        mults = []
        for dec in decode:
            out: dict[str, Any] = {}
            if dec["kind"] == "sector":
                out["t"] = np.asarray(x[dec["t"]], dtype=np.float64)
            elif dec["kind"] == "groups":
                out["t"] = np.asarray(x[dec["lam"]], dtype=np.float64)
                out["gamma"] = (np.zeros(len(dec["lam"])) if dec["gam"] is None
                                else np.asarray(x[dec["gam"]], dtype=np.float64))
            if "X" in dec:
                o = dec["o"]
                M = np.zeros((o, o))
                a, bb = np.tril_indices(o)
                M[a, bb] = x[dec["X"]]
                M[bb, a] = x[dec["X"]]
                out["X"] = M
            mults.append(out)
        dv = None if d is None else np.asarray(x[d], dtype=np.float64)
        return float(x[rho]), dv, mults

    return {"A": A, "b": b, "c": c}, cone, decoder, [lmi.N for lmi in lmis]


def solve(chain: dict[str, Any], norm: str, multipliers: str, verbose: bool = False,
          solver_options: dict[str, Any] | None = None, use_gamma: bool = True):
    """Builds and solves the chain SDP with SCS; returns (rho, d, stage multipliers, status, info) like
    :func:`.sdp.solve`."""
    import scs

    from .sdp import restrict

    tb = time.perf_counter()
    Ws, R, n0, info = restrict(chain, norm)
    data, cone, decoder, sizes = build(chain, norm, multipliers, Ws, R, n0, use_gamma=use_gamma)
    info["lmi_sizes"] = sizes
    info["build_seconds"] = time.perf_counter() - tb
    info["backend"] = "scs-direct"
    info["constraint_nnz"] = int(data["A"].nnz)
    residual = any(st["residual"] for st in chain["stages"])
    opts = dict(RESIDUAL_DEFAULTS if residual else DEFAULTS)
    opts.update(solver_options or {})
    info["scs_settings"] = {k: opts[k] for k in ("eps_abs", "eps_rel", "max_iters")}
    opts["verbose"] = bool(verbose)
    try:
        sol = scs.solve(data, cone, **opts)
    except Exception as e:  # SCS raises ValueError on malformed data, RuntimeError on internal failures
        raise SolverError(f"SCS failed on the Lipschitz SDP: {e}") from e
    si = sol["info"]
    status = str(si.get("status", "unknown"))
    info["solver_stats"] = {"solve_time": si.get("solve_time", 0.0) / 1e3, "num_iters": si.get("iter"),
                            "setup_time": si.get("setup_time", 0.0) / 1e3}
    norm_status = {"solved": "optimal", "solved_inaccurate": "optimal_inaccurate"}.get(status, status)
    if status.startswith("solved (inaccurate"):  # e.g. "solved (inaccurate - reached max_iters)": the certificate
        norm_status = "optimal_inaccurate"      # re-checks and repairs these multipliers like any others
    x = sol.get("x")
    if norm_status not in ("optimal", "optimal_inaccurate") and not (
            status.startswith("unfinished") and x is not None and np.all(np.isfinite(x))):
        raise SolverError(f"SCS returned status {status!r} on the Lipschitz SDP (no bound produced)")
    if x is None or not np.all(np.isfinite(x)):
        raise SolverError(f"SCS returned status {status!r} without finite multipliers")
    rho, dv, mults = decoder(np.asarray(x, dtype=np.float64))
    return rho, dv, mults, norm_status, info
