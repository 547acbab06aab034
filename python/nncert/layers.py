"""Layer descriptions. A :class:`~nncert.Network` is built from these; the Rust core holds the
validated network and runs it. Parameters are stored as read-only float64 copies."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from ._arrays import frozen_copy
from .errors import InvalidInputError, ShapeError

PAIRINGS = ("adjacent", "halves")


def _check_pairing(pairing: str) -> str:
    if pairing not in PAIRINGS:
        raise InvalidInputError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    return pairing


class Layer:
    """Base class of all layers."""

    #: True for layers with an element-wise slope-restricted activation (LipSDP's sector constraints).
    slope_restricted: bool = False

    def spec(self) -> tuple:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        a, b = self.params(), other.params()  # type: ignore[union-attr]
        return a.keys() == b.keys() and all(_param_eq(a[k], b[k]) for k in a)

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _param_eq(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_param_eq(x, y) for x, y in zip(a, b))
    return a == b


class Dense(Layer):
    """Affine layer ``y = W x + b`` with ``W`` of shape (out, in)."""

    def __init__(self, W: Any, b: Any = None):
        self.W = frozen_copy(W, "Dense.W", ndim=2)
        if b is None:
            self.b = np.zeros(self.W.shape[0])
            self.b.setflags(write=False)
        else:
            self.b = frozen_copy(b, "Dense.b", ndim=1)
        if self.b.shape[0] != self.W.shape[0]:
            raise ShapeError(f"Dense: b has length {self.b.shape[0]} but W has shape {self.W.shape} "
                             f"(b needs one entry per output row)")

    @property
    def in_features(self) -> int:
        return int(self.W.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.W.shape[0])

    def spec(self) -> tuple:
        return ("dense", self.W, self.b)

    def params(self) -> dict[str, Any]:
        return {"W": self.W, "b": self.b}

    def __repr__(self) -> str:
        return f"Dense({self.in_features} -> {self.out_features})"


class ReLU(Layer):
    slope_restricted = True
    sector = (0.0, 1.0)

    def spec(self) -> tuple:
        return ("relu",)


class LeakyReLU(Layer):
    slope_restricted = True

    def __init__(self, slope: float = 0.01):
        slope = float(slope)
        if not math.isfinite(slope):
            raise InvalidInputError(f"LeakyReLU: slope must be finite, got {slope}")
        self.slope = slope

    @property
    def sector(self) -> tuple[float, float]:
        return (min(self.slope, 1.0), max(self.slope, 1.0))

    def spec(self) -> tuple:
        return ("leaky_relu", self.slope)

    def params(self) -> dict[str, Any]:
        return {"slope": self.slope}


class Tanh(Layer):
    slope_restricted = True
    sector = (0.0, 1.0)

    def spec(self) -> tuple:
        return ("tanh",)


class Sigmoid(Layer):
    slope_restricted = True
    sector = (0.0, 0.25)

    def spec(self) -> tuple:
        return ("sigmoid",)


class GroupSort(Layer):
    """Sorts each group of ``group_size`` units in descending order.

    ``pairing="adjacent"`` groups units (0..g-1), (g..2g-1), ...; ``"halves"`` groups unit j with
    j + n/g, j + 2n/g, ... (for g = 2: unit i with unit i + n/2).
    """

    def __init__(self, group_size: int, pairing: str = "adjacent"):
        if int(group_size) != group_size or group_size < 2:
            raise InvalidInputError(f"GroupSort: group_size must be an integer >= 2, got {group_size!r}")
        self.group_size = int(group_size)
        self.pairing = _check_pairing(pairing)

    def groups(self, n: int) -> list[list[int]]:
        """The unit indices of each group in a layer of width ``n``."""
        g = self.group_size
        if self.pairing == "adjacent":
            return [[j * g + k for k in range(g)] for j in range(n // g)]
        return [[j + k * (n // g) for k in range(g)] for j in range(n // g)]

    def spec(self) -> tuple:
        return ("groupsort", self.group_size, self.pairing)

    def params(self) -> dict[str, Any]:
        return {"group_size": self.group_size, "pairing": self.pairing}


class MaxMin(GroupSort):
    """GroupSort with groups of two: a pair (a, b) becomes (max(a, b), min(a, b))."""

    def __init__(self, pairing: str = "adjacent"):
        super().__init__(2, pairing)

    def params(self) -> dict[str, Any]:
        return {"pairing": self.pairing}


class Householder(Layer):
    """Order-1 Householder activation on pairs: ``z`` if ``v.z > 0`` else ``(I - 2 v v^T) z`` with
    ``v = (sin(theta/2), -cos(theta/2))``. ``theta = pi/2`` gives MaxMin."""

    def __init__(self, theta: float, pairing: str = "adjacent"):
        theta = float(theta)
        if not math.isfinite(theta):
            raise InvalidInputError(f"Householder: theta must be finite, got {theta}")
        self.theta = theta
        self.pairing = _check_pairing(pairing)

    @property
    def v(self) -> np.ndarray:
        return np.array([math.sin(self.theta / 2), -math.cos(self.theta / 2)])

    def groups(self, n: int) -> list[list[int]]:
        return GroupSort(2, self.pairing).groups(n)

    def spec(self) -> tuple:
        return ("householder", self.theta, self.pairing)

    def params(self) -> dict[str, Any]:
        return {"theta": self.theta, "pairing": self.pairing}


class Residual(Layer):
    """``y = S x + f(x)`` where ``f`` is the sequence of inner layers (width-preserving) and ``S`` the optional
    linear skip, a square (d, d) matrix; ``skip=None`` (the default) is the identity, ``y = x + f(x)``. A skip
    equal to the identity is stored as ``None``."""

    def __init__(self, layers: Iterable[Layer], skip: Any = None):
        self.layers = tuple(layers)
        if not self.layers:
            raise ShapeError("Residual: needs at least one inner layer")
        for k, l in enumerate(self.layers):
            if not isinstance(l, Layer):
                raise InvalidInputError(f"Residual: inner layer {k} is {type(l).__name__}, not an nncert layer")
        self.skip: np.ndarray | None = None
        if skip is not None:
            S = frozen_copy(skip, "Residual.skip", ndim=2)
            if S.shape[0] != S.shape[1] or S.shape[0] == 0:
                raise ShapeError(f"Residual: skip must be a square (d, d) matrix, got shape {S.shape}")
            if not np.array_equal(S, np.eye(S.shape[0])):
                self.skip = S

    def spec(self) -> tuple:
        if self.skip is None:
            return ("residual", [l.spec() for l in self.layers])
        return ("residual", [l.spec() for l in self.layers], self.skip)

    def params(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "skip": self.skip}

    def __repr__(self) -> str:
        inner = f"Residual([{', '.join(map(repr, self.layers))}]"
        return inner + (")" if self.skip is None else f", skip={self.skip.shape[0]}x{self.skip.shape[1]})")


#: the activations an Implicit layer accepts
_IMPLICIT_ACTS = (ReLU, LeakyReLU, Tanh, Sigmoid, GroupSort, Householder)


class Implicit(Layer):
    """Implicit (equilibrium) layer: the output is the equilibrium ``z`` (width m) of ``z = act(W z + U x + b)``.

    ``W`` is (m, m), ``U`` is (m, n), ``b`` has length m (zeros when None); ``activation`` is an element-wise
    (ReLU, LeakyReLU, Tanh, Sigmoid) or grouped (MaxMin, GroupSort, Householder) activation layer. When the network
    is built, the Rust core certifies that the equilibrium exists and is unique, by
    (a) contraction: ``beta * ||W||_2 < 1`` (beta: the activation's Lipschitz constant), or (b) monotone operator
    (Winston & Kolter 2020): an element-wise activation with slope in [0, 1] and ``I - (W + W^T)/2`` positive
    definite, or, when a positive vector ``lam`` is given (the diagonal Lambda of Revay et al.'s LBEN models),
    ``2 Lambda - Lambda W - W^T Lambda`` positive definite; otherwise it raises UnsupportedModelError naming the
    layer and the numbers.
    ``Network.implicit_info()`` says which certificate was used. The forward pass iterates (Picard for (a),
    Peaceman-Rachford splitting for (b)) until ``||z - act(W z + U x + b)||_inf`` is at rounding level; a solve that
    does not converge raises SolverError.
    """

    def __init__(self, W: Any, U: Any, b: Any = None, activation: Layer | None = None, lam: Any = None):
        self.W = frozen_copy(W, "Implicit.W", ndim=2)
        self.U = frozen_copy(U, "Implicit.U", ndim=2)
        m = self.U.shape[0]
        if self.W.shape != (m, m):
            raise ShapeError(f"Implicit: W has shape {self.W.shape} but U has shape {self.U.shape}; W must be "
                             f"({m}, {m}) (one row and column per unit)")
        if b is None:
            self.b = np.zeros(m)
            self.b.setflags(write=False)
        else:
            self.b = frozen_copy(b, "Implicit.b", ndim=1)
        if self.b.shape[0] != m:
            raise ShapeError(f"Implicit: b has length {self.b.shape[0]} but U has shape {self.U.shape} "
                             f"(b needs one entry per unit)")
        act = ReLU() if activation is None else activation
        if isinstance(act, type) and issubclass(act, Layer):
            act = act()
        if not isinstance(act, _IMPLICIT_ACTS):
            raise InvalidInputError(f"Implicit: activation must be an instance of ReLU, LeakyReLU, Tanh, Sigmoid, "
                                    f"MaxMin, GroupSort or Householder, got {act!r}")
        self.activation = act
        self.lam = None if lam is None else frozen_copy(lam, "Implicit.lam", ndim=1)
        if self.lam is not None and self.lam.shape[0] != m:
            raise ShapeError(f"Implicit: lam has length {self.lam.shape[0]} but the layer has {m} units")

    @property
    def in_features(self) -> int:
        return int(self.U.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.U.shape[0])

    def spec(self) -> tuple:
        return ("implicit", self.W, self.U, self.b, self.activation.spec(), self.lam)

    def params(self) -> dict[str, Any]:
        return {"W": self.W, "U": self.U, "b": self.b, "activation": self.activation, "lam": self.lam}

    def __repr__(self) -> str:
        return f"Implicit({self.in_features} -> {self.out_features}, activation={self.activation!r})"


#: alias: equilibrium layers are also called implicit layers
Equilibrium = Implicit


def walk(layers: Sequence[Layer]) -> Iterable[Layer]:
    """Every layer, depth first, including those inside Residual blocks."""
    for l in layers:
        yield l
        if isinstance(l, Residual):
            yield from walk(l.layers)


def find_implicit(layers: Sequence[Layer]) -> str | None:
    """The position of the first Implicit layer ("layer 3", or "layer 2.1" inside a Residual block), or None."""
    for k, l in enumerate(layers):
        if isinstance(l, Implicit):
            return f"layer {k}"
        if isinstance(l, Residual):
            inner = find_implicit(l.layers)
            if inner is not None:
                return f"layer {k}." + inner.split(" ", 1)[1]
    return None


def reject_implicit(layers: Sequence[Layer], analysis: str) -> None:
    """UnsupportedModelError naming the first Implicit layer, for analyses that do not handle equilibrium layers."""
    where = find_implicit(layers)
    if where is not None:
        from .errors import UnsupportedModelError
        raise UnsupportedModelError(f"{analysis} does not support implicit (equilibrium) layers: {where} is Implicit")


__all__ = ["Layer", "Dense", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "GroupSort", "MaxMin", "Householder",
           "Residual", "Implicit", "Equilibrium", "walk", "find_implicit", "reject_implicit"]
