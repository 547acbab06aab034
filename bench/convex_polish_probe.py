"""Probe (negative result, kept for the record): OSQP-style polishing of a moderately accurate ADMM point.

Runs the core ADMM for K iterations (no projection), takes the support groups and, per group, the rows whose
normalised margin s_k x_k^T u_j / (||x_k|| ||u_j||) is below tau as the active set, restricts each group to the null
space of its active rows and solves the reduced smooth problem (group norms are smooth away from 0) by damped
Newton in numpy. At n = 2000, d = 50, P = 50 (bench problem, f* from Clarabel) the polished points were infeasible
(violation 0.45-4.5) or worse than f* by 13-21%: identifying the active set from primal margins does not work at
the accuracy the ADMM reaches in 1,000-2,000 iterations (gap 1e-2 / 1.5e-3). See bench/README.md.

    PYTHONPATH=python python bench/convex_polish_probe.py 1000 2000
"""
import sys, time, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from convex_bench import problem
from nncert.convex.patterns import sample_patterns
from nncert.convex import formulation as F
from nncert import _core
FSTAR = 307.3462827832162
n, d, P = 2000, 50, 50
X, y = problem(n, d)
Xa = np.hstack([X, np.ones((n, 1))])
D = np.ascontiguousarray(sample_patterns(Xa, P, 0).astype(float))
rho = float(np.sum(Xa*Xa))/n
beta = 1.0
def obj(V, W): return F.objective(Xa, D, V, W, y, beta, "squared")
def polish(V, W, tau, verbose=True):
    t0 = time.perf_counter()
    dd = Xa.shape[1]
    U = np.hstack([V, W]); S = 2*D - 1
    cols, Ns, blocks = [], [], []
    for j in range(2*P):
        u = U[:, j]; nu_ = np.linalg.norm(u)
        if nu_ == 0: continue
        jj = j % P; sgn = 1.0 if j < P else -1.0
        rows = S[:, jj][:, None] * Xa
        marg = rows @ u / (np.linalg.norm(Xa, axis=1) * nu_)
        act = np.where(marg < tau)[0]
        if len(act):
            _, sv, vt = np.linalg.svd(rows[act], full_matrices=True)
            r = int(np.sum(sv > 1e-9 * sv[0]))
            N = vt[r:].T
        else:
            N = np.eye(dd)
        if N.shape[1] == 0: continue
        cols.append((j, jj, sgn)); Ns.append(N)
        blocks.append(sgn * (D[:, jj][:, None] * Xa) @ N)
    if not blocks:
        print(f"  polish tau {tau:.0e}: every group fully active"); return V, W
    M = np.hstack(blocks)
    sizes = [N.shape[1] for N in Ns]; off = np.cumsum([0] + sizes)
    z = np.concatenate([N.T @ U[:, j] for (j, _, _), N in zip(cols, Ns)])
    MtM = M.T @ M; Mty = M.T @ y
    def f(z):
        r = M @ z - y
        return 0.5 * r @ r + beta * sum(np.linalg.norm(z[off[i]:off[i+1]]) for i in range(len(Ns)))
    fz = f(z)
    for it in range(50):
        g = MtM @ z - Mty
        H = MtM.copy()
        for i in range(len(Ns)):
            zi = z[off[i]:off[i+1]]; nz = np.linalg.norm(zi)
            g[off[i]:off[i+1]] += beta * zi / nz
            H[off[i]:off[i+1], off[i]:off[i+1]] += beta * (np.eye(len(zi)) / nz - np.outer(zi, zi) / nz**3)
        step = np.linalg.solve(H, -g)
        dec = -g @ step
        t = 1.0
        while f(z + t*step) > fz - 0.25 * t * dec and t > 1e-10: t *= 0.5
        z = z + t*step; fz = f(z)
        if dec < 1e-14 * max(1, fz): break
    U2 = np.zeros_like(U)
    for i, ((j, _, _), N) in enumerate(zip(cols, Ns)): U2[:, j] = N @ z[off[i]:off[i+1]]
    V2, W2 = U2[:, :P], U2[:, P:]
    viol = F.violation(Xa, D, V2, W2)
    if verbose:
        print(f"  polish tau {tau:.0e}: groups {len(Ns)}, reduced dim {M.shape[1]}, newton it {it+1}, "
              f"{time.perf_counter()-t0:.2f}s, obj {obj(V2,W2):.10g} gap {(obj(V2,W2)-FSTAR)/FSTAR:.2e}, viol {viol:.1e}")
    return V2, W2
for K in [int(a) for a in sys.argv[1:]]:
    kw = dict(loss="squared", rho=rho, max_iter=K, eps_abs=1e-12, eps_rel=1e-12, adapt_every=25, anderson=10,
              anderson_safeguard=2.0, relaxation=1.0, check_every=10, project=False)
    t = time.perf_counter()
    r = _core.convex_admm(Xa, y[:, None].copy(), D, beta, **kw)[0]
    V, W = r["v"], r["w"]
    print(f"K={K}: admm {time.perf_counter()-t:.1f}s obj {obj(V,W):.10g} gap {(obj(V,W)-FSTAR)/FSTAR:.2e} viol {F.violation(Xa, D, V, W):.1e}", flush=True)
    for tau in (1e-3, 1e-4, 1e-5):
        polish(V, W, tau)
