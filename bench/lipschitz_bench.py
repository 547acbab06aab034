"""LipSDP-NSR on the MaxMin benchmark networks: nncert's certified decoupled chain (its own interior-point solver
IPM, the default; SCS with directly built problem data; CLARABEL through cvxpy as the interior-point reference) against a straightforward one-big-LMI cvxpy formulation solved by SCS, in the
same run. Prints one row per network (bound, seconds, ratios) and writes JSON lines to --out.

    PYTHONPATH=python python bench/lipschitz_bench.py --nets maxmin_l2trained_2fc_16 maxmin_l2trained_8fc_32
    python bench/lipschitz_bench.py --all --reference-timeout 600

The straightforward formulation: one LMI over (x, z_1, ..., z_L) with per-group multipliers
lambda_j I + gamma_j 11^T, no rescaling, no row-space restriction, built with W^T Q W symbolically.
Not run for the residual networks (its block structure differs); nncert's residual chain is timed alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

import nncert  # noqa: E402

DATA = os.environ.get("NNCERT_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
PLAIN = [f"maxmin_l2trained_{k}" for k in ("2fc_16", "2fc_32", "2fc_64", "2fc_128", "5fc_32", "5fc_64", "8fc_32",
                                            "8fc_64", "8fc_128", "8fc_256", "18fc_32", "18fc_64", "18fc_128")]
RESIDUAL = [f"maxmin_residual_{k}" for k in ("5_32", "5_64", "8_32", "8_64", "8_128")]


def load(name: str) -> nncert.Network:
    return nncert.Network.from_npz(os.path.join(DATA, "lipschitz", f"{name}.npz"), activation="maxmin",
                                   residual="residual" in name)


def big_lmi_reference(name: str, timeout: float) -> dict:
    """The straightforward formulation, solved by SCS (eps 1e-6)."""
    import cvxpy as cp

    with np.load(os.path.join(DATA, "lipschitz", f"{name}.npz")) as d:
        Ws = [d[f"W{i}"] for i in range(len(d.files))]
    hidden, last = Ws[:-1], Ws[-1]
    n0 = hidden[0].shape[1]
    widths = [W.shape[0] for W in hidden]
    N = n0 + sum(widths)
    offs = np.cumsum([0, n0] + widths)
    t_build = time.perf_counter()
    rho = cp.Variable(nonneg=True)
    terms = [cp.bmat([[rho * np.eye(n0), np.zeros((n0, N - n0))], [np.zeros((N - n0, n0)), np.zeros((N - n0, N - n0))]])]
    for k, W in enumerate(hidden):
        m = W.shape[0]
        G = m // 2
        lam, gam = cp.Variable(G, nonneg=True), cp.Variable(G)
        Q = cp.kron(cp.diag(lam), np.eye(2)) + cp.kron(cp.diag(gam), np.ones((2, 2)))
        Ein = np.zeros((n0 if k == 0 else widths[k - 1], N))
        Ein[:, offs[k]:offs[k + 1]] = np.eye(Ein.shape[0])
        Eout = np.zeros((m, N))
        Eout[:, offs[k + 1]:offs[k + 2]] = np.eye(m)
        A = W @ Ein
        terms.append(-(A.T @ Q @ A) + Eout.T @ Q @ Eout)
    El = np.zeros((widths[-1], N))
    El[:, offs[-2]:offs[-1]] = np.eye(widths[-1])
    terms.append(-(El.T @ last.T @ last @ El))
    M = sum(terms)
    prob = cp.Problem(cp.Minimize(rho), [0.5 * (M + M.T) >> 0])
    t0 = time.perf_counter()
    print(f"  [{name}] big LMI built ({N} x {N}); solving", file=sys.stderr, flush=True)
    try:
        prob.solve(solver="SCS", eps_abs=1e-6, eps_rel=1e-6, time_limit_secs=timeout, max_iters=10**6)
        status = prob.status
    except cp.error.SolverError as e:
        status = f"error: {e}"
    sec = time.perf_counter() - t0
    bound = float(np.sqrt(rho.value)) if rho.value is not None else float("nan")
    return {"bound": bound, "seconds": sec + (t0 - t_build), "build_seconds": t0 - t_build, "status": status,
            "lmi_size": N}


def ours(name: str, solver: str) -> dict:
    net = load(name)
    t0 = time.perf_counter()
    c0 = time.process_time()
    r = nncert.lipschitz(net, method="nsr", solver=solver, lower_bound_starts=8, lower_bound_steps=50)
    return {"bound": r.bound, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "certified": r.certified, "iters": r.details.get("solver_stats", {}).get("num_iters"),
            "status": r.solver_status, "solver_seconds": r.details["solver_seconds"],
            "certify_seconds": r.details["certify_seconds"], "solver_bound": r.details["solver_bound"],
            "lower_bound": r.lower_bound, "naive_bound": r.naive_bound, "repaired": r.details["repaired"]}


def log(name: str, what: str, r: dict) -> None:
    print(f"  [{name}] {what}: bound {r['bound']:.6g} in {r['seconds']:.2f} s ({r.get('status')})",
          file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="*", default=None, help="network names (default: the small plain ones)")
    ap.add_argument("--all", action="store_true", help="every MaxMin network, plain and residual")
    ap.add_argument("--reference-timeout", type=float, default=300.0, help="seconds for the one-big-LMI SCS solve")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-clarabel", action="store_true")
    ap.add_argument("--no-scs", action="store_true")
    ap.add_argument("--no-ipm", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "lipschitz_bench.jsonl"))
    args = ap.parse_args()
    nets = PLAIN + RESIDUAL if args.all else (args.nets or PLAIN[:3] + ["maxmin_l2trained_8fc_32"])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    print(f"{'network':28s} {'nsr IPM':>22s} {'nsr SCS':>22s} {'nsr CLARABEL':>22s} {'big LMI SCS':>26s} "
          f"{'time ratio':>10s}")
    with open(args.out, "a") as fh:
        for name in nets:
            row = {"network": name}
            if not args.no_ipm:
                row["ours_ipm"] = ours(name, "IPM")
                log(name, "nsr IPM", row["ours_ipm"])
            if not args.no_scs:
                row["ours_scs"] = ours(name, "SCS")
                log(name, "nsr SCS", row["ours_scs"])
            if not args.no_clarabel:
                row["ours_clarabel"] = ours(name, "CLARABEL")
                log(name, "nsr CLARABEL", row["ours_clarabel"])
            if not args.no_reference and "residual" not in name:
                row["reference_scs"] = big_lmi_reference(name, args.reference_timeout)
                log(name, "big LMI SCS", row["reference_scs"])
            i, o, c, r = row.get("ours_ipm"), row.get("ours_scs"), row.get("ours_clarabel"), row.get("reference_scs")

            def cell(v):
                return f"{v['bound']:10.4f} {v['seconds']:8.2f}s" if v else "(not run)".rjust(20)
            rs = f"{r['bound']:10.4f} {r['seconds']:8.2f}s {r['status'][:5]:>5s}" if r else "(not run)".rjust(26)
            first = i or o or c
            ratio = f"{r['seconds'] / first['seconds']:9.1f}x" if r and first else ""
            print(f"{name:28s} {cell(i)}   {cell(o)}   {cell(c)}   {rs} {ratio}", flush=True)
            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
