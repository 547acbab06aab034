"""Verification benchmark: nncert.verify on VNN-COMP 2021 ACAS Xu and MNIST 256x2 instances, and, in
the same run, a plain whole-network Z3 encoding (nncert.verify(method="smt")) on a sample.

    PYTHONPATH=python python bench/verify_bench.py --acas 26 --mnist 15 --timeout-scale 0.25 --z3 8

Instances are read from the competition CSVs (NNCERT_DATA, default ../shared/data). ``--acas N`` picks
N instances spread evenly over the 186 (always including properties 5-10), ``--mnist N`` the first N of
each network in ``--mnist-nets`` (default 256x2). Prints a markdown table and writes bench/verify_results.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import nncert  # noqa: E402
from nncert.verify.cli import read_instances  # noqa: E402

DATA = os.environ.get("NNCERT_DATA", os.path.join(HERE, "..", "..", "shared", "data"))


def pick_acas(n: int):
    rows = read_instances(os.path.join(DATA, "vnncomp2021", "acasxu", "acasxu_instances.csv"))
    special = [r for r in rows if not any(r[1].endswith(f"prop_{k}.vnnlib") for k in (1, 2, 3, 4))]
    common = [r for r in rows if r not in special]
    k = max(0, n - len(special))
    step = max(1, len(common) // max(k, 1))
    return (common[::step][:k] + special)[:n] if n else []


def pick_mnist(n: int, net: str = "256x2"):
    rows = read_instances(os.path.join(DATA, "vnncomp2021", "mnistfc", "mnistfc_instances.csv"))
    return [r for r in rows if f"{net}." in r[0]][:n]


def run(rows, scale, z3_every, z3_timeout, label, bound_iters=None, device=None, device_scale=None):
    out = []
    nets = {}
    for k, (onnx, vnnlib, t) in enumerate(rows):
        if onnx not in nets:
            nets[onnx] = nncert.Network.from_onnx(onnx)
        net, prop = nets[onnx], nncert.Property.from_vnnlib(vnnlib)
        r = nncert.verify(net, prop, timeout=t * scale, bound_iters=bound_iters)
        rec = {"set": label, "onnx": os.path.basename(onnx), "vnnlib": os.path.basename(vnnlib),
               "timeout": t * scale, "status": r.status, "seconds": round(r.seconds, 3), "method": r.method,
               "nodes": r.stats.get("nodes", 0), "z3_leaves": r.stats.get("z3_leaves", 0),
               "z3_status": "", "z3_seconds": ""}
        dev_note = ""
        if device:  # the torch path on the device, same instance, right after the core
            td = t * (scale if device_scale is None else device_scale)
            d = nncert.verify(net, prop, timeout=td, device=device, backend="torch")
            rec.update(device_status=d.status, device_seconds=round(d.seconds, 3), device_timeout=td,
                       device_nodes=d.stats.get("nodes", 0), device_method=d.method)
            if r.certified and d.certified:
                assert r.status == d.status, f"DISAGREEMENT {rec}"
            dev_note = f" | {device}: {d.status:9s} {d.seconds:8.2f}s"
        if z3_every and k % z3_every == 0:
            z = nncert.verify(net, prop, timeout=z3_timeout, method="smt")
            rec["z3_status"], rec["z3_seconds"] = z.status, round(z.seconds, 3)
            if r.certified and z.certified:
                assert r.status == z.status, f"DISAGREEMENT {rec} vs z3 {z.status}"
        print(f"{label:6s} {rec['onnx'][:32]:32s} {rec['vnnlib']:22s} {r.status:9s} {r.seconds:8.2f}s "
              f"nodes={rec['nodes']:<7} z3: {rec['z3_status']:8s} {rec['z3_seconds']}{dev_note}", flush=True)
        out.append(rec)
    return out


def summary(recs):
    lines = ["| set | instances | holds | violated | timeout | unknown | total s | median s |",
             "|---|---|---|---|---|---|---|---|"]
    for label in sorted({r["set"] for r in recs}):
        rs = [r for r in recs if r["set"] == label]
        secs = [r["seconds"] for r in rs]
        cnt = {w: sum(r["status"] == w for r in rs) for w in ("holds", "violated", "timeout", "unknown")}
        lines.append(f"| {label} | {len(rs)} | {cnt['holds']} | {cnt['violated']} | {cnt['timeout']} | {cnt['unknown']} "
                     f"| {sum(secs):.1f} | {statistics.median(secs):.2f} |")
    dv = [r for r in recs if "device_status" in r]
    if dv:
        lines += ["", "| set | instances | core decided | core s | device decided | device s | core s / device s |",
                  "|---|---|---|---|---|---|---|"]
        for label in sorted({r["set"] for r in dv}):
            rs = [r for r in dv if r["set"] == label]
            dec_c = sum(r["status"] in ("holds", "violated") for r in rs)
            dec_d = sum(r["device_status"] in ("holds", "violated") for r in rs)
            sc, sd = sum(r["seconds"] for r in rs), sum(r["device_seconds"] for r in rs)
            lines.append(f"| {label} | {len(rs)} | {dec_c} | {sc:.1f} | {dec_d} | {sd:.1f} | {sc / max(sd, 1e-9):.2f}x |")
    z = [r for r in recs if r["z3_status"] != ""]
    if z:
        lines += ["", "| instance | nncert | s | plain Z3 | s | Z3 s / nncert s |", "|---|---|---|---|---|---|"]
        for r in z:
            ratio = r["z3_seconds"] / max(r["seconds"], 1e-3)
            lines.append(f"| {r['onnx'][:30]} {r['vnnlib']} | {r['status']} | {r['seconds']:.2f} | {r['z3_status']} | "
                         f"{r['z3_seconds']:.2f} | {'>= ' if r['z3_status'] == 'timeout' else ''}{ratio:.1f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--acas", type=int, default=26)
    ap.add_argument("--mnist", type=int, default=15)
    ap.add_argument("--mnist-nets", default="256x2", help="comma-separated MNIST networks (256x2, 256x4, 256x6)")
    ap.add_argument("--timeout-scale", type=float, default=0.25)
    ap.add_argument("--z3", type=int, default=4, help="run plain Z3 on every k-th instance (0: never)")
    ap.add_argument("--z3-timeout", type=float, default=30.0)
    ap.add_argument("--bound-iters", type=int, default=None,
                    help="optimised-bound steps per node and row (default: the engine's; 0: fixed CROWN slopes)")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only instances whose vnnlib/onnx match")
    ap.add_argument("--device", default=None, help="also run the torch path on this device (e.g. cuda) on every "
                    "instance, right after the core (same run; verdicts must agree where both decide)")
    ap.add_argument("--device-timeout-scale", type=float, default=None,
                    help="timeout scale for the device runs (default: --timeout-scale)")
    ap.add_argument("--output", default=os.path.join(HERE, "verify_results.csv"))
    a = ap.parse_args()
    t0 = time.time()
    keep = [w for w in a.only.split(",") if w]
    sel = (lambda rows: [r for r in rows if any(w in r[0] + "|" + r[1] for w in keep)]) if keep else (lambda rows: rows)
    dev = (a.device, a.device_timeout_scale)
    recs = run(sel(pick_acas(a.acas)), a.timeout_scale, a.z3, a.z3_timeout, "acasxu", a.bound_iters, *dev)
    for m in a.mnist_nets.split(","):
        recs += run(sel(pick_mnist(a.mnist, m)), a.timeout_scale, a.z3, a.z3_timeout, f"mnist{m}", a.bound_iters, *dev)
    with open(a.output, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(max(recs, key=len)))
        w.writeheader()
        w.writerows(recs)
    print()
    print(summary(recs))
    print(f"\nwall time {time.time() - t0:.0f} s, rayon threads {os.environ.get('RAYON_NUM_THREADS', 'default')}, "
          f"cpus {os.cpu_count()}")


if __name__ == "__main__":
    main()
