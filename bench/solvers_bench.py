"""3D Poisson with obstacles: our CG, IC(0)-PCG and DCDM against SciPy CG and PyAMG (smoothed
aggregation), in one run, with a memory-bandwidth bound for CG's time per iteration.

    PYTHONPATH=python python bench/solvers_bench.py --sizes 64 128 --json bench/results/solvers.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import scipy.sparse.linalg as sla

from nncert import _core
from nncert.solvers import DCDM, cg, poisson3d


def bandwidth() -> dict:
    n = 1 << 25  # 3 x 256 MiB: far beyond any cache
    rust = _core.stream_triad(n, 5)
    a, b, c = np.empty(n), np.ones(n), np.full(n, 2.0)
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        np.multiply(c, 0.5, out=a)
        np.add(a, b, out=a)
        best = min(best, time.perf_counter() - t)
    # numpy needs two passes: a = 0.5 c (16 B/element), a += b (24 B/element)
    numpy_bw = 40 * n / best
    return {"rust_triad_GBps": rust / 1e9, "numpy_triad_GBps": numpy_bw / 1e9,
            "bound_GBps": max(rust, numpy_bw) / 1e9}


def cg_bytes_per_iteration(info, n: int) -> int:
    # SpMV (matrix + x read + y written) + p.q (16n) + fused x,r update with r.r (48n) + p = r + beta p (24n)
    return info.bytes_per_matvec + 88 * n


def run(n: int, tol: float, methods: list[str], dcdm_maxiter: int) -> list[dict]:
    A = poisson3d(n, "random", seed=0)
    N = A.shape[0]
    b = np.random.default_rng(n).standard_normal(N)
    bnorm = np.linalg.norm(b)
    rows = []

    def add(name, iters, secs, x, extra=None):
        res = float(np.linalg.norm(b - A @ x) / bnorm)
        rows.append({"grid": n, "unknowns": N, "method": name, "iterations": iters, "seconds": secs,
                     "true_residual": res, "converged": res <= tol, **(extra or {})})
        print(f"  {name:<16} it={iters:>6}  {secs:8.2f}s  residual={res:.2e}", flush=True)

    print(f"{n}^3 grid, {N} unknowns, nnz {A.nnz}", flush=True)
    if "cg" in methods:
        t = time.perf_counter()
        x, info = cg(A, b, tol=tol, progress=False)
        secs = time.perf_counter() - t
        add("nncert cg", info.iterations, secs, x,
            {"s_per_it": info.seconds / max(info.iterations, 1), "bytes_per_it": cg_bytes_per_iteration(info, N)})
    if "ic0" in methods:
        t = time.perf_counter()
        x, info = cg(A, b, tol=tol, precond="ic0", progress=False)
        add("nncert pcg-ic0", info.iterations, time.perf_counter() - t, x)
    if "dcdm" in methods:
        t = time.perf_counter()
        x, info = DCDM("pretrained").solve(A, b, tol=tol, maxiter=dcdm_maxiter, progress=False)
        add("nncert dcdm", info.iterations, time.perf_counter() - t, x, {"fallbacks": info.fallbacks})
    if "scipy" in methods:
        count = [0]
        t = time.perf_counter()
        x, _ = sla.cg(A, b, rtol=tol, atol=0.0, maxiter=10 * N, callback=lambda _: count.__setitem__(0, count[0] + 1))
        add("scipy cg", count[0], time.perf_counter() - t, x)
    if "pyamg" in methods:
        import pyamg

        t = time.perf_counter()
        ml = pyamg.smoothed_aggregation_solver(A)
        setup = time.perf_counter() - t
        res: list = []
        x = ml.solve(b, tol=tol, accel="cg", residuals=res, maxiter=1000)
        add("pyamg sa+cg", len(res) - 1, time.perf_counter() - t, x, {"setup_seconds": setup})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64])
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--methods", default="cg,ic0,dcdm,scipy,pyamg")
    ap.add_argument("--dcdm-maxiter", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    bw = bandwidth()
    print(f"bandwidth: Rust triad {bw['rust_triad_GBps']:.1f} GB/s, numpy triad {bw['numpy_triad_GBps']:.1f} GB/s")
    rows = []
    for n in args.sizes:
        rows += run(n, args.tol, args.methods.split(","), args.dcdm_maxiter)
    for r in rows:
        if "bytes_per_it" in r:
            r["bound_s_per_it"] = r["bytes_per_it"] / (bw["bound_GBps"] * 1e9)  # the faster of the two triads
            r["ratio_to_bound"] = r["s_per_it"] / r["bound_s_per_it"]
            print(f"{r['grid']}^3 CG: {r['s_per_it'] * 1e3:.2f} ms/iteration, bandwidth bound "
                  f"{r['bound_s_per_it'] * 1e3:.2f} ms ({r['ratio_to_bound']:.2f}x the bound)")
    for n in args.sizes:
        ref = next((r for r in rows if r["grid"] == n and r["method"] == "scipy cg"), None)
        for r in rows:
            if r["grid"] == n and ref:
                r["time_vs_scipy_cg"] = r["seconds"] / ref["seconds"]
    print(f"\n{'grid':>5} {'method':<16}{'iters':>7}{'seconds':>9}{'vs scipy cg':>12}{'converged':>10}")
    for r in rows:
        print(f"{r['grid']:>5} {r['method']:<16}{r['iterations']:>7}{r['seconds']:>9.2f}"
              f"{r.get('time_vs_scipy_cg', float('nan')):>12.2f}{str(r['converged']):>10}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"bandwidth": bw, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
