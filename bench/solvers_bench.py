"""3D Poisson with obstacles: our CG, IC(0)-PCG and DCDM against SciPy CG and PyAMG (smoothed
aggregation), in one run, with a memory-bandwidth bound for CG's time per iteration.

    PYTHONPATH=python python bench/solvers_bench.py --sizes 64 128 --json bench/results/solvers.json
    PYTHONPATH=python python bench/solvers_bench.py --sizes 128 256 --device cuda \
        --methods cg,cg-gpu,dcdm-gpu,pyamg --json bench/results/solvers_gpu.json   # on a CUDA machine

Methods: cg, ic0, dcdm (Rust core on the CPU; dcdm evaluates the model with CPU torch), scipy, pyamg, and
with --device: cg-gpu, dcdm-gpu (the whole iteration in torch on the device). --model picks the DCDM model.
With --device the device's copy bandwidth is measured too, and CG on the device is set against it.
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


def device_bandwidth(device: str) -> float:
    """Bytes per second of a device-to-device copy (read + write), best of 5 after a warm-up."""
    import torch

    n = 1 << 28  # 2 GiB of float64 each way
    a = torch.empty(n, dtype=torch.float64, device=device)
    b = torch.ones(n, dtype=torch.float64, device=device)
    a.copy_(b)
    torch.cuda.synchronize()
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        a.copy_(b)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    del a, b
    return 16 * n / best


def cg_bytes_per_iteration(info, n: int) -> int:
    # SpMV (matrix + x read + y written) + p.q (16n) + fused x,r update with r.r (48n) + p = r + beta p (24n)
    return info.bytes_per_matvec + 88 * n


def run(n: int, tol: float, methods: list[str], dcdm_maxiter: int, device: str | None = None,
        model: str = "pretrained") -> list[dict]:
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
        x, info = DCDM(model).solve(A, b, tol=tol, maxiter=dcdm_maxiter, progress=False)
        add("nncert dcdm", info.iterations, time.perf_counter() - t, x, {"fallbacks": info.fallbacks})
    if "cg-gpu" in methods:
        cg(A, b, tol=1e-2, device=device, progress=False)  # warm-up: kernels, the cuSPARSE handle
        t = time.perf_counter()
        x, info = cg(A, b, tol=tol, device=device, progress=False)
        add(f"nncert cg {device}", info.iterations, time.perf_counter() - t, x,
            {"s_per_it": info.seconds / max(info.iterations, 1), "bytes_per_it": cg_bytes_per_iteration(info, N),
             "device": info.device})
    if "dcdm-gpu" in methods:
        solver = DCDM(model, device=device)
        solver.solve(A, b, tol=1e-1, maxiter=2, progress=False)  # warm-up: model transfer, cuDNN algorithm choice
        t = time.perf_counter()
        x, info = solver.solve(A, b, tol=tol, maxiter=dcdm_maxiter, progress=False)
        add(f"nncert dcdm {device}", info.iterations, time.perf_counter() - t, x,
            {"fallbacks": info.fallbacks, "device": info.device, "model": model})
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
    ap.add_argument("--device", default=None, help="a CUDA device for the -gpu methods (cuda, cuda:1)")
    ap.add_argument("--model", default="pretrained", help="DCDM model: 'pretrained' or a .pt file")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    methods = args.methods.split(",")
    if any(m.endswith("-gpu") for m in methods) and not args.device:
        ap.error("the -gpu methods need --device")
    bw = bandwidth()
    print(f"bandwidth: Rust triad {bw['rust_triad_GBps']:.1f} GB/s, numpy triad {bw['numpy_triad_GBps']:.1f} GB/s")
    if args.device and args.device.startswith("cuda"):
        bw["device_copy_GBps"] = device_bandwidth(args.device) / 1e9
        print(f"bandwidth: {args.device} copy {bw['device_copy_GBps']:.0f} GB/s")
    rows = []
    for n in args.sizes:
        rows += run(n, args.tol, methods, args.dcdm_maxiter, args.device, args.model)
        if args.json:  # after each size, so a run stopped at a larger one keeps the smaller ones
            save(args.json, bw, rows)
    for r in rows:
        if "bytes_per_it" in r:
            on_device = "device" in r and "device_copy_GBps" in bw
            gbps = bw["device_copy_GBps"] if on_device else bw["bound_GBps"]  # host: the faster triad
            r["bound_s_per_it"] = r["bytes_per_it"] / (gbps * 1e9)
            r["ratio_to_bound"] = r["s_per_it"] / r["bound_s_per_it"]
            print(f"{r['grid']}^3 {r['method']}: {r['s_per_it'] * 1e3:.2f} ms/iteration, bandwidth bound "
                  f"{r['bound_s_per_it'] * 1e3:.2f} ms ({r['ratio_to_bound']:.2f}x the bound)")
    for n in args.sizes:
        for key, name in (("time_vs_scipy_cg", "scipy cg"), ("time_vs_pyamg", "pyamg sa+cg")):
            ref = next((r for r in rows if r["grid"] == n and r["method"] == name), None)
            for r in rows:
                if r["grid"] == n and ref:
                    r[key] = r["seconds"] / ref["seconds"]
    print(f"\n{'grid':>5} {'method':<22}{'iters':>7}{'seconds':>9}{'vs scipy cg':>12}{'vs pyamg':>10}{'converged':>10}")
    for r in rows:
        print(f"{r['grid']:>5} {r['method']:<22}{r['iterations']:>7}{r['seconds']:>9.2f}"
              f"{r.get('time_vs_scipy_cg', float('nan')):>12.2f}{r.get('time_vs_pyamg', float('nan')):>10.2f}"
              f"{str(r['converged']):>10}")
    if args.json:
        save(args.json, bw, rows)


def save(path: str, bw: dict, rows: list) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"bandwidth": bw, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
