"""Implicit (equilibrium) layers: forward-pass cost against the explicit Dense + activation layer of the same size,
and the certified Lipschitz bound (lipsdp-neuron / nsr through the chain) against the naive bound and the sampled
lower bound. Usage: python bench/implicit_bench.py [--batch 10000] [--m 64] [--n 32]"""

from __future__ import annotations

import argparse
import time

import numpy as np

import nncert


def best(f, reps=3):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        t.append(time.perf_counter() - t0)
    return min(t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--m", type=int, default=64)
    ap.add_argument("--n", type=int, default=32)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    m, n = a.m, a.n
    U = rng.standard_normal((m, n)) / np.sqrt(n)
    X = rng.standard_normal((a.batch, n))
    W = rng.standard_normal((m, m))
    S = rng.standard_normal((m, m))
    cases = {
        "||W|| = 0.5 (contraction)": W * (0.5 / np.linalg.norm(W, 2)),
        "||W|| = 0.9 (contraction)": W * (0.9 / np.linalg.norm(W, 2)),
        "||W|| = %.1f (monotone only)": -0.5 * np.eye(m) + (S - S.T) / np.sqrt(m),
    }
    dense = nncert.Network([nncert.Dense(U), nncert.ReLU()])
    td = best(lambda: dense(X))
    print(f"m={m} n={n} batch={a.batch}; Dense+ReLU forward: {td * 1e3:.2f} ms")
    for name, Wc in cases.items():
        if "%" in name:
            name = name % np.linalg.norm(Wc, 2)
        net = nncert.Network([nncert.Implicit(Wc, U), nncert.Dense(rng.standard_normal((1, m)))])
        info = net.implicit_info()[0]
        t = best(lambda: net(X))
        print(f"  {name}: {t * 1e3:.1f} ms ({t / td:.0f}x Dense+ReLU), iteration {info['iteration']}, "
              f"rate bound {info['rate']:.3f}")
    for mm, nn in ((8, 4), (32, 16)):
        Wc = rng.standard_normal((mm, mm))
        net = nncert.Network([nncert.Implicit(Wc * (0.8 / np.linalg.norm(Wc, 2)), rng.standard_normal((mm, nn))),
                              nncert.Dense(rng.standard_normal((2, mm)))])
        for act_name, act in (("ReLU", nncert.ReLU()), ("MaxMin", nncert.MaxMin())):
            net2 = nncert.Network([nncert.Implicit(net.layers[0].W, net.layers[0].U, activation=act), net.layers[1]])
            t0 = time.perf_counter()
            r = nncert.lipschitz(net2)
            dt = time.perf_counter() - t0
            print(f"  lipschitz m={mm} n={nn} {act_name}: {r.method} bound {r.bound:.4f} (certified {r.certified}), "
                  f"naive {r.naive_bound:.4f}, lower {r.lower_bound:.4f}, {dt:.2f} s")


if __name__ == "__main__":
    main()
