"""Reader for the VNN-LIB subset used in VNN-COMP 2021.

Supported: ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)``, ``(assert F)`` where F nests
``and`` / ``or`` over linear atoms ``(<= e1 e2)``, ``(>= e1 e2)`` (``<`` and ``>`` are read as their
non-strict forms, as the competition does); terms are variables, numbers, ``(+ ...)``, ``(- ...)`` and
``(* number term)``. ``;`` starts a comment. The conjunction of all asserts is put in disjunctive normal
form; in each disjunct, bounds on single inputs form the box and every other atom joins the unsafe set.
"""

from __future__ import annotations

import itertools
import os
import re
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import PropertyFormatError

_TOKEN = re.compile(r"\s*(?:(;[^\n]*)|(\()|(\))|([^\s();]+))")
_VAR = re.compile(r"^([XY])_(\d+)$")
_NUM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
MAX_DNF_TERMS = 100_000


class Sym(str):
    line: int


def _tokens(text: str, where: str):
    line, pos = 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip()))
        line += text.count("\n", pos, start)
        pos = m.end()
        if m.group(1):
            continue
        tok = m.group(2) or m.group(3) or m.group(4)
        if tok is None:
            break
        yield tok, line
    # trailing whitespace only


def _parse_sexprs(text: str, where: str) -> list[Any]:
    stack: list[list[Any]] = [[]]
    opened: list[int] = []
    for tok, line in _tokens(text, where):
        if tok == "(":
            stack.append([])
            opened.append(line)
        elif tok == ")":
            if len(stack) == 1:
                raise PropertyFormatError(f"{where}:{line}: unexpected ')' (no matching '(')")
            done = stack.pop()
            opened.pop()
            node = _List(done)
            node.line = line
            stack[-1].append(node)
        else:
            s = Sym(tok)
            s.line = line
            stack[-1].append(s)
    if len(stack) != 1:
        raise PropertyFormatError(f"{where}:{opened[-1]}: '(' is never closed (expected ')' before the end of the file)")
    return stack[0]


class _List(list):
    line: int


def _line(node: Any) -> int:
    return getattr(node, "line", 0)


class _Reader:
    def __init__(self, where: str):
        self.where = where
        self.decl: dict[str, tuple[str, int]] = {}

    def err(self, node: Any, msg: str) -> PropertyFormatError:
        return PropertyFormatError(f"{self.where}:{_line(node)}: {msg}")

    def term(self, node: Any) -> tuple[dict[str, Fraction], Fraction]:
        """A linear term: (coefficients by variable name, constant)."""
        if isinstance(node, Sym):
            if node in self.decl:
                return {str(node): Fraction(1)}, Fraction(0)
            if _NUM.match(node):
                return {}, Fraction(node)
            if _VAR.match(node):
                raise self.err(node, f"variable {node} is used but not declared (expected (declare-const {node} Real))")
            raise self.err(node, f"expected a number or a declared variable, got {node!r}")
        if not node or not isinstance(node[0], Sym):
            raise self.err(node, "expected a term: a number, a variable, or (+ ...), (- ...), (* number term)")
        op, args = node[0], node[1:]
        parts = [self.term(a) for a in args]
        if op == "+" and parts:
            return _add(parts)
        if op == "-" and parts:
            if len(parts) == 1:
                return _scale(parts[0], Fraction(-1))
            return _add([parts[0]] + [_scale(p, Fraction(-1)) for p in parts[1:]])
        if op == "*" and len(parts) >= 2:
            const = [p for p in parts if not p[0]]
            var = [p for p in parts if p[0]]
            if len(var) > 1:
                raise self.err(node, "non-linear product of variables (only linear constraints are supported)")
            k = Fraction(1)
            for p in const:
                k *= p[1]
            return _scale(var[0], k) if var else ({}, k)
        raise self.err(node, f"unsupported term operator {op!r} (expected +, -, *)")

    def formula(self, node: Any) -> list[list[tuple]]:
        """DNF of a formula: a list of conjunctions of atoms (coefs, const) meaning coefs.v + const <= 0."""
        if not isinstance(node, _List) or not node or not isinstance(node[0], Sym):
            raise self.err(node, f"expected a formula (and ...), (or ...), (<= a b) or (>= a b), got {_show(node)}")
        op, args = node[0], node[1:]
        if op in ("and", "or"):
            if not args:
                raise self.err(node, f"({op}) needs at least one argument")
            subs = [self.formula(a) for a in args]
            if op == "or":
                return [c for s in subs for c in s]
            n_terms = 1
            for s in subs:
                n_terms *= len(s)
            if n_terms > MAX_DNF_TERMS:
                raise self.err(node, f"the disjunctive normal form has {n_terms} terms (limit {MAX_DNF_TERMS})")
            return [[a for c in combo for a in c] for combo in itertools.product(*subs)]
        if op in ("<=", ">=", "<", ">"):
            if len(args) != 2:
                raise self.err(node, f"({op} a b) takes exactly two terms, got {len(args)}")
            a, b = self.term(args[0]), self.term(args[1])
            lhs, rhs = (a, b) if op in ("<=", "<") else (b, a)
            return [[_add([lhs, _scale(rhs, Fraction(-1))])]]
        raise self.err(node, f"unsupported operator {op!r} (expected and, or, <=, >=)")


def _add(parts):
    coefs: dict[str, Fraction] = {}
    const = Fraction(0)
    for c, k in parts:
        for v, a in c.items():
            coefs[v] = coefs.get(v, Fraction(0)) + a
        const += k
    return {v: a for v, a in coefs.items() if a != 0}, const


def _scale(p, k):
    return {v: a * k for v, a in p[0].items()}, p[1] * k


def _show(node: Any) -> str:
    if isinstance(node, list):
        return "(" + " ".join(_show(n) for n in node[:4]) + (" ...)" if len(node) > 4 else ")")
    return repr(str(node))


def read_vnnlib(path: str | os.PathLike, n_inputs: int | None = None, n_outputs: int | None = None):
    """Parses a VNN-LIB file into a :class:`nncert.Property`."""
    from .property import Property

    where = os.fspath(path)
    with open(where, encoding="utf-8") as f:
        text = f.read()
    forms = _parse_sexprs(text, os.path.basename(where))
    r = _Reader(os.path.basename(where))
    asserts = []
    for node in forms:
        if not isinstance(node, _List) or not node or not isinstance(node[0], Sym):
            raise r.err(node, f"expected (declare-const ...) or (assert ...) at top level, got {_show(node)}")
        head = node[0]
        if head == "declare-const":
            if len(node) != 3 or not isinstance(node[1], Sym) or node[2] != "Real":
                raise r.err(node, "expected (declare-const NAME Real)")
            m = _VAR.match(node[1])
            if not m:
                raise r.err(node, f"variable {node[1]!r} must be named X_i (input) or Y_j (output)")
            if str(node[1]) in r.decl:
                raise r.err(node, f"{node[1]} is declared twice")
            r.decl[str(node[1])] = (m.group(1), int(m.group(2)))
        elif head == "assert":
            if len(node) != 2:
                raise r.err(node, "expected (assert FORMULA) with exactly one formula")
            asserts.append(node[1])
        else:
            raise r.err(node, f"unsupported command {head!r} (expected declare-const or assert)")
    nx = 1 + max((i for k, i in r.decl.values() if k == "X"), default=-1)
    ny = 1 + max((i for k, i in r.decl.values() if k == "Y"), default=-1)
    if nx == 0:
        raise PropertyFormatError(f"{r.where}: no input variables declared (expected (declare-const X_0 Real) ...)")
    if ny == 0:
        raise PropertyFormatError(f"{r.where}: no output variables declared (expected (declare-const Y_0 Real) ...)")
    for kind, n in (("X", nx), ("Y", ny)):
        missing = [i for i in range(n) if f"{kind}_{i}" not in r.decl]
        if missing:
            raise PropertyFormatError(f"{r.where}: {kind}_{missing[0]} is not declared but {kind}_{n - 1} is "
                                      f"(variables must be numbered from 0 without gaps)")
    if not asserts:
        raise PropertyFormatError(f"{r.where}: no (assert ...) found")
    dnf: list[list[tuple]] = [[]]
    for a in asserts:
        sub = r.formula(a)
        if len(dnf) * len(sub) > MAX_DNF_TERMS:
            raise r.err(a, f"the disjunctive normal form exceeds {MAX_DNF_TERMS} terms")
        dnf = [c + s for c in dnf for s in sub]
    regions: list[tuple[np.ndarray, np.ndarray]] = []
    unsafe: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pairs: list[tuple[int, int]] = []
    for t, conj in enumerate(dnf):
        lo = np.full(nx, -np.inf)
        hi = np.full(nx, np.inf)
        rows = []
        for coefs, const in conj:
            if len(coefs) == 1:
                (v, a), = coefs.items()
                kind, i = r.decl[v]
                if kind == "X":
                    bound = float(-const / a)
                    if a > 0:
                        hi[i] = min(hi[i], bound)
                    else:
                        lo[i] = max(lo[i], bound)
                    continue
            if not coefs:
                if const > 0:  # 0 <= -const fails: the disjunct is empty
                    rows = None
                    break
                continue
            rows.append((coefs, const))
        if rows is None:
            continue
        bad = [i for i in range(nx) if not (np.isfinite(lo[i]) and np.isfinite(hi[i]))]
        if bad:
            i = bad[0]
            side = "lower" if not np.isfinite(lo[i]) else "upper"
            raise PropertyFormatError(f"{r.where}: input X_{i} has no {side} bound"
                                      f"{' in disjunct ' + str(t) if len(dnf) > 1 else ''}; "
                                      f"the input region must be a bounded box")
        if np.any(lo > hi):
            continue  # empty box: nothing to check in this disjunct
        if not rows:
            rows = [({}, Fraction(-1))]  # no output condition: every input of the box is unsafe (0 <= 1)
        a_y = np.zeros((len(rows), ny))
        a_x = np.zeros((len(rows), nx))
        c = np.zeros(len(rows))
        for k, (coefs, const) in enumerate(rows):
            for v, a in coefs.items():
                kind, i = r.decl[v]
                (a_y if kind == "Y" else a_x)[k, i] = float(a)
            c[k] = float(-const)
        ri = _index(regions, (lo, hi))
        ui = _index(unsafe, (a_y, a_x, c))
        if (ri, ui) not in pairs:
            pairs.append((ri, ui))
    if not pairs:
        raise PropertyFormatError(f"{r.where}: every disjunct has an empty input box")
    if n_inputs is not None and n_inputs != nx:
        raise PropertyFormatError(f"{r.where}: declares {nx} inputs, expected {n_inputs}")
    if n_outputs is not None and n_outputs != ny:
        raise PropertyFormatError(f"{r.where}: declares {ny} outputs, expected {n_outputs}")
    return Property(regions, unsafe, pairs=pairs, name=os.path.basename(where))


def _index(items: list, item: tuple) -> int:
    for k, it in enumerate(items):
        if all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(it, item)):
            return k
    items.append(item)
    return len(items) - 1
