"""Every error the foundation raises: typed, under nncert.Error, and naming what was wrong."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert import _core


def test_hierarchy():
    for cls, builtin in ((nncert.ShapeError, ValueError), (nncert.InvalidInputError, ValueError),
                         (nncert.UnsupportedModelError, NotImplementedError), (nncert.SolverError, RuntimeError),
                         (nncert.TimeLimitError, TimeoutError), (nncert.PropertyFormatError, ValueError)):
        assert issubclass(cls, nncert.Error) and issubclass(cls, builtin)


@pytest.mark.parametrize("kind,cls", [("shape", nncert.ShapeError), ("invalid", nncert.InvalidInputError),
                                      ("unsupported", nncert.UnsupportedModelError), ("solver", nncert.SolverError),
                                      ("time", nncert.TimeLimitError)])
def test_core_errors_map_to_their_classes(kind, cls):
    with pytest.raises(cls, match=f"{kind} test"):
        _core._raise_core_error(kind)


def test_panic_in_core_becomes_nncert_error_and_interpreter_survives():
    with pytest.raises(nncert.Error, match="internal error"):
        _core._raise_core_error("panic")
    assert nncert.Network([nncert.Dense(np.eye(1))])(np.array([2.0]))[0] == 2.0


def test_shape_error_dense_bias():
    with pytest.raises(nncert.ShapeError, match=r"b has length 3 but W has shape \(2, 2\)"):
        nncert.Dense(np.eye(2), np.zeros(3))


def test_shape_error_layer_widths():
    with pytest.raises(nncert.ShapeError, match=r"layer 2 \(Dense\): expects input width 5 but receives width 3"):
        nncert.Network([nncert.Dense(np.ones((3, 2))), nncert.ReLU(), nncert.Dense(np.ones((1, 5)))])


def test_shape_error_group_width():
    with pytest.raises(nncert.ShapeError, match="not a multiple of the group size 2"):
        nncert.Network([nncert.Dense(np.ones((3, 2))), nncert.MaxMin()])


def test_shape_error_residual_width():
    with pytest.raises(nncert.ShapeError, match="Residual"):
        nncert.Network([nncert.Dense(np.ones((3, 2))), nncert.Residual([nncert.Dense(np.ones((4, 3)))])])


def test_shape_error_input_features():
    net = nncert.Network([nncert.Dense(np.ones((3, 2)))])
    with pytest.raises(nncert.ShapeError, match="3 features per row .* expects 2"):
        net(np.ones((4, 3)))
    with pytest.raises(nncert.ShapeError, match="2-D"):
        net(np.ones((2, 2, 2)))


def test_invalid_input_nan_weight():
    with pytest.raises(nncert.InvalidInputError, match=r"Dense.W\[1, 0\] is nan"):
        nncert.Dense(np.array([[1.0, 2.0], [np.nan, 0.0]]))


def test_invalid_input_nan_input_names_row():
    net = nncert.Network([nncert.Dense(np.eye(2))])
    x = np.zeros((5000, 2))
    x[4321, 1] = np.inf
    with pytest.raises(nncert.InvalidInputError, match=r"input\[4321, 1\] is inf"):
        net(x)


def test_invalid_input_empty_and_dtype():
    net = nncert.Network([nncert.Dense(np.eye(2))])
    with pytest.raises(nncert.InvalidInputError, match="empty"):
        net(np.zeros((0, 2)))
    with pytest.raises(nncert.InvalidInputError, match="dtype complex128"):
        net(np.zeros((1, 2), dtype=complex))
    with pytest.raises(nncert.InvalidInputError, match="dtype"):
        net(np.array([["a", "b"]]))


def test_invalid_layer_arguments():
    with pytest.raises(nncert.InvalidInputError, match="pairing"):
        nncert.MaxMin("diagonal")
    with pytest.raises(nncert.InvalidInputError, match="group_size"):
        nncert.GroupSort(1)
    with pytest.raises(nncert.InvalidInputError, match="not an nncert layer"):
        nncert.Network([np.eye(2)])


def test_cuda_request_without_cuda_is_an_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    net = nncert.Network([nncert.Dense(np.eye(2))])
    with pytest.raises(nncert.InvalidInputError, match="no CUDA device"):
        net(np.ones(2), device="cuda")
    with pytest.raises(nncert.InvalidInputError, match="device must be"):
        net(np.ones(2), device="tpu")


def test_gradient_argument_shapes():
    net = nncert.Network([nncert.Dense(np.ones((3, 2)))])
    with pytest.raises(nncert.ShapeError, match=r"c has shape \(1, 2\)"):
        net.input_gradient(np.ones((4, 2)), np.ones(2))
    with pytest.raises(nncert.ShapeError, match="x has length 3"):
        net.jacobian(np.ones(3))
