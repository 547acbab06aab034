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


DEMOS = [demo_network]


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
    net = m.to_network()
    print(f"ADMM ({m.u_solver_} u-step): objective {m.objective_:.8f} in {m.n_iter_} iterations ({m.status_})")
    print(f"cvxpy + Clarabel reference:  objective {ref.objective_:.8f}")
    print(f"network: {net!r}; max |net(X) - predict(X)| = {np.abs(net(X)[:, 0] - m.predict(X)).max():.1e}")


DEMOS.append(demo_convex)
