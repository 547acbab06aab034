"""LipSDP-NSR: the decoupled chain (method="nsr", S = P = 0; IPM default and CLARABEL) against the full
block-tridiagonal LMI with the S and P multipliers (method="nsr-full", CLARABEL), same run, l2.

    PYTHONPATH=python python bench/nsr_full_bench.py --nets maxmin_l2trained_2fc_16 maxmin_l2trained_2fc_32
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

import nncert  # noqa: E402

DATA = os.environ.get("NNCERT_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", nargs="+", default=["maxmin_l2trained_2fc_16", "maxmin_l2trained_2fc_32"])
    ap.add_argument("--norm", default="2")
    args = ap.parse_args()
    norm = "inf" if args.norm == "inf" else 2
    out = None if norm == 2 else 0
    print("| network | nsr chain, IPM | nsr chain, CLARABEL | nsr-full, CLARABEL | full / chain | lower bound |")
    print("|---|---|---|---|---|---|")
    for name in args.nets:
        net = nncert.Network.from_npz(os.path.join(DATA, "lipschitz", f"{name}.npz"), activation="maxmin")
        rows = []
        for method, solver in (("nsr", None), ("nsr", "CLARABEL"), ("nsr-full", "CLARABEL")):
            t = time.perf_counter()
            r = nncert.lipschitz(net, norm=norm, output=out, method=method, solver=solver, lower_bound_starts=8,
                                 lower_bound_steps=50)
            rows.append((r, time.perf_counter() - t))
        cells = [f"{r.bound:.5f}, {s:.2f} s{', repaired' if r.details.get('repaired') else ''}" for r, s in rows]
        lmi = rows[2][0].details["lmis"][0]["size"]
        print(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} (LMI {lmi}) | {rows[2][0].bound / rows[1][0].bound:.4f} "
              f"| {rows[2][0].lower_bound:.4f} |", flush=True)


if __name__ == "__main__":
    main()
