"""Convex training: nncert's ADMM (Rust) vs cvxpy + Clarabel and cvxpy + SCS on the same problem.

Synthetic regression data (a random teacher two-layer ReLU net plus noise), the same sampled
activation patterns for every solver, squared loss. The optimum f* is Clarabel's (interior point,
default tolerances); "time to 1e-4" is the first time an ADMM iterate (its history, factorisation
included) is within 1e-4 relative of f* with cone-constraint violation below 1e-6 * max|X v|.
SCS is run at eps 1e-5 and its returned weights are evaluated by the same numpy objective.

    PYTHONPATH=python python bench/convex_bench.py --sizes 2000 --d 50 --patterns 50 100
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

import nncert
from nncert.convex import formulation as F
from nncert.convex.patterns import sample_patterns
from nncert.convex.reference import solve_reference


def problem(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Wt = rng.standard_normal((10, d)) / np.sqrt(d)
    y = np.maximum(X @ Wt.T, 0) @ rng.standard_normal(10) + 0.1 * rng.standard_normal(n)
    return X, y


def run(n: int, d: int, P: int, beta: float, scs: bool, clarabel: bool) -> dict:
    X, y = problem(n, d)
    Xa = np.hstack([X, np.ones((n, 1))])
    D = sample_patterns(Xa, P, 0)
    row = {"n": n, "d": d, "P": int(D.shape[1]), "beta": beta}
    print(f"\n--- n = {n}, d = {d}, P = {D.shape[1]} ---", flush=True)

    t0 = time.perf_counter()
    m = nncert.ConvexReLU(patterns=D, beta=beta, tol=1e-7, max_iter=20000).fit(X, y)
    row["admm_total_s"] = time.perf_counter() - t0
    row["admm_iters"] = int(m.n_iter_)
    row["admm_status"] = m.status_
    row["admm_u_solver"] = m.u_solver_
    row["admm_objective"] = m.objective_
    print(f"admm ({m.u_solver_}): {row['admm_total_s']:.2f} s, {m.n_iter_} iterations, {m.status_}, "
          f"objective {m.objective_:.8g}", flush=True)

    fstar = None
    if clarabel:
        ref = solve_reference(Xa, y, D, beta, "squared")
        fstar = F.objective(Xa, D, ref.V, ref.W, y, beta, "squared")
        row["clarabel_s"] = ref.seconds
        row["clarabel_objective"] = fstar
        print(f"cvxpy+Clarabel: {ref.seconds:.2f} s, objective {fstar:.8g}", flush=True)
    if scs:
        t0 = time.perf_counter()
        try:
            s = solve_reference(Xa, y, D, beta, "squared", solver="SCS", eps=1e-5, max_iters=100000)
            row["scs_s"] = time.perf_counter() - t0
            row["scs_objective"] = F.objective(Xa, D, s.V, s.W, y, beta, "squared")
            row["scs_violation"] = F.violation(Xa, D, s.V, s.W)
            print(f"cvxpy+SCS: {row['scs_s']:.2f} s, objective {row['scs_objective']:.8g}, "
                  f"violation {row['scs_violation']:.1e}", flush=True)
        except nncert.SolverError as e:
            row["scs_error"] = str(e)
    if fstar is None:
        fstar = m.objective_
    h = m.history_
    scale = max(1.0, float(np.abs(Xa @ m.V_[0]).max(initial=0)), float(np.abs(Xa @ m.W_[0]).max(initial=0)))
    gap = (h["objective"] - fstar) / abs(fstar)
    ok = np.flatnonzero((gap <= 1e-4) & (h["violation"] <= 1e-6 * scale))
    fit_overhead = row["admm_total_s"] - h["seconds"][-1]  # factorisation, patterns, checks
    if ok.size:
        row["admm_time_to_1e-4_s"] = float(h["seconds"][ok[0]] + fit_overhead)
        row["admm_iters_to_1e-4"] = int(h["iter"][ok[0]])
    row["admm_final_gap"] = float((m.objective_ - fstar) / abs(fstar))
    for k in ("clarabel_s", "scs_s"):
        if k in row and "admm_time_to_1e-4_s" in row:
            row[k.replace("_s", "_over_admm")] = row[k] / row["admm_time_to_1e-4_s"]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000])
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--patterns", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--no-scs", action="store_true")
    ap.add_argument("--no-clarabel", action="store_true")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    logging.getLogger("nncert.convex").setLevel(logging.ERROR)
    rows = [run(n, args.d, P, args.beta, not args.no_scs, not args.no_clarabel)
            for n in args.sizes for P in args.patterns]
    print("\n| n | d | P | ADMM u-step | ADMM to 1e-4 (s) | iters | Clarabel (s) | SCS (s) | Clarabel/ADMM | SCS/ADMM |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = lambda k, fmt="{:.2f}": fmt.format(r[k]) if k in r else "-"  # noqa: E731
        print(f"| {r['n']} | {r['d']} | {r['P']} | {r['admm_u_solver']} | {f('admm_time_to_1e-4_s')} | "
              f"{r.get('admm_iters_to_1e-4', '-')} | {f('clarabel_s')} | {f('scs_s')} | "
              f"{f('clarabel_over_admm', '{:.1f}x')} | {f('scs_over_admm', '{:.1f}x')} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
