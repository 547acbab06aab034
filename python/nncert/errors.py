"""The exceptions nncert raises. Every one derives from :class:`nncert.Error`.

Each also derives from the builtin a caller would naturally catch (``ShapeError`` is a ``ValueError``),
so existing ``except ValueError`` code keeps working. The Rust core's errors map onto these classes in
one place (``rust/py/src/errors.rs``); a panic in the core surfaces as a plain :class:`Error`.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of every nncert error."""


class ShapeError(Error, ValueError):
    """Arrays or layers whose shapes do not fit together (the message names both shapes)."""


class InvalidInputError(Error, ValueError):
    """NaN/inf in weights or inputs, empty arrays, an unsupported dtype, an out-of-range argument."""


class UnsupportedModelError(Error, NotImplementedError):
    """A model file or module uses an operator or layer nncert cannot represent (names it and where)."""


class SolverError(Error, RuntimeError):
    """A numerical solver failed, reported infeasibility, or returned a result that does not check out."""


class TimeLimitError(Error, TimeoutError):
    """A call that cannot return a partial result ran past its time limit."""


class PropertyFormatError(Error, ValueError):
    """A malformed property file (VNN-LIB); the message gives the line and what was expected."""


__all__ = [
    "Error",
    "ShapeError",
    "InvalidInputError",
    "UnsupportedModelError",
    "SolverError",
    "TimeLimitError",
    "PropertyFormatError",
]
