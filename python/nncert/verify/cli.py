"""The ``nncert verify`` and ``nncert verify-batch`` subcommands (registered in nncert.cli.COMMANDS)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time


def add_verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file: .onnx, .nnet or .npz")
    p.add_argument("property", help="VNN-LIB property file")
    p.add_argument("--timeout", type=float, default=60.0, help="wall-clock limit in seconds (default 60)")
    p.add_argument("--method", default="auto", choices=["auto", "bab", "smt"])
    add_device_arg(p)
    p.add_argument("--result", default=None, help="write the result word (VNN-COMP style) to this file")
    p.add_argument("--counterexample", default=None, help="write the counterexample ((X_0 v) ... (Y_0 v) ...) here")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu (the Rust core; default) or cuda / cuda:K (bounds, branch and "
                   "bound and attacks with torch on that GPU)")


def cmd_verify(args: argparse.Namespace) -> int:
    from ..cli import load_model
    from .engine import verify
    from .property import Property
    from .result import counterexample_text

    try:
        net = load_model(args.model)
        prop = Property.from_vnnlib(args.property)
        r = verify(net, prop, timeout=args.timeout, method=args.method, device=args.device)
        word = r.status
    except Exception as e:  # the VNN-COMP protocol wants the word "error" on any failure
        print(f"nncert verify: error: {e}", file=sys.stderr)
        if args.result:
            with open(args.result, "w") as f:
                f.write("error\n")
        print("error")
        return 1
    if args.result:
        with open(args.result, "w") as f:
            f.write(word + "\n")
            if r.counterexample is not None:
                f.write(counterexample_text(*r.counterexample))
    if args.counterexample and r.counterexample is not None:
        with open(args.counterexample, "w") as f:
            f.write(counterexample_text(*r.counterexample))
    if args.json:
        print(json.dumps(r.to_dict()))
    else:
        print(word)
    return 0


def add_batch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("instances", help="VNN-COMP instances CSV: onnx,vnnlib,timeout per line (paths relative to it)")
    p.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every instance timeout by this")
    p.add_argument("--limit", type=int, default=None, help="run only the first N instances")
    p.add_argument("--output", default=None, help="CSV of per-instance results (default: print only)")
    p.add_argument("--json", action="store_true", help="print the per-instance results as JSON lines")
    add_device_arg(p)


def read_instances(path: str) -> list[tuple[str, str, float]]:
    base = os.path.dirname(os.path.abspath(path))
    out = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}: expected 'onnx,vnnlib,timeout' per line, got {row!r}")
            out.append((os.path.join(base, row[0].strip()), os.path.join(base, row[1].strip()), float(row[2])))
    return out


def cmd_verify_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..cli import load_model
    from .engine import verify
    from .property import Property

    rows = read_instances(args.instances)[: args.limit]
    results = []
    nets: dict[str, object] = {}
    bar = tqdm(rows, unit="inst", file=sys.stderr)
    for onnx, vnnlib, t in bar:
        bar.set_description(f"{os.path.basename(onnx)[:28]} {os.path.basename(vnnlib)}")
        t0 = time.monotonic()
        try:
            if onnx not in nets:
                nets[onnx] = load_model(onnx)
            r = verify(nets[onnx], Property.from_vnnlib(vnnlib), timeout=t * args.timeout_scale, device=args.device)
            status, nodes = r.status, r.stats.get("nodes", 0)
        except Exception as e:
            status, nodes = "error", 0
            print(f"{onnx} {vnnlib}: {e}", file=sys.stderr)
        sec = time.monotonic() - t0
        results.append({"onnx": os.path.basename(onnx), "vnnlib": os.path.basename(vnnlib), "status": status,
                        "seconds": round(sec, 4), "nodes": nodes})
        if args.json:
            print(json.dumps(results[-1]), flush=True)
    if args.output:
        with open(args.output, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(results[0]) if results else ["onnx"])
            w.writeheader()
            w.writerows(results)
    print(summary_table(results))
    return 0


def summary_table(results: list[dict]) -> str:
    words = ["holds", "violated", "timeout", "unknown", "error"]
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["vnnlib"], []).append(r)
    groups["TOTAL"] = results
    head = ["property"] + words + ["total s", "median s"]
    lines = [head]
    for k, rs in groups.items():
        secs = [r["seconds"] for r in rs] or [0.0]
        lines.append([k] + [str(sum(r["status"] == w for r in rs)) for w in words]
                     + [f"{sum(secs):.1f}", f"{statistics.median(secs):.2f}"])
    widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
    out = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(l, widths))) for l in lines]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)
