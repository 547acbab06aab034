"""``nncert demo``: a tour of each capability on small built-in examples."""

from __future__ import annotations

import os

import numpy as np


def data_dir() -> str:
    return os.environ.get("NNCERT_DATA", os.path.join(os.getcwd(), "..", "shared", "data"))


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 66 - len(title)))


def demo_network() -> None:
    import nncert

    section("Network: one representation, Rust forward pass")
    rng = np.random.default_rng(0)
    net = nncert.Network([
        nncert.Dense(rng.standard_normal((8, 4)), rng.standard_normal(8)), nncert.ReLU(),
        nncert.Dense(rng.standard_normal((8, 8))), nncert.MaxMin(),
        nncert.Residual([nncert.Dense(0.1 * rng.standard_normal((8, 8))), nncert.Tanh()]),
        nncert.Dense(rng.standard_normal((2, 8))),
    ])
    print(net.summary())
    x = rng.standard_normal((5, 4))
    print("net(x) for 5 inputs:\n", np.round(net(x), 4))
    path = os.path.join(data_dir(), "vnncomp2021", "acasxu", "ACASXU_run2a_1_1_batch_2000.onnx")
    if os.path.exists(path):
        acas = nncert.Network.from_onnx(path)
        print(f"\nACAS Xu network read from ONNX: {acas!r}")
        print("outputs at the origin:", np.round(acas(np.zeros(5)), 5))
    else:
        print(f"(benchmark data not found at {data_dir()}; set NNCERT_DATA to show an ACAS Xu network)")




def demo_verify() -> None:
    import nncert

    section("Verification: bounds + branch and bound in Rust, Z3 leaves, replayed counterexamples")
    net = nncert.Network([nncert.Dense([[1.0, -1.0], [-1.0, 1.0]]), nncert.ReLU(), nncert.Dense([[1.0, 1.0]])])
    box = [(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))]
    print("f(x) = |x0 - x1| on [-1, 1]^2")
    for c in (2.5, 1.5):
        prop = nncert.Property(box, [(np.array([[-1.0]]), np.array([-c]))])  # unsafe: f(x) >= c
        r = nncert.verify(net, prop, timeout=10)
        print(f"  unsafe if f(x) >= {c}: {r.status:8s} via {r.method:6s}"
              + (f"  x = {np.round(r.counterexample[0], 4)}, f = {r.counterexample[1][0]:.4f}" if r.counterexample else ""))
    onnx = os.path.join(data_dir(), "vnncomp2021", "acasxu", "ACASXU_run2a_1_1_batch_2000.onnx")
    vnn = os.path.join(data_dir(), "vnncomp2021", "acasxu", "prop_4.vnnlib")
    if os.path.exists(onnx):
        r = nncert.verify(nncert.Network.from_onnx(onnx), nncert.Property.from_vnnlib(vnn), timeout=60)
        print(f"ACAS Xu 1_1, property 4: {r.status} in {r.seconds:.2f} s "
              f"({r.stats['nodes']} nodes, {r.stats['unstable']} unstable ReLUs at the root)")
    clf = nncert.Network([nncert.Dense([[1.0, -1.0], [-1.0, 1.0]]), nncert.ReLU(), nncert.Dense(np.eye(2))])
    for eps in (0.2, 0.3):
        rr = nncert.verify_region(clf, np.array([0.3, -0.2]), eps, 0.01, find="all")
        print(f"DLV grid search around (0.3, -0.2), eps {eps}, step 0.01: {rr.status}; {rr.n_grid} grid points, "
              f"{rr.n_pruned} pruned by bounds, {rr.n_evaluated} evaluated, {len(rr.points)} misclassified "
              f"(exhaustive for the grid only)")



def demo_solvers() -> None:
    import nncert

    section("Linear solvers: CG, IC(0)-PCG and the learned DCDM on 3D Poisson")
    A = nncert.solvers.poisson3d(16, obstacles="random", seed=11)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    print(f"7-point Laplacian on a 16^3 grid with obstacles: {A.shape[0]} unknowns, {A.nnz} nonzeros")
    runs = [("cg", lambda: nncert.solvers.cg(A, b, tol=1e-6, progress=False)),
            ("pcg ic0", lambda: nncert.solvers.cg(A, b, tol=1e-6, precond="ic0", progress=False))]
    try:
        import torch  # noqa: F401
        runs.append(("dcdm", lambda: nncert.solvers.DCDM("pretrained").solve(A, b, tol=1e-6, progress=False)))
    except ImportError:
        print("(torch not installed: skipping DCDM)")
    for name, f in runs:
        x, info = f()
        print(f"{name:>8}: {info.iterations:4d} iterations, {info.seconds:.3f}s, true residual "
              f"{info.true_residual:.1e} (converged={info.converged})")



def demo_lipschitz() -> None:
    import nncert

    section("Lipschitz: certified upper bounds (LipSDP, LipSDP-NSR)")
    rng = np.random.default_rng(1)
    q1, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    net = nncert.Network([nncert.Dense(rng.standard_normal((8, 4))), nncert.MaxMin(),
                          nncert.Dense(q1), nncert.MaxMin(), nncert.Dense(rng.standard_normal((2, 8)))])
    for method in ("naive", "nsr"):
        r = nncert.lipschitz(net, method=method)
        print(f"{method:6s} bound {r.bound:.5f}  certified={r.certified}  lower bound {r.lower_bound:.5f}")
    path = os.path.join(data_dir(), "lipschitz", "relu_random_weights.npz")
    if os.path.exists(path):
        relu = nncert.Network.from_npz(path, activation="relu")
        for method in ("lipsdp-layer", "lipsdp-neuron"):
            r = nncert.lipschitz(relu, method=method)
            print(f"relu_random_weights {method}: {r.bound:.3f} (naive {r.naive_bound:.3f}, "
                  f"lower {r.lower_bound:.3f}, {r.seconds:.2f} s)")




def run_demo() -> None:
    import nncert

    print(f"nncert {nncert.__version__}")
    for demo in DEMOS:
        demo()


def demo_convex() -> None:
    import nncert

    section("Convex training: a globally optimal two-layer ReLU network")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2
    m = nncert.ConvexReLU(n_patterns=30, beta=0.05, tol=1e-7, max_iter=20000).fit(X, y)
    ref = nncert.ConvexReLU(n_patterns=30, beta=0.05, solver="cvxpy", patterns=m.patterns_).fit(X, y)
    ipm = nncert.ConvexReLU(n_patterns=30, beta=0.05, solver="ipm", patterns=m.patterns_, tol=1e-8).fit(X, y)
    net = m.to_network()
    print(f"ADMM ({m.u_solver_} u-step): objective {m.objective_:.8f} in {m.n_iter_} iterations ({m.status_})")
    print(f"interior point ({ipm.ipm_system_} system): objective {ipm.objective_:.8f} in {ipm.n_iter_} Newton steps "
          f"({ipm.status_}, duality gap {ipm.ipm_gap_:.0e})")
    print(f"cvxpy + Clarabel reference:  objective {ref.objective_:.8f}")
    print(f"network: {net!r}; max |net(X) - predict(X)| = {np.abs(net(X)[:, 0] - m.predict(X)).max():.1e}")


# The tour, in the order of DESIGN.md's capabilities.
DEMOS = [demo_network, demo_lipschitz, demo_verify, demo_convex, demo_solvers]
