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


DEMOS.append(demo_lipschitz)


def run_demo() -> None:
    import nncert

    print(f"nncert {nncert.__version__}")
    for demo in DEMOS:
        demo()
