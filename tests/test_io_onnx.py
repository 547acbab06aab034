"""ONNX import against onnxruntime: the benchmark networks and every supported operator."""

from __future__ import annotations

import glob

import numpy as np
import pytest

import nncert

from conftest import DATA, data_path

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def ort_outputs(path: str, X: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs row by row (the benchmark models have a fixed batch of 1, or none)."""
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    return np.stack([sess.run(None, {inp.name: x.reshape(shape)})[0].ravel() for x in X])


BENCH = sorted(glob.glob(str(DATA / "vnncomp2021" / "acasxu" / "*.onnx"))) + \
    sorted(glob.glob(str(DATA / "vnncomp2021" / "mnistfc" / "*.onnx"))) + \
    sorted(glob.glob(str(DATA / "vnncomp2021" / "test" / "*.onnx")))


@pytest.mark.parametrize("path", BENCH or ["<absent>"], ids=lambda p: p.split("/")[-1])
def test_benchmark_networks_match_onnxruntime(path):
    if path == "<absent>":
        data_path("vnncomp2021")
    net = nncert.Network.from_onnx(path)
    rng = np.random.default_rng(0)
    n = 1000 if "test_" not in path else 100
    X = rng.uniform(-1, 1, (n, net.input_dim)).astype(np.float32)
    Y = ort_outputs(path, X)
    assert np.abs(net(X) - Y).max() <= 1e-5          # same precision as onnxruntime
    y64 = net(X.astype(np.float64))
    assert np.abs(y64 - Y).max() <= 1e-5 * max(1.0, np.abs(Y).max())  # float64: float32 rounding only


def test_acasxu_structure():
    net = nncert.Network.from_onnx(data_path("vnncomp2021", "acasxu", "ACASXU_run2a_1_1_batch_2000.onnx"))
    assert (net.input_dim, net.output_dim) == (5, 5)
    assert [type(l).__name__ for l in net.layers] == ["Dense", "ReLU"] * 6 + ["Dense"]  # Sub folded in
    mnist = nncert.Network.from_onnx(data_path("vnncomp2021", "mnistfc", "mnist-net_256x2.onnx"))
    assert (mnist.input_dim, mnist.output_dim, mnist.num_params) == (784, 10, 784 * 256 + 256 + 256 * 256 + 256 + 2570)


def _f32(v):
    v = np.asarray(v)
    return v if v.dtype.kind == "i" else v.astype(np.float32)


def _save(tmp_path, nodes, inits, in_shape, out_shape, name="m.onnx", opset=13):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(_f32(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    p = str(tmp_path / name)
    onnx.save(model, p)
    return p


def test_every_supported_operator_matches_onnxruntime(tmp_path):
    rng = np.random.default_rng(1)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    inits = {"mean": f(1, 1, 6), "std": np.abs(f(1, 1, 6)) + 0.5, "shape": np.array([1, 6]), "B1": f(8, 6),
             "C1": f(8), "scale": f(8), "bias": f(8), "bmean": f(8), "var": np.abs(f(8)) + 0.1, "W2": f(8, 8),
             "b2": f(8), "k": np.array(0.5), "W3": f(8, 4), "b3": f(4), "axes": np.array([1])}
    inits["shape"] = inits["shape"].astype(np.int64)
    inits["axes"] = inits["axes"].astype(np.int64)
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"], name="sub"),
        helper.make_node("Div", ["s", "std"], ["d"], name="div"),
        helper.make_node("Reshape", ["d", "shape"], ["r"], name="reshape"),
        helper.make_node("Gemm", ["r", "B1", "C1"], ["g"], name="gemm", alpha=0.7, beta=1.3, transB=1),
        helper.make_node("BatchNormalization", ["g", "scale", "bias", "bmean", "var"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node("LeakyRelu", ["bn"], ["lr"], name="leaky", alpha=0.2),
        helper.make_node("MatMul", ["lr", "W2"], ["m"], name="mm"),
        helper.make_node("Add", ["b2", "m"], ["a"], name="add"),
        helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
        helper.make_node("Constant", [], ["c"], name="const", value=numpy_helper.from_array(f(8), "c")),
        helper.make_node("Sub", ["c", "t"], ["t2"], name="sub2"),
        helper.make_node("Mul", ["t2", "k"], ["t3"], name="mul"),
        helper.make_node("Identity", ["t3"], ["i"], name="id"),
        helper.make_node("Dropout", ["i"], ["dr"], name="drop"),
        helper.make_node("Unsqueeze", ["dr", "axes"], ["u"], name="unsq"),
        helper.make_node("Squeeze", ["u", "axes"], ["sq"], name="sq"),
        helper.make_node("Sigmoid", ["sq"], ["sg"], name="sig"),
        helper.make_node("Flatten", ["sg"], ["fl"], name="flat", axis=1),
        helper.make_node("Gemm", ["fl", "W3", "b3"], ["g3"], name="gemm3"),
        helper.make_node("Relu", ["g3"], ["y"], name="relu"),
    ]
    p = _save(tmp_path, nodes, inits, [1, 1, 6], [1, 4])
    net = nncert.Network.from_onnx(p)
    assert [type(l).__name__ for l in net.layers] == ["Dense", "LeakyReLU", "Dense", "Tanh", "Dense", "Sigmoid",
                                                      "Dense", "ReLU"]
    X = rng.uniform(-2, 2, (200, 6)).astype(np.float32)
    Y = ort_outputs(p, X)
    np.testing.assert_allclose(net(X.astype(np.float64)), Y, atol=2e-5, rtol=1e-4)


def test_unsupported_operator_names_operator_and_node(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="fc1"),
             helper.make_node("Softmax", ["h"], ["y"], name="the_softmax")]
    p = _save(tmp_path, nodes, {"W": np.ones((3, 2))}, [1, 3], [1, 2])
    with pytest.raises(nncert.UnsupportedModelError, match=r"Softmax node 'the_softmax'.*operator Softmax is not supported"):
        nncert.Network.from_onnx(p)


def test_branching_graph_is_rejected(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="r"),
             helper.make_node("Add", ["h", "x"], ["y"], name="skip")]
    p = _save(tmp_path, nodes, {}, [1, 3], [1, 3])
    with pytest.raises(nncert.UnsupportedModelError, match="skip"):
        nncert.Network.from_onnx(p)


def test_unreadable_file(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"not a model")
    with pytest.raises(nncert.UnsupportedModelError, match="not a readable ONNX model"):
        nncert.Network.from_onnx(p)
    with pytest.raises(FileNotFoundError):
        nncert.Network.from_onnx(tmp_path / "missing.onnx")


@pytest.mark.parametrize("variant", ["squeeze_batch", "reshape_batch", "squeeze_all", "flatten_unbatched"])
def test_reshapes_of_the_batch_axis_match_onnxruntime(tmp_path, variant):
    rng = np.random.default_rng(2)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    inits = {"W": f(4, 6), "b": f(4), "V": f(3, 4), "c": f(3), "ax0": i64(0), "s6": i64(6), "s1m": i64(1, -1)}
    if variant == "squeeze_batch":      # (1, 6) -> (6,) ; W @ x ; -> (1, 4) ; Gemm
        in_shape = [1, 6]
        nodes = [helper.make_node("Squeeze", ["x", "ax0"], ["s"], name="sq"),
                 helper.make_node("MatMul", ["W", "s"], ["m"], name="mm"),
                 helper.make_node("Add", ["m", "b"], ["a"], name="add"),
                 helper.make_node("Unsqueeze", ["a", "ax0"], ["u"], name="unsq"),
                 helper.make_node("Relu", ["u"], ["r"], name="relu"),
                 helper.make_node("Gemm", ["r", "V", "c"], ["y"], name="gemm", transB=1)]
    elif variant == "reshape_batch":    # (1, 1, 6) -> (6,) ; x @ W^T ; -> (1, 4)
        in_shape = [1, 1, 6]
        inits["Wt"] = np.ascontiguousarray(inits["W"].T)
        nodes = [helper.make_node("Reshape", ["x", "s6"], ["r0"], name="r0"),
                 helper.make_node("MatMul", ["r0", "Wt"], ["m"], name="mm"),
                 helper.make_node("Reshape", ["m", "s1m"], ["r1"], name="r1"),
                 helper.make_node("Tanh", ["r1"], ["t"], name="tanh"),
                 helper.make_node("Gemm", ["t", "V", "c"], ["y"], name="gemm", transB=1)]
    elif variant == "squeeze_all":      # Squeeze without axes drops the batch axis of size 1
        in_shape = [1, 1, 6]
        nodes = [helper.make_node("Squeeze", ["x"], ["s"], name="sq"),
                 helper.make_node("MatMul", ["W", "s"], ["m"], name="mm"),
                 helper.make_node("Unsqueeze", ["m", "ax0"], ["u"], name="unsq"),
                 helper.make_node("Gemm", ["u", "V", "c"], ["y"], name="gemm", transB=1)]
    else:                                # unbatched (6,) -> Flatten -> (1, 6) ; Gemm with transA on (6, 1)? no: A = (1, 6)
        in_shape = [6]
        nodes = [helper.make_node("Flatten", ["x"], ["fl"], name="flat", axis=0),
                 helper.make_node("Gemm", ["fl", "W", "b"], ["g"], name="g1", transB=1),
                 helper.make_node("Relu", ["g"], ["r"], name="relu"),
                 helper.make_node("Gemm", ["r", "V", "c"], ["y"], name="gemm", transB=1)]
    p = _save(tmp_path, nodes, inits, in_shape, [1, 3])
    net = nncert.Network.from_onnx(p)
    X = rng.uniform(-2, 2, (50, 6)).astype(np.float32)
    np.testing.assert_allclose(net(X), ort_outputs(p, X), atol=1e-5, rtol=1e-5)


def test_reshape_into_the_batch_axis_is_rejected(tmp_path):
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"], name="bad_reshape"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    p = _save(tmp_path, nodes, {"s": np.array([2, 3], dtype=np.int64)}, [1, 6], [2, 3])
    with pytest.raises(nncert.UnsupportedModelError, match="bad_reshape.*changes the batch dimension"):
        nncert.Network.from_onnx(p)
