"""LipSDP-NSR on the residual MaxMin benchmark networks (maxmin_residual_{k}_{n}): the default solver path (the IPM,
``ipm``), SCS on directly built data (``scs``) and CLARABEL (interior point, through cvxpy) as the optimum, in the
same run. ``--time-limit`` goes to every solver; for one process per configuration under a hard timeout, call
it once per ``--configs`` value. For each configuration prints
the certified bound, the bound the solver's multipliers imply before the repair, the SCS iterations and status, the
wall time, and the gap to the CLARABEL bound.

    NNCERT_DATA=/work/shared/data PYTHONPATH=python python bench/residual_bench.py --nets maxmin_residual_5_32
    python bench/residual_bench.py --nets maxmin_residual_8_32 --configs default --no-clarabel
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

import nncert  # noqa: E402

DATA = os.environ.get("NNCERT_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))

CONFIGS = {
    "default": {},
    "ipm": {"solver": "IPM"},
    "scs": {"solver": "SCS"},  # the direct SCS path at its residual default (eps 1e-6)
    "scs-1e-5": {"solver": "SCS", "solver_options": {"eps_abs": 1e-5, "eps_rel": 1e-5, "max_iters": 20_000}},
    "scs-1e-6": {"solver": "SCS", "solver_options": {"eps_abs": 1e-6, "eps_rel": 1e-6, "max_iters": 100_000}},
    "scs-1e-7": {"solver": "SCS", "solver_options": {"eps_abs": 1e-7, "eps_rel": 1e-7, "max_iters": 200_000}},
    "clarabel": {"solver": "CLARABEL"},
}


def load(name: str) -> nncert.Network:
    return nncert.Network.from_npz(os.path.join(DATA, "lipschitz", f"{name}.npz"), activation="maxmin", residual=True)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(net: nncert.Network, cfg: dict, time_limit: float | None = None) -> dict:
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), _cpu()
    r = nncert.lipschitz(net, method="nsr", lower_bound_starts=4, lower_bound_steps=10, time_limit=time_limit, **cfg)
    stats = r.details.get("solver_stats", {})
    return {"bound": r.bound, "certified": r.certified, "solver_bound": r.details.get("solver_bound"),
            "repaired": r.details.get("repaired"), "status": r.solver_status, "solver": r.solver,
            "iters": stats.get("num_iters"), "solve_time": stats.get("solve_time"),
            "cg_iterations": stats.get("cg_iterations"), "newton_system": r.details.get("newton_system"),
            "gap_bound": None if stats.get("gap_bound") is None else float(stats["gap_bound"]),
            "wall": time.perf_counter() - t0, "cpu": _cpu() - c0, "lower": r.lower_bound,
            "naive": r.naive_bound, "time_limit": time_limit, "load_before": load0, "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", nargs="+", default=["maxmin_residual_5_32"])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--out", default=None, help="append JSON lines here")
    ap.add_argument("--time-limit", type=float, default=None, help="seconds for the SDP solver (SCS, CLARABEL, IPM); "
                    "a solver stopped by it returns its iterate, which the certificate repairs")
    args = ap.parse_args()
    for name in args.nets:
        net = load(name)
        rows = {}
        for c in args.configs:
            rows[c] = run(net, CONFIGS[c], args.time_limit)
            ref = rows.get("clarabel")
            print(f"{name} {c}: bound {rows[c]['bound']:.6g} (solver {rows[c]['solver_bound']:.6g}, repaired "
                  f"{rows[c]['repaired']}) {rows[c]['status']} iters {rows[c]['iters']} wall {rows[c]['wall']:.1f} s "
                  f"cpu {rows[c]['cpu']:.1f} s load {rows[c]['load_before']:.2f}", flush=True)
        ref = rows.get("clarabel")
        for c, r in rows.items():
            gap = None if ref is None else r["bound"] / ref["bound"] - 1
            r["gap_vs_clarabel"] = gap
            if gap is not None:
                print(f"  {c}: gap vs CLARABEL {100 * gap:+.4f}%")
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps({"net": name, "config": c, **r}) + "\n")


if __name__ == "__main__":
    main()
