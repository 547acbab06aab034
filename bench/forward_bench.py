"""Forward-pass throughput: nncert (Rust core) vs onnxruntime and torch (CPU), same run, same inputs.

Networks: ACAS Xu 1_1 (5 -> 6x50 -> 5) and MNIST 256x6 (784 -> 6x256 -> 10) from the benchmark data,
100k random inputs in float32 (the models' precision). The benchmark ONNX files have a fixed batch of 1;
a copy with a symbolic batch dimension is written to a temp folder so onnxruntime can batch.
Prints a markdown table with best-of-N times and ratios (reference time / nncert time; > 1 means nncert
is faster).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

import nncert

DATA = os.environ.get("NNCERT_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
NETS = {
    "ACAS Xu 1_1 (5-50x6-5)": ("vnncomp2021/acasxu/ACASXU_run2a_1_1_batch_2000.onnx"),
    "MNIST 256x6 (784-256x6-10)": ("vnncomp2021/mnistfc/mnist-net_256x6.onnx"),
}


def best(f, repeat: int) -> float:
    f()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def batched_copy(path: str, tmp: str) -> str:
    import onnx
    m = onnx.load(path)
    init = {i.name for i in m.graph.initializer}
    for v in list(m.graph.input) + list(m.graph.output):
        if v.name in init:
            continue
        dims = v.type.tensor_type.shape.dim
        if len(dims) > 1:
            dims[0].dim_param = "N"
    out = os.path.join(tmp, os.path.basename(path))
    onnx.save(m, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import onnxruntime as ort
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rel in NETS.items():
            path = os.path.join(DATA, rel)
            if not os.path.exists(path):
                print(f"skip {name}: {path} not found (set NNCERT_DATA)")
                continue
            net = nncert.Network.from_onnx(path)
            X = np.random.default_rng(0).uniform(-0.5, 0.5, (args.batch, net.input_dim)).astype(np.float32)
            sess = ort.InferenceSession(batched_copy(path, tmp), providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            shape = [args.batch] + [d for d in inp.shape[1:]]
            Xo = X.reshape(shape)
            mod = net.to_torch(dtype=torch.float32).eval()
            Xt = torch.from_numpy(X)
            assert np.abs(net(X) - sess.run(None, {inp.name: Xo})[0].reshape(args.batch, -1)).max() < 1e-4

            def run_torch():
                with torch.inference_mode():
                    mod(Xt)

            t_ours32 = best(lambda: net(X), args.repeat)
            X64 = X.astype(np.float64)
            t_ours64 = best(lambda: net(X64), args.repeat)
            t_ort = best(lambda: sess.run(None, {inp.name: Xo}), args.repeat)
            t_torch = best(run_torch, args.repeat)
            rows.append((name, t_ours32, t_ours64, t_ort, t_torch))
    print(f"\nforward pass, batch {args.batch:,}, best of {args.repeat}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {ort.__version__}\n")
    print("| network | nncert f32 | nncert f64 | onnxruntime f32 | torch f32 | ORT / nncert f32 | torch / nncert f32 |")
    print("|---|---|---|---|---|---|---|")
    for name, a, b, c, d in rows:
        print(f"| {name} | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {c * 1e3:.1f} ms | {d * 1e3:.1f} ms | "
              f"{c / a:.2f}x | {d / a:.2f}x |")


if __name__ == "__main__":
    main()
