"""Probe behind bench/README.md "Large sizes": is an accelerated projected-gradient method a way to the exact
convex ReLU program at n = 60,000, d = 784? FISTA (gradient restart) on the squared loss with the group norms
and cones handled by their exact prox, shrink(P_C(z)), where P_C, the projection onto {v: S_i X v >= 0}, is
computed by a working set of constraints (NNLS on the set, one GEMM to find the violated ones, repeat). Prints
the objective, a dual lower bound (residual scaled to dual feasibility, ||P_C(+-X^T D_i r)|| <= beta), the
working-set sizes and the time spent in NNLS.

    PYTHONPATH=python python bench/convex_projected_gradient_probe.py 4000 100 20 150   # n d P iterations
"""
import os, sys, time, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scipy.optimize import nnls
from convex_bench import problem
from nncert.convex.patterns import sample_patterns
from nncert.convex import formulation as F

n, d, P = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]); maxit = int(sys.argv[4])
X, y = problem(n, d); Xa = np.hstack([X, np.ones((n, 1))]); D = sample_patterns(Xa, P, 0); P = D.shape[1]
S = 2 * D - 1; beta = 1.0; dd = Xa.shape[1]
S2 = np.hstack([S, S]); XN = np.linalg.norm(Xa, axis=1).max()   # signs for the 2P columns (v cones then w cones)
t0 = time.time()
z = np.random.default_rng(1).standard_normal((dd, P))
for _ in range(30):
    Gz = np.sum(D * (Xa @ z), axis=1); z = Xa.T @ (D * Gz[:, None]); L = np.linalg.norm(z); z /= L
L = 2 * L * 1.01
print(f"L {L:.3e} setup {time.time()-t0:.1f}s", flush=True)
act = [np.zeros(0, dtype=np.int64) for _ in range(2 * P)]
stats = {"rounds": 0, "nnls": 0.0, "gemm": 0}

def project(Z, act, tol=1e-9, max_rounds=200):
    """Columns of Z (dd x 2P) projected onto their cones {v: S_j * (X v) >= 0}; act: working sets (updated)."""
    out = Z.copy(); todo = list(range(Z.shape[1])); binding = {}
    for rnd in range(max_rounds):
        for j in todo:
            W = act[j]
            if len(W) == 0:
                out[:, j] = Z[:, j]; continue
            A = (S2[W, j][:, None] * Xa[W]).T          # dd x |W|
            t = time.time(); lam, _ = nnls(A, -Z[:, j], maxiter=20 * len(W) + 100); stats["nnls"] += time.time() - t
            out[:, j] = Z[:, j] + A @ lam
            binding[j] = W[lam > 0]
        XV = Xa @ out[:, todo]; stats["gemm"] += 1
        viol = -(S2[:, todo] * XV)
        scale = np.linalg.norm(Z[:, todo], axis=0) * XN + 1e-300
        nxt = []
        for c, j in enumerate(todo):
            bad = np.nonzero(viol[:, c] > tol * scale[c])[0]
            if len(bad):
                worst = bad[np.argsort(-viol[bad, c])[:max(20, dd // 4)]]
                act[j] = np.union1d(act[j], worst); nxt.append(j)
        stats["rounds"] += 1
        if not nxt:
            for j, b in binding.items(): act[j] = b   # the next call starts from the binding constraints
            return out, None
        todo = nxt
    raise RuntimeError("projection: the working set did not settle")

def shrink(Pz, t):
    nr = np.linalg.norm(Pz, axis=0); f = np.maximum(0, 1 - t * beta / np.maximum(nr, 1e-300)); return Pz * f

def pred(U): return np.sum(D * (Xa @ (U[:, :P] - U[:, P:])), axis=1)
def obj(U): return 0.5 * np.sum((pred(U) - y) ** 2) + beta * np.linalg.norm(U, axis=0).sum()

U = np.zeros((dd, 2 * P)); Uy = U.copy(); tk = 1.0; best = np.inf
dual_act = [np.zeros(0, dtype=np.int64) for _ in range(2 * P)]
for it in range(1, maxit + 1):
    r = pred(Uy) - y; g = Xa.T @ (D * r[:, None]); G = np.hstack([g, -g])
    Pz, _ = project(Uy - G / L, act); Un = shrink(Pz, 1 / L)
    if np.sum((Uy - Un) * (Un - U)) > 0: tk = 1.0
    tn = (1 + np.sqrt(1 + 4 * tk * tk)) / 2
    Uy = Un + (tk - 1) / tn * (Un - U); U, tk = Un, tn
    if it % 25 == 0 or it == maxit:
        f = obj(U)
        res = y - pred(U); g = Xa.T @ (D * res[:, None])
        # dual: ||P_C(+-g_i)|| <= beta after scaling
        PG, _ = project(np.hstack([g, -g]), dual_act)
        m = np.linalg.norm(PG, axis=0).max()
        smax = min(1.0, beta / m) if m > 0 else 1.0
        s = np.clip(res @ y / (res @ res), 0, smax); lb = s * res @ y - 0.5 * s * s * res @ res
        sizes = [len(a) for a in act]
        print(f"it {it} f {f:.6f} lb {lb:.6f} cert {(f-lb)/f:.2e} viol {F.violation(Xa, D, U[:, :P], U[:, P:]):.1e} "
              f"act mean {np.mean(sizes):.0f} max {max(sizes)} rounds/it {stats['rounds']/it:.2f} nnls {stats['nnls']:.1f}s t {time.time()-t0:.1f}", flush=True)
