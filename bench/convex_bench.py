"""Convex training: nncert's IPM, ADMM and SCP vs cvxpy + Clarabel and cvxpy + SCS on the same problem.

Synthetic regression data (a random teacher two-layer ReLU net plus noise), the same sampled
activation patterns for every solver, squared loss. The optimum f* is Clarabel's (interior point,
default tolerances). "ADMM time to 1e-4": ConvexReLU(solver="admm") is run at tol 1e-5, then 3e-6, 1e-6,
1e-7 (--tols), each run from scratch, once per Anderson memory (--anderson; 0 is the plain ADMM), until the returned weights (projected onto their cones, re-evaluated in
numpy) are within 1e-4 relative of f* with cone-constraint violation below 1e-6 * max|X v|; the time of
that whole fit (factorisation and projection included) is reported. solver="ipm" is timed the same way with
the sweep tol = 1e-4, 1e-6, 1e-8 (its tol is the relative duality gap). SCS is run at eps 1e-5 and its
returned weights are evaluated by the same numpy objective. The SCP (solver="scp", the same random gates,
unit-norm, as fixed neurons) solves a different, restricted program: its objective is >= f*, and its
row reports time and relative excess over f*, not a time to f*.

    PYTHONPATH=python python bench/convex_bench.py --sizes 2000 --d 50 --patterns 50 100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def run(n: int, d: int, P: int, beta: float, scs: bool, clarabel: bool, anderson=(0, 10), tols=(1e-5, 3e-6, 1e-6, 1e-7),
        clarabel_time_limit: float | None = None, admm_time_limit: float | None = None, scp: bool = True,
        fstar_given: float | None = None, ipm: bool = True) -> dict:
    X, y = problem(n, d)
    Xa = np.hstack([X, np.ones((n, 1))])
    D = sample_patterns(Xa, P, 0)
    row = {"n": n, "d": d, "P": int(D.shape[1]), "beta": beta}
    print(f"\n--- n = {n}, d = {d}, P = {D.shape[1]} ---", flush=True)

    fstar = fstar_given
    if fstar is not None:
        row["fstar_given"] = fstar
        print(f"f* given (--fstar: an earlier reference solve of the same problem): {fstar:.8g}", flush=True)
    elif clarabel:
        opts = {} if clarabel_time_limit is None else {"time_limit": float(clarabel_time_limit)}
        t0 = time.perf_counter()
        try:
            ref = solve_reference(Xa, y, D, beta, "squared", **opts)
            fstar = F.objective(Xa, D, ref.V, ref.W, y, beta, "squared")
            row["clarabel_s"] = ref.seconds
            row["clarabel_solver_s"] = ref.solver_seconds
            row["clarabel_objective"] = fstar
            row["clarabel_status"] = ref.status
            print(f"cvxpy+Clarabel: {ref.seconds:.2f} s ({ref.status}; Clarabel's own solve time "
                  f"{ref.solver_seconds:.2f} s), objective {fstar:.8g}, load {os.getloadavg()[0]:.1f}", flush=True)
        except nncert.SolverError as e:
            row["clarabel_error"] = f"{e} after {time.perf_counter() - t0:.1f} s (time limit {clarabel_time_limit})"
            print("cvxpy+Clarabel:", row["clarabel_error"], flush=True)
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
    def timed_fit(key: str, tol: float, **kw):
        """One whole fit from scratch; records it under key and returns (model, seconds, reached feasible 1e-4)."""
        t0 = time.perf_counter()
        m = nncert.ConvexReLU(patterns=D, beta=beta, tol=tol, time_limit=admm_time_limit, **kw).fit(X, y)
        secs = time.perf_counter() - t0
        scale = max(1.0, float(np.abs(Xa @ m.V_[0]).max(initial=0)), float(np.abs(Xa @ m.W_[0]).max(initial=0)))
        gap = (m.objective_ - fstar) / abs(fstar) if fstar is not None else float("nan")
        ok = gap <= 1e-4 and m.constraint_violation_ <= 1e-6 * scale
        row.setdefault(f"{key}_runs", []).append({"tol": tol, "s": secs, "iters": int(m.n_iter_), "gap": gap,
                                                  "objective": m.objective_, "status": m.status_,
                                                  "violation": m.constraint_violation_, "load": os.getloadavg()[0]})
        if ok:
            row[f"{key}_time_to_1e-4_s"] = secs
            row[f"{key}_iters_to_1e-4"] = int(m.n_iter_)
        return m, secs, gap, ok

    if ipm:
        # The same protocol as the ADMM below: the first fit of the tolerance sweep whose weights are feasible and
        # within 1e-4 of f*; the IPM's tol is its relative duality gap, so the sweep starts at 1e-4.
        for tol in ((1e-4, 1e-6, 1e-8) if fstar is not None else (1e-6,)):
            try:
                m, secs, gap, ok = timed_fit("ipm", tol, solver="ipm")
            except nncert.InvalidInputError as e:
                row["ipm_error"] = str(e)
                print("ipm:", e, flush=True)
                break
            certified = (m.objective_ - m.ipm_lower_bound_) / abs(m.objective_)
            row["ipm_runs"][-1].update(system=m.ipm_system_, duality_gap=m.ipm_gap_, certified_gap=certified)
            print(f"ipm tol {tol:.0e} ({m.ipm_system_} system): {secs:.2f} s, {m.n_iter_} Newton steps, {m.status_}, "
                  f"objective {m.objective_:.10g}, gap {gap:.2e} (duality gap {m.ipm_gap_:.1e}; certified by the dual "
                  f"bound {certified:.1e}), violation {m.constraint_violation_:.1e}, load {os.getloadavg()[0]:.1f}",
                  flush=True)
            if ok:
                break
    for mem in anderson:
        # Without a reference (f* unknown) one run at the last tolerance of the sweep, within the time limit.
        for tol in (tols if fstar is not None else tols[-1:]):
            m, secs, gap, ok = timed_fit(f"admm{mem}", tol, max_iter=50000, anderson=mem)
            print(f"admm anderson {mem} tol {tol:.0e} ({m.u_solver_}): {secs:.2f} s, {m.n_iter_} iterations, "
                  f"{m.status_}, objective {m.objective_:.8g}, gap {gap:.2e}, violation {m.constraint_violation_:.1e}, "
                  f"accelerated steps {m.anderson_['accepted']} (rejected {m.anderson_['rejected']}), "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            row["admm_u_solver"] = m.u_solver_
            if ok:
                break
    for k in ("clarabel_s", "clarabel_solver_s", "scs_s"):
        if k in row and "ipm_time_to_1e-4_s" in row:
            row[k[:-2] + "_over_ipm"] = row[k] / row["ipm_time_to_1e-4_s"]
    if not scp:
        print(json.dumps(row), flush=True)
        return row
    t0 = time.perf_counter()
    s = nncert.ConvexReLU(solver="scp", n_patterns=P, beta=beta, tol=1e-6, max_iter=50000).fit(X, y)
    row["scp_s"] = time.perf_counter() - t0
    row["scp_iters"] = int(s.n_iter_)
    row["scp_objective"] = s.objective_
    if fstar is not None:
        row["scp_excess"] = (s.objective_ - fstar) / abs(fstar)
    print(f"scp: {row['scp_s']:.2f} s, {s.n_iter_} iterations, {s.status_}, objective {s.objective_:.8g}", flush=True)
    for k in ("clarabel_s", "scs_s"):
        for mem in anderson:
            if k in row and f"admm{mem}_time_to_1e-4_s" in row:
                row[k.replace("_s", f"_over_admm{mem}")] = row[k] / row[f"admm{mem}_time_to_1e-4_s"]
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
    ap.add_argument("--anderson", type=int, nargs="*", default=[0, 10],
                    help="Anderson memories to compare (0: the plain ADMM with over-relaxation 1.6; none: no ADMM)")
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-5, 3e-6, 1e-6, 1e-7],
                    help="the ADMM tolerance sweep (each run from scratch; the first feasible 1e-4 point counts)")
    ap.add_argument("--clarabel-time-limit", type=float, default=None, help="Clarabel's time_limit (seconds)")
    ap.add_argument("--admm-time-limit", type=float, default=None, help="time_limit of each ADMM fit (seconds)")
    ap.add_argument("--no-scp", action="store_true")
    ap.add_argument("--no-ipm", action="store_true", help="skip solver='ipm'")
    ap.add_argument("--fstar", type=float, default=None,
                    help="f* of the same problem from an earlier Clarabel run (then Clarabel is not run)")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    logging.getLogger("nncert.convex").setLevel(logging.ERROR)
    rows = [run(n, args.d, P, args.beta, not args.no_scs, not args.no_clarabel, args.anderson, args.tols,
                args.clarabel_time_limit, args.admm_time_limit, not args.no_scp, args.fstar, not args.no_ipm)
            for n in args.sizes for P in args.patterns]
    print("\n| n | d | P | ADMM u-step | Anderson memory | ADMM to 1e-4 (s) | iters | Clarabel (s) | SCS (s) | "
          "Clarabel/ADMM | SCS/ADMM | SCP (s) | SCP objective / f* - 1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = lambda k, fmt="{:.2f}": fmt.format(r[k]) if k in r else "-"  # noqa: E731
        for mem in args.anderson:
            print(f"| {r['n']} | {r['d']} | {r['P']} | {r.get('admm_u_solver', '-')} | {mem} | "
                  f"{f(f'admm{mem}_time_to_1e-4_s')} | {r.get(f'admm{mem}_iters_to_1e-4', '-')} | {f('clarabel_s')} | "
                  f"{f('scs_s')} | {f(f'clarabel_over_admm{mem}', '{:.1f}x')} | {f(f'scs_over_admm{mem}', '{:.1f}x')} | "
                  f"{f('scp_s')} | {f('scp_excess', '{:.2e}')} |")
    if not args.no_ipm:
        print("\n| n | d | P | IPM system | IPM to 1e-4 (s) | Newton steps | last IPM run: tol, time, status, duality gap | "
              "cvxpy + Clarabel (s) | Clarabel solve alone (s) | cvxpy+Clarabel / IPM | Clarabel alone / IPM |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            f = lambda k, fmt="{:.2f}": fmt.format(r[k]) if k in r else "-"  # noqa: E731
            last = r["ipm_runs"][-1] if r.get("ipm_runs") else None
            lastcol = (f"{last['tol']:.0e}, {last['s']:.2f} s, {last['status']}, {last['duality_gap']:.1e}"
                       if last else r.get("ipm_error", "-"))
            print(f"| {r['n']} | {r['d']} | {r['P']} | {last['system'] if last else '-'} | {f('ipm_time_to_1e-4_s')} | "
                  f"{r.get('ipm_iters_to_1e-4', '-')} | {lastcol} | {f('clarabel_s')} | {f('clarabel_solver_s')} | "
                  f"{f('clarabel_over_ipm', '{:.1f}x')} | {f('clarabel_solver_over_ipm', '{:.1f}x')} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
