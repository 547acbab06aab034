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
    # Squeeze/Unsqueeze/Reshape of the (size-1) batch axis switch between the two views.
    batched = len(dims) > 1
    feat = tuple(dims[1:]) if batched else (dims[0],)
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
                elif not batched and len(acc.feat_shape) == 1 and W.ndim == 2:
                    acc.apply(lambda x: x @ W.T, lambda c: c @ W.T)
                else:
                    if len(acc.feat_shape) < 2:
                        raise UnsupportedModelError(f"{where}: constant @ network tensor would mix the batch")
                    acc.apply(lambda x: np.matmul(W, x), lambda c: np.matmul(W, c))
            elif op == "Gemm":
                if ins[0] != running:
                    raise UnsupportedModelError(f"{where}: the network tensor must be Gemm's first operand A")
                if len(_full(acc.feat_shape, batched)) != 2:
                    raise UnsupportedModelError(f"{where}: Gemm needs a 2-D input, got shape "
                                                f"{_full(acc.feat_shape, batched)}")
                transA = bool(a.get("transA", 0))
                if transA and batched:
                    raise UnsupportedModelError(f"{where}: transA=1 on the network tensor would mix the batch")
                B = const_of(ins[1], where)
                B = B.T if a.get("transB", 0) else B
                alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
                C = const_of(ins[2], where) if len(ins) > 2 else 0.0
                tA = (lambda x: np.swapaxes(x, -1, -2)) if transA else (lambda x: x)
                acc.apply(lambda x: alpha * np.matmul(tA(x), B), lambda c: alpha * np.matmul(tA(c), B) + beta * C)
            elif op in ("Add", "Sub"):
                c0 = const_of(others[0], where)
                _check_broadcast(c0, acc.feat_shape, batched, where)
                sign = -1.0 if (op == "Sub" and ins[1] == running) else 1.0
                csign = -1.0 if (op == "Sub" and ins[0] == running) else 1.0
                acc.apply(lambda x: sign * x + 0.0 * c0, lambda c: sign * c + csign * c0)
            elif op == "Mul":
                s = const_of(others[0], where)
                _check_broadcast(s, acc.feat_shape, batched, where)
                acc.apply(lambda x: x * s, lambda c: c * s)
            elif op == "Div":
                if ins[0] != running:
                    raise UnsupportedModelError(f"{where}: constant / network tensor is not affine")
                s = const_of(ins[1], where)
                _check_broadcast(s, acc.feat_shape, batched, where)
                if np.any(s == 0):
                    raise InvalidInputError(f"{where}: division by zero in the divisor constant")
                acc.apply(lambda x: x / s, lambda c: c / s)
            elif op == "BatchNormalization":
                scale, bias, mean, var = (const_of(i, where) for i in ins[1:5])
                eps = float(a.get("epsilon", 1e-5))
                g = scale / np.sqrt(var + eps)
                rank = len(_full(acc.feat_shape, batched))
                if rank < 2:
                    raise UnsupportedModelError(f"{where}: BatchNormalization needs an input of rank >= 2")
                shape = (-1,) + (1,) * (rank - 2)  # channels on axis 1 of the (N, C, ...) tensor
                g, sh = g.reshape(shape), (bias - mean * scale / np.sqrt(var + eps)).reshape(shape)
                acc.apply(lambda x: x * g, lambda c: c * g + sh)
            elif op == "Flatten":
                axis = int(a.get("axis", 1))
                full = _full(acc.feat_shape, batched)
                axis = axis + len(full) if axis < 0 else axis
                lead, rest = int(np.prod(full[:axis])), int(np.prod(full[axis:]))
                if batched:
                    if axis == 0 or int(np.prod(full[1:axis])) != 1:
                        raise UnsupportedModelError(f"{where}: Flatten(axis={a.get('axis', 1)}) would merge the "
                                                    f"batch dimension with features {acc.feat_shape}")
                    acc.reshape((rest,))
                else:
                    acc.reshape((lead, rest))
            elif op == "Reshape":
                shape = [int(v) for v in const_of(ins[1], where).ravel()]
                batched, new = _reshape(shape, acc.feat_shape, batched, where)
                acc.reshape(new)
            elif op in ("Squeeze", "Unsqueeze"):
                axes = a.get("axes")
                if axes is None and len(ins) > 1:
                    axes = [int(v) for v in const_of(ins[1], where).ravel()]
                batched, new = _squeeze(op, axes, acc.feat_shape, batched, where)
                acc.reshape(new)
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


def _full(feat: tuple[int, ...], batched: bool) -> tuple[int, ...]:
    """The tensor's ONNX shape for one sample: a leading batch axis of 1 when batched."""
    return ((1,) if batched else ()) + tuple(feat)


def _check_broadcast(c: np.ndarray, feat: tuple[int, ...], batched: bool, where: str) -> None:
    if np.ndim(c) > len(_full(feat, batched)):
        raise UnsupportedModelError(f"{where}: constant of shape {np.shape(c)} would add axes to the network "
                                    f"tensor of shape {_full(feat, batched)}")


def _reshape(shape: list[int], feat: tuple[int, ...], batched: bool, where: str) -> tuple[bool, tuple[int, ...]]:
    """(batched, feature shape) after Reshape. C-order reshapes never permute a sample's entries, so only
    the batch axis needs care: with a batch axis, the target's first entry must be it (-1, 0 or 1), or a
    1-D target drops it."""
    full = _full(feat, batched)
    total = int(np.prod(feat))
    target = [full[i] if s == 0 and i < len(full) else s for i, s in enumerate(shape)]
    if target.count(-1) > 1:
        raise UnsupportedModelError(f"{where}: Reshape to {shape} has two -1 entries")
    if batched and len(target) > 1:
        if target[0] not in (-1, 1):
            raise UnsupportedModelError(f"{where}: Reshape to {shape} changes the batch dimension")
        rest = target[1:]
        if target[0] == -1 and -1 in rest:
            raise UnsupportedModelError(f"{where}: Reshape to {shape} has two -1 entries")
        if target[0] == -1:
            if int(np.prod(rest)) != total:
                raise UnsupportedModelError(f"{where}: Reshape to {shape} moves features into the batch dimension")
            return True, tuple(rest)
        return True, _resolve(rest, total, feat, shape, where)
    return False, _resolve(target, total, feat, shape, where)


def _resolve(dims: list[int], total: int, feat: tuple[int, ...], shape: list[int], where: str) -> tuple[int, ...]:
    dims = list(dims)
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        if known <= 0 or total % known:
            raise ShapeError(f"{where}: cannot reshape features {feat} to {shape}")
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims)) != total or any(d <= 0 for d in dims):
        raise ShapeError(f"{where}: cannot reshape features {feat} (size {total}) to {shape}")
    return tuple(dims)


def _squeeze(op: str, axes: Any, feat: tuple[int, ...], batched: bool, where: str) -> tuple[bool, tuple[int, ...]]:
    """(batched, feature shape) after Squeeze/Unsqueeze on the full ONNX shape. Squeezing axis 0 of a
    batched tensor drops the (size-1) batch axis; unsqueezing axis 0 of an unbatched one restores it."""
    full = list(_full(feat, batched))
    if op == "Squeeze":
        if axes is None:
            axes = [i for i in range(len(full)) if full[i] == 1]  # the batch axis too, as ONNX does for batch 1
        axes = sorted(int(x) + len(full) if int(x) < 0 else int(x) for x in axes)
        if any(i >= len(full) or full[i] != 1 for i in axes):
            raise ShapeError(f"{where}: cannot squeeze axes {axes} of shape {tuple(full)}")
        new = [d for i, d in enumerate(full) if i not in axes]
        if batched and 0 not in axes:
            return True, tuple(new[1:])
        return False, tuple(new)
    if axes is None:
        raise UnsupportedModelError(f"{where}: Unsqueeze without axes")
    out_rank = len(full) + len(axes)
    axes = sorted(int(x) + out_rank if int(x) < 0 else int(x) for x in axes)
    it = iter(full)
    new = [1 if i in axes else next(it) for i in range(out_rank)]
    if batched:
        if 0 in axes:
            raise UnsupportedModelError(f"{where}: unsqueezing a second batch axis is not supported")
        return True, tuple(new[1:])
    if 0 in axes:
        return True, tuple(new[1:])
    return False, tuple(new)
