"""LipSDP-NSR on the MaxMin benchmark networks: nncert's certified decoupled chain (its own interior-point solver
IPM, the default; SCS with directly built problem data; CLARABEL through cvxpy as the interior-point reference) against a straightforward one-big-LMI cvxpy formulation solved by SCS, in the
same run. Prints one row per network (bound, seconds, ratios) and writes JSON lines to --out.

    PYTHONPATH=python python bench/lipschitz_bench.py --nets maxmin_l2trained_2fc_16 maxmin_l2trained_8fc_32
    python bench/lipschitz_bench.py --all --reference-timeout 600

The straightforward formulation: one LMI over (x, z_1, ..., z_L) with per-group multipliers
lambda_j I + gamma_j 11^T, no rescaling, no row-space restriction, built with W^T Q W symbolically.
Residual networks (x_1 = W_0 x, x_{k+1} = x_k + act(W_k x_k), y = W_last x_L) get the same one LMI over
(x, z_1, ..., z_m). The reference runs in a child process under a hard time limit and an address-space cap.
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


def _weights(name: str) -> list[np.ndarray]:
    with np.load(os.path.join(DATA, "lipschitz", f"{name}.npz")) as d:
        return [d[f"W{i}"] for i in range(len(d.files))]


def _big_lmi_problem(Ws: list[np.ndarray], residual: bool):
    """One LMI over (x, z_1, ..., z_m), z_k the k-th MaxMin layer's output; returns (problem, rho, N).

    Plain: z_k = act(W_k z_{k-1}) (z_0 = x), y = W_last z_m. Residual: x_1 = W_0 x, x_{k+1} = x_k + z_k with
    z_k = act(W_k x_k), so x_k = W_0 x + z_1 + ... + z_{k-1} and y = W_last x_{m+1}. Each activation's
    quadratic constraint is v^T Q v - z^T Q z >= 0 on its input v and output z, Q = kron(diag(lam), I_2) +
    kron(diag(gam), 11^T), and the S-procedure gives rho |x|^2 - |y|^2 - sum_k QC_k >= 0 as one LMI."""
    import cvxpy as cp

    acts = Ws[1:-1] if residual else Ws[:-1]
    n0 = Ws[0].shape[1]
    widths = [W.shape[0] for W in acts]
    N = n0 + sum(widths)
    offs = np.cumsum([0, n0] + widths)

    def select(k: int) -> np.ndarray:  # block k of the stacked vector (0: x, k: z_k)
        E = np.zeros((n0 if k == 0 else widths[k - 1], N))
        E[:, offs[k]:offs[k + 1]] = np.eye(E.shape[0])
        return E

    state = Ws[0] @ select(0) if residual else select(0)  # x_k (residual) or z_{k-1} (plain) as a map of the stack
    rho = cp.Variable(nonneg=True)
    terms = [cp.bmat([[rho * np.eye(n0), np.zeros((n0, N - n0))], [np.zeros((N - n0, n0)), np.zeros((N - n0, N - n0))]])]
    for k, W in enumerate(acts):
        G = W.shape[0] // 2
        lam, gam = cp.Variable(G, nonneg=True), cp.Variable(G)
        Q = cp.kron(cp.diag(lam), np.eye(2)) + cp.kron(cp.diag(gam), np.ones((2, 2)))
        A, Eout = W @ state, select(k + 1)
        terms.append(-(A.T @ Q @ A) + Eout.T @ Q @ Eout)
        state = state + Eout if residual else Eout
    C = Ws[-1] @ state
    terms.append(-(C.T @ C))
    M = sum(terms)
    return cp.Problem(cp.Minimize(rho), [0.5 * (M + M.T) >> 0]), rho, N


def _big_lmi_child(name: str, timeout: float, memory_gb: float, rescale: bool, conn) -> None:
    import resource

    import cvxpy as cp

    cap = int(memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    t_build = time.perf_counter()
    Ws = _weights(name)
    scale = 1.0
    if rescale:  # exact for plain MaxMin chains (positively homogeneous): unit spectral norms, bound scaled back
        norms = [float(np.linalg.norm(W, 2)) for W in Ws]
        Ws, scale = [W / s for W, s in zip(Ws, norms)], float(np.prod(norms))
    prob, rho, N = _big_lmi_problem(Ws, "residual" in name)
    data, chain, inverse = prob.get_problem_data(cp.SCS)
    t0 = time.perf_counter()
    conn.send({"lmi_size": N, "compile_seconds": t0 - t_build})
    print(f"  [{name}] big LMI ({N} x {N}) built and compiled in {t0 - t_build:.1f} s; solving", file=sys.stderr,
          flush=True)
    left = max(timeout - (t0 - t_build), 1.0)
    # QDLDL: SCS 3.3's automatic choice (MKL PARDISO where installed) spent over two minutes in its setup on
    # maxmin_l2trained_2fc_16's 320,409 x 17 constraint matrix without starting an iteration
    opts = {"eps_abs": 1e-6, "eps_rel": 1e-6, "time_limit_secs": left, "max_iters": 10**6, "linear_solver": "qdldl"}
    try:
        soln = chain.solve_via_data(prob, data, warm_start=False, verbose=False, solver_opts=opts)
        prob.unpack_results(soln, chain, inverse)
        status = prob.status
    except cp.error.SolverError as e:
        status = f"error: {e}"
    bound = scale * float(np.sqrt(rho.value)) if rho.value is not None else float("nan")
    conn.send({"bound": bound, "status": status, "solve_seconds": time.perf_counter() - t0})


def big_lmi_reference(name: str, timeout: float, memory_gb: float = 10.0, rescale: bool = False) -> dict:
    """The straightforward formulation, compiled by cvxpy and solved by SCS (eps 1e-6, QDLDL) in a child process: the
    compile counts against ``timeout`` (SCS gets what is left), the child is killed 120 s past it (SCS checks its
    time limit only between iterations) and its address space is capped at memory_gb."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_big_lmi_child, args=(name, timeout, memory_gb, rescale, send))
    proc.start()
    send.close()  # so that the child's death reads as EOF here, not as silence until the time limit
    out: dict = {"bound": float("nan"), "memory_cap_gb": memory_gb, "time_limit": timeout}
    done = died = False
    while not done and recv.poll(max(t0 + timeout + 120 - time.perf_counter(), 0.0)):
        try:
            msg = recv.recv()
        except EOFError:  # the child is gone (or going: an abort may take a moment to finish)
            died = True
            break
        out.update(msg)
        done = "status" in msg
    proc.join(10 if done or died else 0)
    if proc.is_alive():
        proc.kill()
        proc.join()
        out["status"] = "killed " + ("in SCS" if "compile_seconds" in out else "while cvxpy compiled") + \
            f" at {timeout + 120:.0f} s"
    elif not done:
        out["status"] = f"child died (exit code {proc.exitcode}; address space capped at {memory_gb:g} GB)"
    out["seconds"] = time.perf_counter() - t0
    return out


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
    ap.add_argument("--reference-rescaled", action="store_true",
                    help="also the one big LMI with every weight scaled to unit spectral norm (plain nets only)")
    ap.add_argument("--reference-memory", type=float, default=10.0, help="GB of address space for the reference")
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
            if not args.no_reference:
                row["reference_scs"] = big_lmi_reference(name, args.reference_timeout, memory_gb=args.reference_memory)
                log(name, "big LMI SCS", row["reference_scs"])
            if args.reference_rescaled and "residual" not in name:
                row["reference_scs_rescaled"] = big_lmi_reference(name, args.reference_timeout,
                                                                  memory_gb=args.reference_memory, rescale=True)
                log(name, "big LMI SCS, rescaled", row["reference_scs_rescaled"])
            i, o, c = row.get("ours_ipm"), row.get("ours_scs"), row.get("ours_clarabel")
            r = row.get("reference_scs") or row.get("reference_scs_rescaled")

            def cell(v):
                return f"{v['bound']:10.4f} {v['seconds']:8.2f}s" if v else "(not run)".rjust(20)
            rs = f"{r['bound']:10.4f} {r['seconds']:8.2f}s {r['status'][:5]:>5s}" if r else "(not run)".rjust(26)
            first = i or o or c
            ok = r and first and np.isfinite(r["bound"])
            ratio = f"{r['seconds'] / first['seconds']:9.1f}x" if ok else (f">{r['seconds'] / first['seconds']:.0f}x"
                                                                           if r and first else "")
            print(f"{name:28s} {cell(i)}   {cell(o)}   {cell(c)}   {rs} {ratio}", flush=True)
            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
