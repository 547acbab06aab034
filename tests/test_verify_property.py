"""Property construction and the VNN-LIB reader: exact parses of the competition files and of nested
and/or, and a clear PropertyFormatError (with the line number) for every malformed input."""

from __future__ import annotations

import numpy as np
import pytest

import nncert
from nncert import Property, PropertyFormatError
from nncert.errors import InvalidInputError, ShapeError

from conftest import data_path


def write(tmp_path, text, name="p.vnnlib"):
    p = tmp_path / name
    p.write_text(text)
    return p


HEADER = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"


def test_acasxu_prop3_parses_to_box_and_one_conjunction():
    p = Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_3.vnnlib"))
    assert (p.n_inputs, p.n_outputs) == (5, 5)
    assert len(p.regions) == 1 and len(p.unsafe) == 1
    lo, hi = p.regions[0]
    np.testing.assert_array_equal(lo, [-0.303531156, -0.009549297, 0.493380324, 0.3, 0.3])
    np.testing.assert_array_equal(hi, [-0.298552812, 0.009549297, 0.5, 0.5, 0.5])
    a_y, a_x, c = p.unsafe[0]
    # Y_0 <= Y_k  <=>  Y_0 - Y_k <= 0
    expect = np.zeros((4, 5))
    expect[:, 0] = 1
    expect[np.arange(4), np.arange(1, 5)] = -1
    np.testing.assert_array_equal(a_y, expect)
    np.testing.assert_array_equal(c, 0)
    assert not a_x.any()


def test_acasxu_prop6_has_two_boxes_and_four_disjuncts():
    p = Property.from_vnnlib(data_path("vnncomp2021", "acasxu", "prop_6.vnnlib"))
    assert len(p.regions) == 2 and len(p.unsafe) == 4 and len(p.pairs) == 8
    assert p.regions[0][0][1] == pytest.approx(0.11140846) and p.regions[1][1][1] == pytest.approx(-0.11140846)


def test_mnist_property_has_784_inputs_and_nine_disjuncts():
    p = Property.from_vnnlib(data_path("vnncomp2021", "mnistfc", "prop_0_0.03.vnnlib"))
    assert p.n_inputs == 784 and p.n_outputs == 10 and len(p.unsafe) == 9
    lo, hi = p.regions[0]
    assert lo.shape == (784,) and np.all(hi - lo <= 0.06 + 1e-8) and np.all(lo >= 0) and np.all(hi <= 1)


def test_nested_and_or_terms_comments(tmp_path):
    text = HEADER + """; a comment (with parentheses)
(assert (and (>= X_0 -1) (<= X_0 1)))  ; trailing comment
(assert (or (and (>= X_1 0) (<= X_1 0.5)) (and (>= X_1 0.5) (<= X_1 2e0))))
(assert (or (<= (+ Y_0 (* 2 Y_1)) (- 3 X_0)) (and (>= Y_0 Y_1) (>= (- Y_1) -4))))
"""
    p = Property.from_vnnlib(write(tmp_path, text))
    assert len(p.regions) == 2 and len(p.unsafe) == 2 and len(p.pairs) == 4
    np.testing.assert_array_equal(p.regions[1][1], [1.0, 2.0])
    a_y, a_x, c = p.unsafe[0]
    np.testing.assert_array_equal(a_y, [[1.0, 2.0]])
    np.testing.assert_array_equal(a_x, [[1.0, 0.0]])  # Y0 + 2 Y1 <= 3 - X0  ->  Y0 + 2Y1 + X0 <= 3
    np.testing.assert_array_equal(c, [3.0])
    a_y, _, c = p.unsafe[1]
    np.testing.assert_array_equal(a_y, [[-1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(c, [0.0, 4.0])


@pytest.mark.parametrize("text, line, words", [
    (HEADER + "(assert (<= X_0 1)\n", 5, "never closed"),
    (HEADER + "(assert (<= X_0 1)))\n", 5, "unexpected ')'"),
    (HEADER + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= Y_0 0))\n", None, "X_1 has no upper bound"),
    (HEADER + "(assert (foo X_0 1))\n", 5, "unsupported operator 'foo'"),
    (HEADER + "(assert (<= X_0 Z_3))\n", 5, "expected a number or a declared variable"),
    (HEADER + "(assert (<= X_0 Y_7))\n", 5, "Y_7 is used but not declared"),
    (HEADER + "(assert (<= (* X_0 X_1) 1))\n", 5, "non-linear"),
    (HEADER + "(assert (<= X_0))\n", 5, "exactly two terms"),
    (HEADER + "(declare-const X_0 Int)\n", 5, "expected (declare-const NAME Real)"),
    (HEADER + "(check-sat)\n", 5, "unsupported command 'check-sat'"),
    ("(declare-const X_0 Real)\n(declare-const X_2 Real)\n(declare-const Y_0 Real)\n(assert (<= Y_0 0))\n", None,
     "X_1 is not declared"),
    (HEADER, None, "no (assert"),
])
def test_malformed_files_raise_with_line_and_expectation(tmp_path, text, line, words):
    with pytest.raises(PropertyFormatError) as e:
        Property.from_vnnlib(write(tmp_path, text))
    msg = str(e.value)
    assert words in msg
    if line is not None:
        assert f"p.vnnlib:{line}:" in msg
    assert isinstance(e.value, nncert.Error) and isinstance(e.value, ValueError)


def test_robustness_property_builds_one_conjunction_per_other_class():
    x = np.array([0.2, 0.95, 0.5])
    p = Property.robustness(x, 0.1, label=1, n_outputs=4)
    lo, hi = p.regions[0]
    np.testing.assert_allclose(lo, [0.1, 0.85, 0.4])
    np.testing.assert_allclose(hi, [0.3, 1.0, 0.6])  # clipped to hi=1
    assert len(p.unsafe) == 3
    a_y, _, c = p.unsafe[0]
    np.testing.assert_array_equal(a_y, [[-1.0, 1.0, 0.0, 0.0]])  # y1 - y0 <= 0 (other class catches up)
    with pytest.raises(InvalidInputError):
        Property.robustness(x, -1.0, 0)
    with pytest.raises(InvalidInputError):
        Property.robustness(x, 0.1, 7, n_outputs=4)


def test_bad_properties_raise():
    with pytest.raises(InvalidInputError, match="unbounded"):
        Property([(np.array([0.0, -np.inf]), np.array([1.0, 1.0]))], [(np.ones((1, 2)), np.zeros(1))])
    with pytest.raises(InvalidInputError, match="empty"):
        Property([(np.array([2.0]), np.array([1.0]))], [(np.ones((1, 2)), np.zeros(1))])
    with pytest.raises(ShapeError):
        Property([(np.zeros(2), np.ones(2))], [(np.ones((1, 2)), np.zeros(3, ), np.zeros(1))])
    with pytest.raises(InvalidInputError):
        Property([(np.zeros(2), np.ones(2))], [(np.array([[np.nan, 1.0]]), np.zeros(1))])


def test_disjunct_without_output_constraint_makes_its_box_unsafe(tmp_path):
    text = HEADER + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
    text += "(assert (or (>= Y_0 100) (and (>= X_0 0.5))))\n"
    p = Property.from_vnnlib(write(tmp_path, text))
    assert len(p.regions) == 2
    net = nncert.Network([nncert.Dense(np.eye(2))])
    r = nncert.verify(net, p, timeout=5)
    assert r.status == "violated" and r.counterexample[0][0] >= 0.5
