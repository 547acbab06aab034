"""ONNX import: fully connected feed-forward graphs become a :class:`nncert.Network`.

The graph must be a chain: each node takes the running tensor and constants. Every affine node
(Gemm, MatMul, Add, Sub, Mul/Div by constants, BatchNormalization, Flatten, Reshape, Squeeze,
Unsqueeze, Identity, Dropout) is composed into one pending affine map; an activation node (Relu,
LeakyRelu, Tanh, Sigmoid) closes it as a Dense layer. Input normalisation (Sub mean, Div std) and
BatchNormalization after Gemm thus fold into the neighbouring Dense layer. Anything else raises
:class:`nncert.UnsupportedModelError` naming the operator and the node.

The pending map is kept as the images of the basis vectors (``lin``: shape (F_in, *features)) and of
zero (``const``: shape (1, *features)); an affine node is applied to both in batch form, so numpy's
own broadcasting defines its meaning.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import InvalidInputError, ShapeError, UnsupportedModelError
from ..layers import Dense, Layer, LeakyReLU, ReLU, Sigmoid, Tanh

if TYPE_CHECKING:  # pragma: no cover
    from ..network import Network

SUPPORTED = ("Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Tanh", "Sigmoid", "Flatten",
             "Reshape", "Squeeze", "Unsqueeze", "Identity", "Constant", "Dropout", "BatchNormalization")


def _node_name(node: Any, k: int) -> str:
    return f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node #{k} (unnamed)"


class _Affine:
    """The pending affine map from the last activation's output (flat, width F) to the running tensor."""

    def __init__(self, feat_shape: tuple[int, ...]):
        self.reset(feat_shape)

    def reset(self, feat_shape: tuple[int, ...]) -> None:
        f = int(np.prod(feat_shape)) if feat_shape else 1
        self.width = f
        self.lin = np.eye(f).reshape((f,) + tuple(feat_shape))
        self.const = np.zeros((1,) + tuple(feat_shape))
        self.identity = True

    @property
    def feat_shape(self) -> tuple[int, ...]:
        return tuple(self.const.shape[1:])

    def apply(self, lin_op: Callable[[np.ndarray], np.ndarray], const_op: Callable[[np.ndarray], np.ndarray]) -> None:
        lin, const = lin_op(self.lin), const_op(self.const)
        if lin.shape[0] != self.width or const.shape[0] != 1:
            raise ShapeError("operation changed the batch dimension")
        self.lin, self.const = lin, const
        self.identity = False

    def reshape(self, feat_shape: tuple[int, ...]) -> None:
        self.lin = self.lin.reshape((self.width,) + feat_shape)
        self.const = self.const.reshape((1,) + feat_shape)

    def to_dense(self) -> Dense | None:
        if self.identity:
            return None
        W = self.lin.reshape(self.width, -1).T
        return Dense(W, self.const.reshape(-1))


def read_onnx(path: str | os.PathLike) -> "Network":
    import onnx
    from onnx import numpy_helper

    from ..network import Network

    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        model = onnx.load(path)
    except Exception as e:  # onnx raises DecodeError and friends
        raise UnsupportedModelError(f"{path}: not a readable ONNX model ({e})") from e
    graph = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t).astype(np.float64)
                                     if numpy_helper.to_array(t).dtype.kind == "f" else numpy_helper.to_array(t)
                                     for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise UnsupportedModelError(f"{path}: expected exactly one graph input, found {[i.name for i in inputs]}")
    if len(graph.output) != 1:
        raise UnsupportedModelError(f"{path}: expected exactly one graph output, found {[o.name for o in graph.output]}")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inputs[0].type.tensor_type.shape.dim]
    if not dims:
        raise UnsupportedModelError(f"{path}: input {inputs[0].name!r} has no declared shape")
    # A rank-1 input is one sample with no batch axis (the VNN-COMP test networks); W @ x is then W x.
    batchless = len(dims) == 1
    feat = tuple(dims[1:]) if not batchless else (dims[0],)
    if any(d <= 0 for d in feat):
        raise UnsupportedModelError(f"{path}: input {inputs[0].name!r} has a symbolic feature dimension {dims}")
    input_dim = int(np.prod(feat))

    running = inputs[0].name
    acc = _Affine(feat)
    layers: list[Layer] = []

    def const_of(name: str, where: str) -> np.ndarray:
        if name not in consts:
            raise UnsupportedModelError(f"{where}: operand {name!r} is neither a constant nor the network tensor "
                                        f"(branching graphs are not supported)")
        return consts[name]

    def attrs(node: Any) -> dict[str, Any]:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    for k, node in enumerate(graph.node):
        where = f"{path}: {_node_name(node, k)}"
        op = node.op_type
        if op == "Constant":
            a = attrs(node)
            if "value" not in a:
                raise UnsupportedModelError(f"{where}: only Constant with a tensor 'value' is supported")
            arr = numpy_helper.to_array(a["value"])
            consts[node.output[0]] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr
            continue
        if op not in SUPPORTED:
            raise UnsupportedModelError(f"{where}: operator {op} is not supported "
                                        f"(supported: {', '.join(SUPPORTED)})")
        ins = [i for i in node.input if i]
        if running not in ins:
            if all(i in consts for i in ins):
                raise UnsupportedModelError(f"{where}: constant folding of {op} is not supported")
            raise UnsupportedModelError(f"{where}: does not consume the network tensor {running!r} "
                                        f"(branching graphs are not supported)")
        if ins.count(running) > 1 and op not in ("Identity",):
            raise UnsupportedModelError(f"{where}: uses the network tensor twice (nonlinear or residual) - not supported")
        others = [i for i in ins if i != running]
        a = attrs(node)
        try:
            if op in ("Relu", "LeakyRelu", "Tanh", "Sigmoid"):
                d = acc.to_dense()
                if d is not None:
                    layers.append(d)
                layers.append({"Relu": ReLU, "Tanh": Tanh, "Sigmoid": Sigmoid}[op]() if op != "LeakyRelu"
                              else LeakyReLU(a.get("alpha", 0.01)))
                acc.reset(acc.feat_shape)
            elif op in ("Identity", "Dropout"):
                pass
            elif op == "MatMul":
                W = const_of(others[0], where)
                if ins[0] == running:
                    acc.apply(lambda x: np.matmul(x, W), lambda c: np.matmul(c, W))
                elif batchless and len(acc.feat_shape) == 1 and W.ndim == 2:
                    acc.apply(lambda x: x @ W.T, lambda c: c @ W.T)
                else:
                    if len(acc.feat_shape) < 2:
                        raise UnsupportedModelError(f"{where}: constant @ network tensor would mix the batch")
                    acc.apply(lambda x: np.matmul(W, x), lambda c: np.matmul(W, c))
            elif op == "Gemm":
                if ins[0] != running:
                    raise UnsupportedModelError(f"{where}: the network tensor must be Gemm's first operand A")
                if a.get("transA", 0):
                    raise UnsupportedModelError(f"{where}: transA=1 on the network tensor would mix the batch")
                if len(acc.feat_shape) != 1:
                    raise UnsupportedModelError(f"{where}: Gemm needs a 2-D (batch, features) input, "
                                                f"got features {acc.feat_shape}")
                B = const_of(ins[1], where)
                B = B.T if a.get("transB", 0) else B
                alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
                C = const_of(ins[2], where) if len(ins) > 2 else 0.0
                acc.apply(lambda x: alpha * (x @ B), lambda c: alpha * (c @ B) + beta * C)
            elif op in ("Add", "Sub"):
                c0 = const_of(others[0], where)
                sign = -1.0 if (op == "Sub" and ins[1] == running) else 1.0
                csign = -1.0 if (op == "Sub" and ins[0] == running) else 1.0
                acc.apply(lambda x: sign * x + 0.0 * c0, lambda c: sign * c + csign * c0)
            elif op == "Mul":
                s = const_of(others[0], where)
                acc.apply(lambda x: x * s, lambda c: c * s)
            elif op == "Div":
                if ins[0] != running:
                    raise UnsupportedModelError(f"{where}: constant / network tensor is not affine")
                s = const_of(ins[1], where)
                if np.any(s == 0):
                    raise InvalidInputError(f"{where}: division by zero in the divisor constant")
                acc.apply(lambda x: x / s, lambda c: c / s)
            elif op == "BatchNormalization":
                scale, bias, mean, var = (const_of(i, where) for i in ins[1:5])
                eps = float(a.get("epsilon", 1e-5))
                g = scale / np.sqrt(var + eps)
                shape = (-1,) + (1,) * (len(acc.feat_shape) - 1)  # channels on axis 1
                g, sh = g.reshape(shape), (bias - mean * scale / np.sqrt(var + eps)).reshape(shape)
                acc.apply(lambda x: x * g, lambda c: c * g + sh)
            elif op == "Flatten":
                axis = int(a.get("axis", 1))
                full = (1,) + acc.feat_shape
                axis = axis + len(full) if axis < 0 else axis
                if axis == 0 or int(np.prod(full[1:axis])) != 1:
                    raise UnsupportedModelError(f"{where}: Flatten(axis={a.get('axis', 1)}) would merge the batch "
                                                f"dimension with features {acc.feat_shape}")
                acc.reshape((int(np.prod(acc.feat_shape)),))
            elif op == "Reshape":
                shape = [int(v) for v in const_of(ins[1], where).ravel()]
                acc.reshape(_reshape_features(shape, acc.feat_shape, where))
            elif op in ("Squeeze", "Unsqueeze"):
                axes = a.get("axes")
                if axes is None and len(ins) > 1:
                    axes = [int(v) for v in const_of(ins[1], where).ravel()]
                acc.reshape(_squeeze(op, axes, acc.feat_shape, where))
        except (ValueError, IndexError) as e:
            if isinstance(e, (UnsupportedModelError, InvalidInputError, ShapeError)):
                raise
            raise ShapeError(f"{where}: operand shapes do not fit ({e})") from e
        running = node.output[0]
    if running != graph.output[0].name:
        raise UnsupportedModelError(f"{path}: graph output {graph.output[0].name!r} is not the end of the chain "
                                    f"({running!r})")
    d = acc.to_dense()
    if d is not None:
        layers.append(d)
    if not layers:
        raise UnsupportedModelError(f"{path}: the graph computes the identity; nothing to analyse")
    return Network(layers, input_dim)


def _reshape_features(shape: list[int], feat: tuple[int, ...], where: str) -> tuple[int, ...]:
    total = int(np.prod(feat))
    if len(shape) == 1:  # no batch axis in the target: the whole sample
        if shape[0] not in (-1, total):
            raise UnsupportedModelError(f"{where}: Reshape to {shape} does not keep one sample per batch row")
        return (total,)
    rest = [feat[i - 1] if s == 0 and i - 1 < len(feat) else s for i, s in enumerate(shape) if i > 0]
    if shape[0] not in (-1, 0, 1):
        raise UnsupportedModelError(f"{where}: Reshape to {shape} changes the batch dimension")
    if rest.count(-1) > 1:
        raise UnsupportedModelError(f"{where}: Reshape to {shape} has two -1 entries")
    if -1 in rest:
        known = int(np.prod([r for r in rest if r != -1]))
        if known == 0 or total % known:
            raise ShapeError(f"{where}: cannot reshape features {feat} to {shape}")
        rest[rest.index(-1)] = total // known
    if shape[0] == -1 and int(np.prod(rest)) != total:
        raise UnsupportedModelError(f"{where}: Reshape to {shape} moves features into the batch dimension")
    if int(np.prod(rest)) != total:
        raise ShapeError(f"{where}: cannot reshape features {feat} (size {total}) to {shape}")
    return tuple(rest)


def _squeeze(op: str, axes: Any, feat: tuple[int, ...], where: str) -> tuple[int, ...]:
    full = [1] + list(feat)
    if op == "Squeeze":
        if axes is None:
            axes = [i for i in range(1, len(full)) if full[i] == 1]
        axes = sorted(int(x) + len(full) if int(x) < 0 else int(x) for x in axes)
        if 0 in axes:
            raise UnsupportedModelError(f"{where}: squeezing the batch axis is not supported")
        if any(full[i] != 1 for i in axes):
            raise ShapeError(f"{where}: cannot squeeze non-unit axes {axes} of shape {tuple(full)}")
        return tuple(d for i, d in enumerate(full) if i not in axes)[1:]
    if axes is None:
        raise UnsupportedModelError(f"{where}: Unsqueeze without axes")
    out_rank = len(full) + len(axes)
    axes = sorted(int(x) + out_rank if int(x) < 0 else int(x) for x in axes)
    if 0 in axes:
        raise UnsupportedModelError(f"{where}: unsqueezing a new batch axis is not supported")
    it = iter(full)
    return tuple(1 if i in axes else next(it) for i in range(out_rank))[1:]
