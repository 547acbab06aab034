"""Adversarial (l-inf) convex training: nncert's robust ADMM (Rust) vs cvxpy + Clarabel on the same program.

Synthetic data: a binary task (two interleaved noisy half-moons in d dimensions, hinge loss, labels +-1) and a
regression task (teacher two-layer ReLU net + noise, squared loss). The same sampled activation patterns for
both solvers, the same eps; both solutions are re-evaluated by the same numpy robust objective
(nncert.convex.formulation). f* is Clarabel's objective (default tolerances). "ADMM to 1e-4": ConvexReLU(
solver="admm", adversarial_eps=eps) is run at tol 1e-5, 1e-6, 1e-7 (each from scratch) until its returned weights
are within 1e-4 relative of f* and satisfy the robust cone constraints to 1e-9; the wall time of that whole fit is
reported (LP screen, factorisation and final projection included), with its iteration count. A run stopped by
max_iter ends the sweep; its returned weights are still projected onto the robust cones (so they are feasible and
their objective is a true worst case), and the row says whether they are within 1e-4 of f*.

    PYTHONPATH=python python bench/convex_adv_bench.py --sizes 100 200 --d 5 --patterns 30 --eps 0.05
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


def moons(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 2, n)
    t = rng.uniform(0, np.pi, n)
    X = np.zeros((n, d))
    X[:, 0] = np.where(lab == 0, np.cos(t), 1 - np.cos(t))
    X[:, 1] = np.where(lab == 0, np.sin(t), 0.5 - np.sin(t))
    X += 0.15 * rng.standard_normal((n, d))
    return X, np.where(lab == 1, 1.0, -1.0)


def teacher(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Wt = rng.standard_normal((10, d)) / np.sqrt(d)
    return X, np.maximum(X @ Wt.T, 0) @ rng.standard_normal(10) + 0.1 * rng.standard_normal(n)


def run(task: str, n: int, d: int, P: int, eps: float, beta: float, max_iter: int) -> dict:
    X, y = (moons if task == "hinge" else teacher)(n, d)
    loss = "hinge" if task == "hinge" else "squared"
    Xa = np.hstack([X, np.ones((n, 1))])
    D = sample_patterns(Xa, P, 0)
    feat = np.array([True] * d + [False])
    row = {"loss": loss, "n": n, "d": d, "P": int(D.shape[1]), "eps": eps, "beta": beta}
    print(f"\n--- {loss}, n = {n}, d = {d}, P = {D.shape[1]}, eps = {eps}, beta = {beta} ---", flush=True)
    ref = solve_reference(Xa, y, D, beta, loss, eps, feat)
    fstar = F.objective(Xa, D, ref.V, ref.W, y, beta, loss, eps, feat)
    row.update(clarabel_s=ref.seconds, clarabel_objective=fstar, clarabel_status=ref.status,
               clarabel_violation=F.violation(Xa, D, ref.V, ref.W, eps, feat))
    print(f"cvxpy+Clarabel: {ref.seconds:.2f} s, objective {fstar:.8g} ({ref.status}), "
          f"violation {row['clarabel_violation']:.1e}", flush=True)
    target = y if loss == "squared" else y.astype(int)
    for tol in (1e-5, 1e-6, 1e-7):
        t0 = time.perf_counter()
        m = nncert.ConvexReLU(beta=beta, loss=loss, adversarial_eps=eps, patterns=D, tol=tol,
                              max_iter=max_iter).fit(X, target)
        secs = time.perf_counter() - t0
        gap = (m.objective_ - fstar) / abs(fstar)
        print(f"ADMM tol {tol:.0e}: {secs:.2f} s, {m.n_iter_} it., {m.status_}, objective {m.objective_:.8g}, "
              f"gap {gap:.1e}, violation {m.constraint_violation_:.1e}, u-step {m.u_solver_}, "
              f"{int(m.robust_patterns_.sum())} of {D.shape[1]} patterns kept by the LP screen", flush=True)
        row[f"admm_{tol:.0e}"] = dict(seconds=secs, iterations=int(m.n_iter_), status=m.status_,
                                      objective=m.objective_, gap=gap, violation=m.constraint_violation_,
                                      kept=int(m.robust_patterns_.sum()))
        if abs(gap) <= 1e-4 and m.constraint_violation_ <= 1e-9:
            row["admm_to_1e-4_s"] = secs
            break
        if m.status_ != "converged":  # a tighter tolerance would not converge either
            break
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--d", type=int, default=5)
    ap.add_argument("--patterns", type=int, default=30)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--beta", type=float, default=0.05)
    ap.add_argument("--tasks", nargs="+", default=["hinge", "squared"])
    ap.add_argument("--max-iter", type=int, default=50000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.getLogger("nncert.convex").setLevel(logging.ERROR)
    rows = [run(t, n, args.d, args.patterns, args.eps, args.beta, args.max_iter)
            for t in args.tasks for n in args.sizes]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
