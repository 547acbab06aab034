"""pyscnn (Mishkin, Sahiner & Pilanci 2022, `pip install pyscnn`) beside nncert's ADMM on the same convex program.

pyscnn solves the same sampled convex reformulation of a two-layer ReLU network (its ``ConvexReLU`` model with
gate vectors G: patterns 1[X G >= 0]) by an augmented-Lagrangian method with R-FISTA inner solves (``AL``), in
numpy through its ``lab`` backend. Here it gets exactly nncert's gates (``sample_gates`` on the data with the
intercept column appended, no separate bias), so the patterns are the same (pyscnn keeps duplicate patterns,
which does not change the optimum), ``unitize_data=False``, float64, and its regulariser lam = beta / n because
pyscnn scales the squared loss by 1/(2n) (its objective is nncert's divided by n). Its returned convex weights are
re-evaluated by the same numpy objective and violation as every other solver (bench/convex_bench.py), against
f* from cvxpy + Clarabel (cached from an earlier run of that bench when --fstar is given). pyscnn's point is then
projected onto the cones by the same Hildreth projection nncert's converged ADMM applies (its gap and time are
reported separately), so that both are compared at feasible points.

pyscnn's ``lab`` backend imports ``opt_einsum`` only for ``lab.einsum``; that package is not installed here,
so a stand-in calling ``numpy.einsum`` is registered before the import (no other change to pyscnn).

    PYTHONPATH=python python bench/convex_pyscnn_bench.py --n 2000 --d 50 --patterns 50 --fstar 307.34628
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import numpy as np

import nncert
from nncert.convex import formulation as F
from nncert.convex.patterns import sample_gates, sample_patterns

sys.path.insert(0, os.path.dirname(__file__))
from convex_bench import problem  # noqa: E402


def _opt_einsum_stand_in() -> None:
    try:
        import opt_einsum  # noqa: F401
    except ImportError:
        mod = types.ModuleType("opt_einsum")

        def contract(path, *args, backend=None):
            if backend == "torch":
                import torch
                return torch.einsum(path, *args)
            return np.einsum(path, *args)

        mod.contract = contract
        sys.modules["opt_einsum"] = mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--patterns", type=int, default=50)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--fstar", type=float, default=None, help="reference optimum (else cvxpy + Clarabel is run)")
    ap.add_argument("--tol", type=float, nargs="+", default=[1e-6], help="pyscnn AL tol and constraint_tol")
    args = ap.parse_args()
    _opt_einsum_stand_in()
    from scnn.metrics import Metrics
    from scnn.models import ConvexReLU as ScnnConvexReLU
    from scnn.optimize import optimize_model
    from scnn.regularizers import NeuronGL1
    from scnn.solvers import AL

    n, d, P, beta = args.n, args.d, args.patterns, args.beta
    X, y = problem(n, d)
    Xa = np.hstack([X, np.ones((n, 1))])
    G = sample_gates(Xa.shape[1], P, 0)
    D = sample_patterns(Xa, P, 0)
    fstar = args.fstar
    if fstar is None:
        from nncert.convex.reference import solve_reference
        ref = solve_reference(Xa, y, D, beta, "squared")
        fstar = F.objective(Xa, D, ref.V, ref.W, y, beta, "squared")
        print(f"cvxpy+Clarabel: {ref.seconds:.2f} s, objective {fstar:.8g}", flush=True)
    rows = []
    for tol in args.tol:
        model = ScnnConvexReLU(G, c=1, bias=False)
        solver = AL(model, tol=tol, constraint_tol=tol)
        t0 = time.perf_counter()
        model, _ = optimize_model(model, solver, Metrics(), Xa, y, regularizer=NeuronGL1(beta / n),
                                  return_convex=True, unitize_data=False, dtype="float64")
        secs = time.perf_counter() - t0
        V = np.asarray(model.parameters[0][0]).T  # (d, p): pyscnn stores (c, p, d)
        W = np.asarray(model.parameters[1][0]).T
        # pyscnn drops duplicate and empty patterns and reorders its gates (np.unique): its patterns are
        # 1[X G' > 0] with the returned model's G'. They must be the same set as nncert's (checked).
        Gm = np.asarray(model.G)
        Dg = (Xa @ Gm > 0).astype(np.float64)
        same = {c.tobytes() for c in Dg.T} == {c.tobytes() for c in D.T}
        obj = F.objective(Xa, Dg, V, W, y, beta, "squared")
        viol = F.violation(Xa, Dg, V, W)
        scale = max(1.0, float(np.abs(Xa @ V).max()), float(np.abs(Xa @ W).max()))
        gap = (obj - fstar) / abs(fstar)
        # The same final step as nncert's converged ADMM: each group projected onto its cone (Hildreth, in the
        # core), so that both are compared at feasible points; its time is reported separately.
        from nncert import _core
        t1 = time.perf_counter()
        Uproj, _ = _core.convex_project_cones(np.ascontiguousarray(Xa), np.ascontiguousarray(Dg),
                                              np.ascontiguousarray(np.hstack([V, W])))
        proj_s = time.perf_counter() - t1
        p = V.shape[1]
        Vp, Wp = Uproj[:, :p], Uproj[:, p:]
        obj_p = F.objective(Xa, Dg, Vp, Wp, y, beta, "squared")
        viol_p = F.violation(Xa, Dg, Vp, Wp)
        row = {"n": n, "d": d, "P": P, "tol": tol, "s": secs, "objective": obj, "gap": gap, "violation": viol,
               "feasible": viol <= 1e-6 * scale, "same_patterns": same, "projection_s": proj_s,
               "projected_gap": (obj_p - fstar) / abs(fstar), "projected_violation": viol_p,
               "load": os.getloadavg()[0]}
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
