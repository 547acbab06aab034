"""GPU offload benchmark: the torch path (``device=...``) side by side with the Rust CPU path.

    PYTHONPATH=python python bench/gpu_bench.py --device cuda          # on a CUDA machine
    PYTHONPATH=python python bench/gpu_bench.py --device cpu --quick   # smoke run of the torch path on the CPU

Sections (each prints both timings and the ratio core / torch from the same run):
1. bounds throughput: CROWN bounds of many sub-boxes of an ACAS Xu property region, one batched torch call
   vs the Rust core's ``output_bounds`` box by box (one thread);
2. verify: a few ACAS Xu and MNIST 256x2 instances, ``nncert.verify(device=cpu)`` vs ``device=DEVICE``
   (the verdicts must agree; a disagreement is printed as DISAGREE);
3. Lipschitz: the naive bound and the certificate's LMI eigenvalue checks (at fixed multipliers) on
   MNIST-sized networks, core vs torch;
4. convex training: ``ConvexReLU(solver="admm-approx")`` (Woodbury u-step) on n x d data, core vs torch
   (``--convex-n``/``--convex-d``; the issue's size is n = 60,000, d = 784 on a GPU, ``--quick`` a tiny smoke size;
   the Woodbury u-step needs about 3 n^2 doubles, 86 GB at n = 60,000, so there the u-step falls back to what
   fits in memory, printed as u-step).
With ``--device cpu`` the torch path runs on the CPU: those numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import nncert  # noqa: E402
from nncert import _core  # noqa: E402

DATA = os.environ.get("NNCERT_DATA", os.path.join(HERE, "..", "..", "shared", "data"))
ACAS = [("1_1", 1), ("2_1", 2), ("3_3", 3), ("1_1", 4), ("1_9", 7), ("4_5", 2)]
MNIST = ["prop_0_0.03", "prop_1_0.03", "prop_2_0.05", "prop_3_0.05"]


def timed(f, *a, **k):
    t = time.perf_counter()
    r = f(*a, **k)
    return r, time.perf_counter() - t


def sync(dev):
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bounds_section(dev, n_boxes):
    import torch

    from nncert.torch_backend.propagate import objective, propagate

    net = nncert.Network.from_onnx(os.path.join(DATA, "vnncomp2021", "acasxu", "ACASXU_run2a_1_1_batch_2000.onnx"))
    prop = nncert.Property.from_vnnlib(os.path.join(DATA, "vnncomp2021", "acasxu", "prop_2.vnnlib"))
    lo, hi = prop.regions[0]
    a_y, a_x, _ = prop.unsafe[0]
    rng = np.random.default_rng(0)
    w = (hi - lo) / 8
    LO = lo + (hi - lo - w) * rng.random((n_boxes, len(lo)))
    HI = LO + w
    k = min(n_boxes, 256)
    _, t_core = timed(lambda: [_core.output_bounds(net._core, LO[i], HI[i], a_y, a_x) for i in range(k)])
    t_core *= n_boxes / k
    lo_t = torch.as_tensor(LO, device=dev.torch())
    hi_t = torch.as_tensor(HI, device=dev.torch())
    ay, ax = torch.as_tensor(a_y, device=dev.torch()), torch.as_tensor(a_x, device=dev.torch())

    def go():
        with torch.no_grad():
            p = propagate(net, lo_t, hi_t)
            lb = objective(p, ay, ax)[0]
        sync(dev)
        return lb

    go()  # warm-up (kernels, caches)
    lb, t_t = timed(go)
    ref = _core.output_bounds(net._core, LO[0], HI[0], a_y, a_x)["lower"]
    err = float(np.abs(lb[0].cpu().numpy() - ref).max())
    print(f"bounds  ACAS Xu 1_1, {n_boxes} boxes: core {t_core:.3f} s (1 thread, extrapolated from {k}), "
          f"torch {t_t:.3f} s, core/torch {t_core / t_t:.1f}x, max |diff| box 0 {err:.1e}")
    kernel_profile(dev, go, t_t)
    optimised_bounds(dev, net, LO, HI, a_y, a_x, k)


def optimised_bounds(dev, net, LO, HI, a_y, a_x, k, iters=20):
    """alpha-CROWN (20 projected Adam steps per row) on all boxes in one batched torch call vs the core box by box
    (``output_bounds(opt_iters=20)``), the per-node work of both branch and bounds."""
    import torch

    from nncert.torch_backend.bab import _acts
    from nncert.torch_backend.compiled import compiled
    from nncert.torch_backend.optimize import optimise
    from nncert.torch_backend.propagate import objective, propagate

    n = LO.shape[0]
    _, t_core = timed(lambda: [_core.output_bounds(net._core, LO[i], HI[i], a_y, a_x, opt_iters=iters)
                               for i in range(k)])
    t_core *= n / k
    d = dev.torch()
    lo_t, hi_t = torch.as_tensor(LO, device=d), torch.as_tensor(HI, device=d)
    ay = torch.as_tensor(a_y, device=d).expand(n, *a_y.shape)
    ax = torch.as_tensor(a_x, device=d).expand(n, *a_x.shape)
    acts = _acts(compiled(net, d, torch.float64), [])
    inf = torch.full((n, a_y.shape[0]), float("inf"), dtype=torch.float64, device=d)

    def go():
        with torch.no_grad():
            p = propagate(net, lo_t, hi_t)
            lb0 = objective(p, ay, ax)[0]
        lb = torch.maximum(optimise(p, acts, ay, ax, inf, iters=iters)[0], lb0)
        sync(dev)
        return lb

    go()
    lb, t_t = timed(go)
    ref = _core.output_bounds(net._core, LO[0], HI[0], a_y, a_x, opt_iters=iters)["lower"]
    err = float(np.abs(lb[0].cpu().numpy() - ref).max())
    print(f"bounds  alpha-CROWN ({iters} steps), {n} boxes: core {t_core:.3f} s (1 thread, extrapolated from {k}), "
          f"torch {t_t:.3f} s, core/torch {t_core / t_t:.1f}x, max |diff| box 0 {err:.1e}")
    kernel_profile(dev, go, t_t)


def gemm_rate(dev, n=4096, reps=5):
    """The device's measured float64 GEMM rate (FLOP/s): the reference the bounds kernels are compared with."""
    import torch

    a = torch.randn(n, n, dtype=torch.float64, device=dev.torch())
    a @ a
    sync(dev)
    _, t = timed(lambda: ([a @ a for _ in range(reps)], sync(dev)))
    return 2 * n ** 3 * reps / t


def kernel_profile(dev, go, seconds):
    """FLOP rate of one batched bound pass (FLOPs counted by torch's FlopCounterMode: the matmuls of the
    back-substitution) against the device's float64 GEMM rate, and the kernels taking most device time."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        go()
    flops, ref = fc.get_total_flops(), gemm_rate(dev)
    print(f"bounds  kernels: {flops / 1e9:.2f} GFLOP per pass in {seconds:.3f} s = {flops / seconds / 1e9:.1f} GFLOP/s; "
          f"float64 GEMM on this device {ref / 1e9:.0f} GFLOP/s: {100 * flops / seconds / ref:.1f}% of it")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        go()
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    ev = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)
    total = sum(getattr(e, key, 0) for e in ev) or 1
    print("bounds  top kernels by self " + ("device" if dev.type == "cuda" else "CPU") + " time: " + "; ".join(
        f"{e.key} {100 * getattr(e, key, 0) / total:.0f}% ({e.count} calls)" for e in ev[:6]))


def verify_section(device, timeout, acas, mnist):
    rows = [(os.path.join(DATA, "vnncomp2021", "acasxu", f"ACASXU_run2a_{n}_batch_2000.onnx"),
             os.path.join(DATA, "vnncomp2021", "acasxu", f"prop_{p}.vnnlib")) for n, p in ACAS[:acas]]
    rows += [(os.path.join(DATA, "vnncomp2021", "mnistfc", "mnist-net_256x2.onnx"),
              os.path.join(DATA, "vnncomp2021", "mnistfc", f"{p}.vnnlib")) for p in MNIST[:mnist]]
    tot_c = tot_t = 0.0
    for onnx, vnnlib in rows:
        net, prop = nncert.Network.from_onnx(onnx), nncert.Property.from_vnnlib(vnnlib)
        c = nncert.verify(net, prop, timeout=timeout, device="cpu")
        t = nncert.verify(net, prop, timeout=timeout, device=device, backend="torch")
        tot_c, tot_t = tot_c + c.seconds, tot_t + t.seconds
        flag = "" if c.status == t.status or "timeout" in (c.status, t.status) or "unknown" in (c.status, t.status) \
            else "  DISAGREE"
        print(f"verify  {os.path.basename(onnx)[:28]:28s} {os.path.basename(vnnlib):18s} core {c.status:8s} "
              f"{c.seconds:7.2f} s | torch {t.status:8s} {t.seconds:7.2f} s ({t.method}, {t.stats.get('nodes', 0)} "
              f"nodes) core/torch {c.seconds / max(t.seconds, 1e-9):.2f}x{flag}", flush=True)
    print(f"verify  total core {tot_c:.1f} s, torch {tot_t:.1f} s, core/torch {tot_c / max(tot_t, 1e-9):.2f}x")


def fixed_multipliers(chain):
    out = []
    for k, st in enumerate(chain["stages"]):
        m = st["W"].shape[0]
        sm = {}
        if st["kind"] == "sector":
            sm["t"] = np.ones(m)
        elif st["kind"] == "groups":
            sm["t"], sm["gamma"] = np.ones(len(st["groups"])), np.zeros(len(st["groups"]))
        plain_groups = st["kind"] == "groups" and not st["residual"]
        if not plain_groups:
            o = st["W"].shape[1] if st["residual"] else m
            sm["X"] = np.eye(o)
        out.append(sm)
    return out


def lipschitz_section(dev, quick):
    from nncert.torch_backend import lipschitz as tl

    files = [os.path.join(DATA, "vnncomp2021", "mnistfc", "mnist-net_256x6.onnx"),
             os.path.join(DATA, "lipschitz", "maxmin_l2trained_8fc_128.npz")]
    for path in files[: 1 if quick else 2]:
        net = nncert.Network.from_onnx(path) if path.endswith(".onnx") else nncert.Network.from_npz(path, activation="maxmin")
        name = os.path.basename(path)
        nc, t_c = timed(_core.lipschitz_naive, net._core, "2", None)
        tl.naive_bound(net, "2", None, dev)
        nt, t_t = timed(tl.naive_bound, net, "2", None, dev)
        print(f"lipschitz naive  {name:28s} core {t_c * 1e3:8.1f} ms | torch {t_t * 1e3:8.1f} ms | "
              f"core/torch {t_c / t_t:.2f}x | rel diff {abs(nc - nt) / nc:.1e}")
        chain = _core.lipschitz_chain(net._core, None)
        mults = fixed_multipliers(chain)
        rho = 1.0
        cc, t_c = timed(_core.lipschitz_certify, net._core, "2", rho, mults, None, None, False)
        tl.lmi_checks(chain, "2", rho, None, mults, dev)
        ct, t_t = timed(tl.lmi_checks, chain, "2", rho, None, mults, dev)
        diff = max(abs(a["min_eig_before"] - b["min_eig"]) for a, b in zip(cc["lmis"], ct))
        widest = max(l["size"] for l in ct)
        print(f"lipschitz LMIs   {name:28s} core {t_c * 1e3:8.1f} ms | torch {t_t * 1e3:8.1f} ms | "
              f"core/torch {t_c / t_t:.2f}x | {len(ct)} LMIs up to {widest} wide, max |eig diff| {diff:.1e}")


def convex_section(dev, n, d, patterns, max_iter, skip_core):
    """ConvexReLU ADMM, core vs torch on the same data, patterns and settings (fixed max_iter, tol tight enough
    that both run it out, so the per-iteration cost is compared)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    y = np.tanh(X @ rng.normal(size=d) / np.sqrt(d)) + 0.1 * rng.normal(size=n)
    kw = dict(n_patterns=patterns, beta=1e-3, solver="admm-approx", max_iter=max_iter, tol=1e-12)
    mt, t_t = timed(nncert.ConvexReLU(device=str(dev), backend="torch", **kw).fit, X, y)
    sync(dev)
    line = (f"convex admm-approx n={n} d={d} P={mt.patterns_.shape[1]} {max_iter} it: torch {t_t:8.2f} s "
            f"(u-step {mt.u_solver_}, {mt.device_})")
    print(line, flush=True)  # before the core's run, which may be stopped by an outer time limit
    if skip_core:
        return
    mc, t_c = timed(nncert.ConvexReLU(**kw).fit, X, y)
    print(f"convex core {t_c:8.2f} s (u-step {mc.u_solver_}) | core/torch {t_c / t_t:.2f}x | objective rel diff "
          f"{abs(mc.objective_ - mt.objective_) / abs(mc.objective_):.1e}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--boxes", type=int, default=8192)
    ap.add_argument("--quick", action="store_true", help="fewer instances and boxes (smoke run)")
    ap.add_argument("--convex-n", type=int, default=60000)
    ap.add_argument("--convex-d", type=int, default=784)
    ap.add_argument("--convex-patterns", type=int, default=20)
    ap.add_argument("--convex-iters", type=int, default=50)
    ap.add_argument("--convex-skip-core", action="store_true", help="time the torch path only (the core at full "
                    "size takes long on few cores)")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch CPU threads (1 avoids thread "
                    "contention on a loaded machine)")
    ap.add_argument("--only", choices=["bounds", "verify", "lipschitz", "convex"], nargs="+", default=None)
    a = ap.parse_args()
    from nncert.devices import available_devices, resolve_device

    dev = resolve_device(a.device)
    if a.torch_threads:
        import torch
        torch.set_num_threads(a.torch_threads)
    print(f"devices: {available_devices()}; torch path on {dev}; cpus {os.cpu_count()}")
    if dev.type == "cpu":
        print("NOTE: torch on the CPU: these ratios are NOT GPU numbers.")
    if a.only is None or "bounds" in a.only:
        bounds_section(dev, 512 if a.quick else a.boxes)
    if a.only is None or "verify" in a.only:
        verify_section(a.device, a.timeout, 2 if a.quick else len(ACAS), 1 if a.quick else len(MNIST))
    if a.only is None or "lipschitz" in a.only:
        lipschitz_section(dev, a.quick)
    if a.only is None or "convex" in a.only:
        if a.quick:
            print("convex: smoke size (n = 2000, d = 50), NOT the issue's n = 60,000, d = 784")
        convex_section(dev, 2000 if a.quick else a.convex_n, 50 if a.quick else a.convex_d, a.convex_patterns,
                       a.convex_iters, a.convex_skip_core)


if __name__ == "__main__":
    main()
