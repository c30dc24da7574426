"""The safe expression evaluator: what parses, what is refused, what happens on math errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.domain.expression import Expression, ExpressionError

NAMES = {"t", "td", "wind", "gust"}


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("t - td", {"t": 8.0, "td": 6.5}, 1.5),
        ("max(wind, gust * 0.8)", {"wind": 10.0, "gust": 20.0}, 16.0),
        ("abs(-t) + 2 * 3 / 4", {"t": 1.0}, 2.5),
        ("sqrt(hypot(3, 4))", {}, math.sqrt(5)),
        ("t > 0 and td < 0", {"t": 1.0, "td": -1.0}, 1.0),
        ("not (t > 0 or td > 0)", {"t": 1.0, "td": -1.0}, 0.0),
        ("0 < t <= 5", {"t": 5.0}, 1.0),
        ("0 < t <= 5", {"t": 6.0}, 0.0),
        ("-t", {"t": 2.0}, -2.0),
    ],
)
def test_allowed(text: str, env: dict[str, float], expected: float) -> None:
    assert Expression(text, NAMES)(env) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("__import__('os').system('true')", "not allowed"),
        ("t.real", "not allowed"),
        ("open('x')", "not allowed"),
        ("t ** 1000", "not allowed"),
        ("[t for t in td]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("'text'", "not allowed"),
        ("True", "not allowed"),
        ("t[0]", "not allowed"),
        ("max(t, key=td)", "not allowed"),
        ("pressure - 1", "unknown input 'pressure'"),
        ("t -", "not valid"),
        ("min(t)", "takes at least 2"),
        ("sqrt(t, td)", "takes 1"),
        ("abs(t, td)", "takes 1"),
        ("t + " * 200 + "t", "limit"),
    ],
)
def test_refused(text: str, problem: str) -> None:
    with pytest.raises(ExpressionError, match=problem):
        Expression(text, NAMES)


def test_math_errors_give_nan() -> None:
    assert math.isnan(Expression("t / td", NAMES)({"t": 1.0, "td": 0.0}))
    assert math.isnan(Expression("sqrt(t)", NAMES)({"t": -1.0}))


COLUMN_CASES = [
    "t - td",
    "max(wind, gust * 0.8) - min(t, td, 3)",
    "sqrt(t) / (td - 1) + hypot(wind, gust)",
    "t > 0 and not (td < 0 or wind >= gust)",
    "0 < t <= 5",
    "-abs(t) * 2",
]
number = st.floats(-10, 10, allow_nan=False) | st.sampled_from([0.0, 1.0, 5.0, -1.0])


@pytest.mark.parametrize("text", COLUMN_CASES)
@given(rows=st.lists(st.tuples(number, number, number, number), min_size=1, max_size=20))
def test_point_intervals_give_the_scalar_value(text: str, rows: list[tuple[float, float, float, float]]) -> None:
    """With equal bounds, row by row the bounds are the scalar value, or the row is flagged (never a different
    certain value)."""
    expr = Expression(text, NAMES)
    names = ("t", "td", "wind", "gust")
    columns = {n: (np.asarray([r[k] for r in rows]),) * 2 for k, n in enumerate(names)}
    lo, hi, uncertain = expr.over_intervals(columns, len(rows))
    for i, row in enumerate(rows):
        scalar = expr(dict(zip(names, row, strict=True)))
        if math.isnan(scalar):
            assert uncertain[i]
        elif not uncertain[i]:
            assert lo[i] == pytest.approx(scalar, rel=1e-12, abs=1e-12)
            assert hi[i] == pytest.approx(scalar, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("text", COLUMN_CASES)
@settings(deadline=None)
@given(rows=st.lists(st.tuples(*[st.tuples(number, number, st.floats(0, 1))] * 4), min_size=1, max_size=10))
def test_intervals_bound_every_value_inside_them(
    text: str, rows: list[tuple[tuple[float, float, float], ...]]
) -> None:
    """For inputs anywhere in their intervals the scalar value lies within the bounds (up to rounding), or
    the row is flagged: the screen over an entry's extremes can never miss a crossing."""
    expr = Expression(text, NAMES)
    names = ("t", "td", "wind", "gust")
    columns = {n: (np.asarray([min(r[k][:2]) for r in rows]), np.asarray([max(r[k][:2]) for r in rows]))
               for k, n in enumerate(names)}
    lo, hi, uncertain = expr.over_intervals(columns, len(rows))
    for i, row in enumerate(rows):
        # A point inside each input's interval, at the drawn fraction of its width; the ends themselves too.
        for pick in (lambda a, b, f: min(max(a + (b - a) * f, a), b), lambda a, b, f: a, lambda a, b, f: b):
            env = {n: pick(min(row[k][:2]), max(row[k][:2]), row[k][2]) for k, n in enumerate(names)}
            scalar = expr(env)
            if math.isnan(scalar):
                assert uncertain[i]
            elif not uncertain[i]:
                slack = 1e-9 * max(1.0, abs(scalar))
                assert lo[i] - slack <= scalar <= hi[i] + slack


def test_intervals_flag_math_errors() -> None:
    expr = Expression("t / td + sqrt(wind)", NAMES)
    cols = {"t": (np.array([1.0, 1.0, 1.0, 1.0]),) * 2,
            "td": (np.array([2.0, 0.0, 1.0, -1.0]), np.array([2.0, 0.0, 1.0, 1.0])),
            "wind": (np.array([4.0, 4.0, -1.0, 4.0]),) * 2}
    lo, hi, uncertain = expr.over_intervals(cols, 4)
    assert (lo[0], hi[0]) == (2.5, 2.5)
    assert uncertain.tolist() == [False, True, True, True]  # x/0, sqrt(-1), a divisor that may be 0


def test_intervals_of_comparisons_and_logic() -> None:
    expr = Expression("t > 2 and not (td == 1)", NAMES)
    cols = {"t": (np.array([3.0, 1.0, 1.0, 3.0]), np.array([4.0, 2.0, 3.0, 4.0])),
            "td": (np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.5, 0.5, 0.5, 1.0]))}
    lo, hi, uncertain = expr.over_intervals(cols, 4)
    assert lo.tolist() == [1.0, 0.0, 0.0, 0.0]  # surely true, surely false, maybe, surely false
    assert hi.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert not uncertain.any()
