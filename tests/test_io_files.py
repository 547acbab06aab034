"""The .nnet and .npz readers and writers, and the torch conversion."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert.io.nnet import write_nnet

from conftest import data_path
from reference import forward as ref_forward
from reference import random_network

NNET = """// a tiny network written by hand
// with normalisation
2,2,1,3,
2,3,1,
0,
-1.0,0.0,
1.0,10.0,
0.5,5.0,2.0,
2.0,10.0,4.0,
1.0,-1.0,
0.5,0.5,
0.0,1.0,
0.1,
-0.2,
0.3,
1.0,-2.0,3.0,
0.25,
"""


def test_nnet_reads_weights_and_normalisation(tmp_path):
    p = tmp_path / "tiny.nnet"
    p.write_text(NNET)
    raw = nncert.Network.from_nnet(p, normalize=False)
    W1, b1 = np.array([[1.0, -1.0], [0.5, 0.5], [0.0, 1.0]]), np.array([0.1, -0.2, 0.3])
    W2, b2 = np.array([[1.0, -2.0, 3.0]]), np.array([0.25])
    x = np.array([[0.3, -0.7], [1.0, 2.0]])
    expect = np.maximum(x @ W1.T + b1, 0) @ W2.T + b2
    np.testing.assert_allclose(raw(x), expect, rtol=1e-14)
    phys = nncert.Network.from_nnet(p)  # (x - mean) / range in, y * range + mean out
    xp = np.array([[0.2, 3.0], [-0.5, 9.0]])
    xn = (xp - [0.5, 5.0]) / [2.0, 10.0]
    np.testing.assert_allclose(phys(xp), raw(xn) * 4.0 + 2.0, rtol=1e-13)
    np.testing.assert_array_equal(phys.input_domain[0], [-1.0, 0.0])
    np.testing.assert_array_equal(phys.input_domain[1], [1.0, 10.0])


def test_nnet_round_trip(tmp_path, rng):
    net = nncert.network.sequential([5, 7, 7, 3], nncert.ReLU, seed=4)
    write_nnet(net, tmp_path / "n.nnet")
    back = nncert.Network.from_nnet(tmp_path / "n.nnet")
    x = rng.standard_normal((10, 5))
    np.testing.assert_allclose(back(x), net(x), rtol=1e-14, atol=1e-14)


def test_nnet_malformed_reports_line(tmp_path):
    p = tmp_path / "bad.nnet"
    p.write_text(NNET.replace("0.5,0.5,\n", "0.5,abc,\n"))
    with pytest.raises(nncert.UnsupportedModelError, match=r"bad.nnet:11: expected comma-separated numbers"):
        nncert.Network.from_nnet(p)
    p.write_text(NNET[: NNET.index("1.0,-2.0")])
    with pytest.raises(nncert.UnsupportedModelError, match="file ends early"):
        nncert.Network.from_nnet(p)


def test_npz_round_trip_every_layer_type(tmp_path, rng):
    for k in range(5):
        net = random_network(rng)
        net.save_npz(tmp_path / f"n{k}.npz")
        back = nncert.Network.from_npz(tmp_path / f"n{k}.npz")
        assert back == net
        x = rng.standard_normal((8, 4))
        np.testing.assert_array_equal(back(x), net(x))


def test_npz_plain_weight_files():
    relu = nncert.Network.from_npz(data_path("lipschitz", "relu_random_weights.npz"), activation="relu")
    assert [type(l).__name__ for l in relu.layers] == ["Dense", "ReLU"] * 3 + ["Dense"]
    res = nncert.Network.from_npz(data_path("lipschitz", "maxmin_residual_5_32.npz"), activation="maxmin",
                                  residual=True)
    assert [type(l).__name__ for l in res.layers] == ["Dense"] + ["Residual"] * 3 + ["Dense"]
    W = np.load(data_path("lipschitz", "maxmin_residual_5_32.npz"))
    x = np.random.default_rng(0).standard_normal(784)
    h = W["W0"] @ x
    for j in (1, 2, 3):
        z = W[f"W{j}"] @ h
        h = h + np.column_stack([np.maximum(z[0::2], z[1::2]), np.minimum(z[0::2], z[1::2])]).ravel()
    np.testing.assert_allclose(res(x), W["W4"] @ h, rtol=1e-12, atol=1e-12)
    with pytest.raises(nncert.InvalidInputError, match="activation='relu'"):
        nncert.Network.from_npz(data_path("lipschitz", "relu_random_weights.npz"))


def test_npz_not_a_network(tmp_path):
    np.savez(tmp_path / "x.npz", foo=np.ones(3))
    with pytest.raises(nncert.UnsupportedModelError, match="keys: foo"):
        nncert.Network.from_npz(tmp_path / "x.npz")


torch = pytest.importorskip("torch")


def test_torch_round_trip_is_exact(rng):
    for _ in range(10):
        net = random_network(rng)
        back = nncert.Network.from_torch(net.to_torch())
        assert back == net
        x = rng.standard_normal((50, 4))
        with torch.no_grad():
            yt = net.to_torch()(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(yt, net(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(back(x), net(x), rtol=0, atol=1e-12)


def test_from_torch_nested_sequential():
    from torch import nn

    import nncert.torch as nt
    torch.manual_seed(0)
    mod = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 6), nn.LeakyReLU(0.3)), nn.Dropout(0.5),
                        nn.Identity(), nn.Linear(6, 6), nt.GroupSort(3, "halves"),
                        nt.Residual(nn.Linear(6, 6), nt.Householder(1.1)), nn.Sigmoid(), nn.Tanh(), nn.Linear(6, 2),
                        nt.MaxMin()).double().eval()
    net = nncert.Network.from_torch(mod)
    x = np.random.default_rng(0).standard_normal((20, 4))
    with torch.no_grad():
        np.testing.assert_allclose(net(x), mod(torch.from_numpy(x)).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net(x), ref_forward(net.layers, x), rtol=1e-12, atol=1e-12)


def test_from_torch_unsupported_module_names_path():
    from torch import nn
    mod = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), nn.Softmax(dim=1)))
    with pytest.raises(nncert.UnsupportedModelError, match=r"1\.1: torch module torch.nn.modules.activation.Softmax"):
        nncert.Network.from_torch(mod)
    with pytest.raises(nncert.UnsupportedModelError, match="Flatten"):
        nncert.Network.from_torch(nn.Sequential(nn.Flatten(0), nn.Linear(3, 3)))


def test_nncert_torch_modules_are_trainable():
    import nncert.torch as nt
    from torch import nn
    torch.manual_seed(0)
    mod = nn.Sequential(nn.Linear(2, 4), nt.Householder(0.3), nn.Linear(4, 1)).double()
    opt = torch.optim.SGD(mod.parameters(), lr=0.1)
    x = torch.randn(64, 2, dtype=torch.float64)
    loss = ((mod(x) - x.sum(1, keepdim=True)) ** 2).mean()
    loss.backward()
    assert mod[1].theta.grad is not None and torch.isfinite(mod[1].theta.grad)
    opt.step()
