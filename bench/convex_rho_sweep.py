"""Iterations of the core ADMM (estimator settings, check_every 10) to tol 1e-6 for several initial rho (multiples
of ||X||_F^2 / n) and residual-balancing periods; gap against a tol-1e-10 run of the same problem.

    PYTHONPATH=python python bench/convex_rho_sweep.py 500 20 20 "[1.0, 0.3, 3.0, 0.1, 10.0]" "[25, 10, 50]"
"""
import sys, time, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from convex_bench import problem
from nncert.convex.patterns import sample_patterns
from nncert.convex import formulation as F
from nncert import _core
n, d, P = [int(a) for a in sys.argv[1:4]]
X, y = problem(n, d)
Xa = np.hstack([X, np.ones((n, 1))])
D = np.ascontiguousarray(sample_patterns(Xa, P, 0).astype(float))
rho0 = float(np.sum(Xa*Xa))/n
def run(tol, rmul=1.0, adapt=25, mem=10, **kw):
    a = dict(loss="squared", rho=rho0*rmul, max_iter=100000, eps_abs=0.1*tol, eps_rel=tol, adapt_every=adapt, anderson=mem, anderson_safeguard=2.0, relaxation=1.0, check_every=10)
    a.update(kw)
    t = time.perf_counter(); r = _core.convex_admm(Xa, y[:,None].copy(), D, 1.0, **a)[0]
    return r, time.perf_counter()-t
ref, _ = run(1e-10)
fs = F.objective(Xa, D, ref["v"], ref["w"], y, 1.0, "squared")
print("ref", ref["iterations"], fs)
for rmul in eval(sys.argv[4]):
    for adapt in eval(sys.argv[5]):
        r, t = run(1e-6, rmul, adapt)
        o = F.objective(Xa, D, r["v"], r["w"], y, 1.0, "squared")
        print(f"rho x{rmul} adapt {adapt}: {r['iterations']} it, {t:.1f}s, gap {(o-fs)/fs:.1e}, status {r['status']}", flush=True)
