"""The safe expression evaluator: what parses, what is refused, what happens on math errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
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
def test_columns_agree_with_the_scalar_evaluation(text: str, rows: list[tuple[float, float, float, float]]) -> None:
    """Row by row the column form gives the scalar value, or flags the row (never a different certain value)."""
    expr = Expression(text, NAMES)
    names = ("t", "td", "wind", "gust")
    columns = {n: np.asarray([r[k] for r in rows]) for k, n in enumerate(names)}
    value, uncertain = expr.over_columns(columns, len(rows))
    for i, row in enumerate(rows):
        scalar = expr(dict(zip(names, row, strict=True)))
        if math.isnan(scalar):
            assert uncertain[i]
        elif not uncertain[i]:
            assert value[i] == pytest.approx(scalar, rel=1e-12, abs=1e-12)


def test_columns_flag_math_errors() -> None:
    expr = Expression("t / td + sqrt(wind)", NAMES)
    cols = {"t": np.array([1.0, 1.0, 1.0]), "td": np.array([2.0, 0.0, 1.0]), "wind": np.array([4.0, 4.0, -1.0])}
    value, uncertain = expr.over_columns(cols, 3)
    assert value[0] == 2.5
    assert uncertain.tolist() == [False, True, True]
