"""Where one verification spends its time: cProfile of ``nncert.verify`` on one instance (after one warm-up run,
so that CUDA start-up and first captures stay out), the top nncert functions by cumulative time and
all functions by own time.

    PYTHONPATH=python python bench/profile_verify.py --device cuda --acas 4_9 --prop 1
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import nncert  # noqa: E402

DATA = os.environ.get("NNCERT_DATA", os.path.join(HERE, "..", "..", "shared", "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--acas", default="4_9", help="ACAS Xu network, e.g. 4_9")
    ap.add_argument("--prop", default="1", help="ACAS Xu property number")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    d = os.path.join(DATA, "vnncomp2021", "acasxu")
    net = nncert.Network.from_onnx(os.path.join(d, f"ACASXU_run2a_{args.acas}_batch_2000.onnx"))
    prop = nncert.Property.from_vnnlib(os.path.join(d, f"prop_{args.prop}.vnnlib"))
    run = lambda: nncert.verify(net, prop, timeout=args.timeout, device=args.device, backend="torch")  # noqa: E731
    run()
    prof = cProfile.Profile()
    r = prof.runcall(run)
    print(f"{args.acas} prop_{args.prop} on {args.device}: {r.status} in {r.seconds:.2f} s, {r.stats.get('nodes')} nodes")
    pstats.Stats(prof).sort_stats("cumulative").print_stats("nncert", args.top)
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
