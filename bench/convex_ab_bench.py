"""Same-process A/B of the core ADMM: a saved build of the extension (the baseline) against the current one.

Both are called directly (`_core.convex_admm`) on the same data, patterns and settings as `ConvexReLU(solver="admm")`
uses (rho = ||X||_F^2 / n, Anderson memory 10, safeguard 2, no over-relaxation, residual balancing every 25,
eps_abs = 0.1 tol, eps_rel = tol, cone projection when converged); the current build additionally gets the new
estimator defaults (check_every = 10, pcg_decay = 1e-2) unless --variants says otherwise. Objectives and violations
are re-evaluated in numpy. Runs alternate baseline / current for --reps rounds.

Build the baseline from an older commit and keep its `_core.abi3.so` outside the tree, e.g.
    git worktree add /tmp/base f18eea8 && (cd /tmp/base && cargo build --release -p nncert-py)
    cp /tmp/base/target/release/lib_core.so /tmp/base_core.abi3.so
    PYTHONPATH=python python bench/convex_ab_bench.py --baseline /tmp/base_core.abi3.so --n 2000 --d 50 --patterns 50
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import time

import numpy as np

from nncert import _core as current
from nncert.convex import formulation as F
from nncert.convex.patterns import sample_patterns
from nncert.convex.reference import solve_reference

from convex_bench import problem


def load_extension(path: str):
    loader = importlib.machinery.ExtensionFileLoader("_core", path)
    spec = importlib.util.spec_from_file_location("_core", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="path of the baseline build's _core.abi3.so")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--patterns", type=int, default=50)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--u-solver", default="auto")
    ap.add_argument("--time-limit", type=float, default=float("inf"))
    ap.add_argument("--max-iter", type=int, default=50000)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--clarabel", action="store_true", help="run cvxpy + Clarabel once for f*")
    ap.add_argument("--fstar", type=float, default=None)
    ap.add_argument("--variants", default="{'current': dict(check_every=10, pcg_decay=1e-2)}",
                    help="python dict: name -> extra keyword arguments for the current build")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    base = load_extension(args.baseline)
    X, y = problem(args.n, args.d)
    n = X.shape[0]
    Xa = np.hstack([X, np.ones((n, 1))])
    D = np.ascontiguousarray(sample_patterns(Xa, args.patterns, 0).astype(float))
    out = {"n": n, "d": args.d, "P": int(D.shape[1]), "beta": args.beta, "tol": args.tol, "runs": []}
    fstar = args.fstar
    if args.clarabel:
        ref = solve_reference(Xa, y, D, args.beta, "squared")
        fstar = F.objective(Xa, D, ref.V, ref.W, y, args.beta, "squared")
        out.update(clarabel_s=ref.seconds, clarabel_status=ref.status, clarabel_load=os.getloadavg()[0])
        print(f"cvxpy+Clarabel: {ref.seconds:.2f} s ({ref.status}), objective {fstar:.10g}, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    out["fstar"] = fstar
    rho = max(float(np.sum(Xa * Xa)) / n, 1e-8)
    kw = dict(loss="squared", rho=rho, max_iter=args.max_iter, eps_abs=0.1 * args.tol, eps_rel=args.tol,
              u_solver=args.u_solver, time_limit=args.time_limit, adapt_every=25, anderson=10,
              anderson_safeguard=2.0, relaxation=1.0)
    variants = [("baseline", base, {})] + [(k, current, v) for k, v in eval(args.variants).items()]
    for rep in range(args.reps):
        for name, mod, extra in variants:
            t0 = time.perf_counter()
            r = mod.convex_admm(Xa, y[:, None].copy(), D, args.beta, **kw, **extra)[0]
            secs = time.perf_counter() - t0
            V, W = r["v"], r["w"]
            obj = F.objective(Xa, D, V, W, y, args.beta, "squared")
            viol = F.violation(Xa, D, V, W)
            gap = (obj - fstar) / abs(fstar) if fstar is not None else float("nan")
            inner = int(r["history"][:, 6].sum())
            row = dict(name=name, rep=rep, s=secs, iters=int(r["iterations"]), status=r["status"], objective=obj,
                       gap=gap, violation=viol, inner=inner, u_solver=r["u_solver"], factor_s=r["factor_seconds"],
                       ms_per_iter=1000 * (secs - r["factor_seconds"]) / max(1, int(r["iterations"])),
                       load=os.getloadavg()[0], extra=extra)
            out["runs"].append(row)
            print(f"{name}: {secs:.2f} s, {row['iters']} it ({row['u_solver']}, {inner} inner), {row['status']}, "
                  f"objective {obj:.10g}, gap {gap:.2e}, violation {viol:.1e}, {row['ms_per_iter']:.2f} ms/it, "
                  f"load {row['load']:.1f}", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
