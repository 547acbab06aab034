"""The Network: construction, forward pass (values, dtypes, memory orders), structure and gradients."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nncert
from nncert.network import sequential

from reference import forward as ref_forward
from reference import random_network


def test_forward_matches_numpy_reference_on_every_layer_type(rng):
    for _ in range(30):
        net = random_network(rng)
        x = rng.standard_normal((257, 4)) * 3
        np.testing.assert_allclose(net(x), ref_forward(net.layers, x), rtol=1e-12, atol=1e-12)


def test_large_batches_split_across_threads_give_identical_rows(rng):
    net = random_network(rng)
    x = rng.standard_normal((10_000, 4))
    full = net(x)
    rows = np.concatenate([net(x[i:i + 7]) for i in range(0, 70, 7)])
    np.testing.assert_array_equal(full[:70], rows)
    np.testing.assert_allclose(full, ref_forward(net.layers, x), rtol=1e-12, atol=1e-12)


def test_float32_is_computed_in_float32(rng):
    net = random_network(rng, kinds=("relu", "maxmin"))
    x = rng.standard_normal((100, 4))
    y32 = net(x.astype(np.float32))
    assert y32.dtype == np.float32
    assert net(x).dtype == np.float64
    np.testing.assert_allclose(y32, net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [
    lambda x: np.asfortranarray(x),
    lambda x: np.ascontiguousarray(x),
    lambda x: np.asfortranarray(np.repeat(x, 2, axis=1))[:, ::2],
    lambda x: np.repeat(x, 3, axis=0)[::3],
    lambda x: x[::-1][::-1],
    lambda x: np.ascontiguousarray(x[::-1])[::-1],
])
def test_memory_orders_read_in_place(rng, make):
    net = random_network(rng)
    x = rng.standard_normal((50, 4))
    xv = make(x)
    np.testing.assert_array_equal(xv, x)
    np.testing.assert_allclose(net(xv), net(np.ascontiguousarray(x)), rtol=0, atol=1e-14)


def test_single_vector_and_integer_inputs():
    net = nncert.Network([nncert.Dense([[1.0, 2.0], [3.0, -4.0]], [0.5, 0.0]), nncert.ReLU()])
    np.testing.assert_array_equal(net(np.array([1.0, 1.0])), [3.5, 0.0])
    np.testing.assert_array_equal(net(np.array([[1, 1]])), [[3.5, 0.0]])


def test_exact_values_of_grouped_activations():
    x = np.array([[1.0, 3.0, -2.0, 5.0]])
    eye = nncert.Dense(np.eye(4))
    assert nncert.Network([eye, nncert.MaxMin()])(x).tolist() == [[3.0, 1.0, 5.0, -2.0]]
    assert nncert.Network([eye, nncert.MaxMin("halves")])(x).tolist() == [[1.0, 5.0, -2.0, 3.0]]
    assert nncert.Network([eye, nncert.GroupSort(4)])(x).tolist() == [[5.0, 3.0, 1.0, -2.0]]
    # theta = pi/2 is MaxMin; theta = 0 reflects about the first axis when z2 < 0 ... check both sides
    np.testing.assert_allclose(nncert.Network([eye, nncert.Householder(np.pi / 2)])(x), [[3.0, 1.0, 5.0, -2.0]],
                               atol=1e-15)


@given(arrays(np.float64, (5, 6), elements=st.floats(-1e6, 1e6)))
@settings(max_examples=50, deadline=None)
def test_groupsort_sorts_each_group_and_permutes(x):
    net = nncert.Network([nncert.Dense(np.eye(6)), nncert.GroupSort(3)])
    y = net(x)
    for g in ([0, 1, 2], [3, 4, 5]):
        assert np.all(np.diff(y[:, g], axis=1) <= 0)
        np.testing.assert_array_equal(np.sort(y[:, g], axis=1), np.sort(x[:, g], axis=1))


@given(arrays(np.float64, (5, 4), elements=st.floats(-1e3, 1e3)), st.floats(0, 2 * np.pi))
@settings(max_examples=50, deadline=None)
def test_householder_preserves_pair_norms(x, theta):
    y = nncert.Network([nncert.Dense(np.eye(4)), nncert.Householder(theta)])(x)
    for a, b in ((0, 1), (2, 3)):
        np.testing.assert_allclose(np.hypot(y[:, a], y[:, b]), np.hypot(x[:, a], x[:, b]), rtol=1e-12, atol=1e-9)


def test_structure_and_summary():
    net = nncert.Network([nncert.Dense(np.ones((8, 3))), nncert.ReLU(),
                          nncert.Residual([nncert.Dense(np.eye(8)), nncert.Tanh()]), nncert.Dense(np.ones((2, 8)))])
    assert (net.input_dim, net.output_dim, len(net.layers)) == (3, 2, 4)
    assert net.num_params == 8 * 3 + 8 + 64 + 8 + 16 + 2
    assert len(net.dense_layers()) == 3
    s = net.summary()
    assert "3 inputs -> 2 outputs" in s and f"{net.num_params:,} parameters" in s and "Residual" in s
    assert "Dense(3 -> 8)" in repr(net)


def test_network_without_dense_needs_input_dim():
    with pytest.raises(nncert.ShapeError, match="input_dim"):
        nncert.Network([nncert.ReLU()])
    net = nncert.Network([nncert.MaxMin()], input_dim=4)
    assert net(np.array([1.0, 2.0, 3.0, 0.0])).tolist() == [2.0, 1.0, 3.0, 0.0]


def test_input_normalisation_folds_into_first_dense(rng):
    net = random_network(rng)
    mean, std = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    folded = net.with_input_normalization(mean, std)
    x = rng.standard_normal((20, 4))
    np.testing.assert_allclose(folded(x), net((x - mean) / std), rtol=1e-12, atol=1e-12)
    assert len(folded.layers) == len(net.layers)
    act_first = nncert.Network([nncert.ReLU(), nncert.Dense(np.ones((1, 2)))])
    np.testing.assert_allclose(act_first.with_input_normalization(1.0, 2.0)(x[:, :2]), act_first((x[:, :2] - 1) / 2))


def test_pickle_and_equality(rng):
    net = random_network(rng)
    again = pickle.loads(pickle.dumps(net))
    assert again == net
    x = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(again(x), net(x))


def test_parameters_are_read_only_copies():
    W = np.eye(2)
    d = nncert.Dense(W)
    W[0, 0] = 5.0
    assert d.W[0, 0] == 1.0
    with pytest.raises(ValueError):
        d.W[0, 0] = 3.0


def test_jacobian_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    for _ in range(10):
        net = random_network(rng)
        x = rng.standard_normal(4)
        mod = net.to_torch()
        J = torch.autograd.functional.jacobian(mod, torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(net.jacobian(x), J, rtol=1e-10, atol=1e-10)
        c = rng.standard_normal(3)
        y, g = net.input_gradient(x, c)
        np.testing.assert_allclose(g, c @ J, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(y, net(x), rtol=1e-12)


def test_batched_input_gradient(rng):
    net = sequential([4, 16, 16, 2], nncert.ReLU, seed=3)
    X = rng.standard_normal((64, 4))
    C = rng.standard_normal((64, 2))
    Y, G = net.input_gradient(X, C)
    for i in (0, 17, 63):
        np.testing.assert_allclose(G[i], C[i] @ net.jacobian(X[i]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Y, net(X), rtol=1e-12)


def test_torch_tensors_in_and_out(rng):
    torch = pytest.importorskip("torch")
    net = random_network(rng)
    x = rng.standard_normal((5, 4))
    y = net(torch.from_numpy(x))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    np.testing.assert_allclose(y.numpy(), net(x))
    assert net(torch.from_numpy(x.astype(np.float32))).dtype == torch.float32
    y_dev = net(x, device="cpu")
    assert isinstance(y_dev, np.ndarray)


def test_torch_backend_matches_core_on_cpu(rng):
    """The torch path (used for CUDA data) computes the same function as the Rust core."""
    torch = pytest.importorskip("torch")
    from nncert import torch_backend
    from nncert.devices import CPU
    for _ in range(5):
        net = random_network(rng)
        x = rng.standard_normal((40, 4))
        np.testing.assert_allclose(torch_backend.forward(net, x, CPU), net(x), rtol=1e-12, atol=1e-12)
        y32 = torch_backend.forward(net, torch.from_numpy(x.astype(np.float32)), CPU)
        assert y32.dtype == torch.float32
        np.testing.assert_allclose(y32.numpy(), net(x.astype(np.float32)), rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_cuda_forward_returns_cuda_tensor(rng):
    torch = pytest.importorskip("torch")
    net = random_network(rng)
    x = rng.standard_normal((40, 4))
    y = net(torch.from_numpy(x).cuda())
    assert y.is_cuda
    np.testing.assert_allclose(y.cpu().numpy(), net(x), rtol=1e-10, atol=1e-10)


def test_torch_backend_gradients_match_core(rng):
    torch = pytest.importorskip("torch")
    from nncert import torch_backend
    from nncert.devices import CPU
    for _ in range(5):
        net = random_network(rng)
        x = rng.standard_normal(4)
        np.testing.assert_allclose(torch_backend.jacobian(net, x, CPU), net.jacobian(x), rtol=1e-10, atol=1e-10)
        X, C = rng.standard_normal((30, 4)), rng.standard_normal((30, 3))
        yt, gt = torch_backend.input_gradient(net, X, C, CPU)
        y, g = net.input_gradient(X, C)
        np.testing.assert_allclose(yt, y, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gt, g, rtol=1e-10, atol=1e-10)
    J = net.jacobian(torch.from_numpy(x))
    assert isinstance(J, torch.Tensor)
