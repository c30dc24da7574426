"""The safe expression evaluator: what parses, what is refused, what happens on math errors."""

from __future__ import annotations

import math

import pytest

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
        ("t + " * 200 + "t", "limit"),
    ],
)
def test_refused(text: str, problem: str) -> None:
    with pytest.raises(ExpressionError, match=problem):
        Expression(text, NAMES)


def test_math_errors_give_nan() -> None:
    assert math.isnan(Expression("t / td", NAMES)({"t": 1.0, "td": 0.0}))
    assert math.isnan(Expression("sqrt(t)", NAMES)({"t": -1.0}))
