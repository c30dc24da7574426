"""A safe arithmetic expression over named inputs: parsed once into a closure tree, never eval()'d."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

Env = Mapping[str, float]
Node = Callable[[Env], float]
Column = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Interval = tuple[Column, Column]  # lowest and highest value, row by row
Intervals = Mapping[str, Interval]
# A node over interval columns; it ORs into the mask the rows where a step was not finite or not bounded.
IntervalNode = Callable[[Intervals, Bools], Interval]

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "hypot": math.hypot,
}
# (fewest, most) arguments: checked when parsing, so a bad call never reaches the supervisor as a TypeError.
_ARITY: dict[str, tuple[int, int | None]] = {"abs": (1, 1), "min": (2, None), "max": (2, None), "sqrt": (1, 1),
                                             "hypot": (1, None)}
MAX_LENGTH = 500


class ExpressionError(ValueError):
    """An expression uses something outside the whitelist, or names an unknown input."""


class Expression:
    """`temperature - dew_point`, `max(wind_speed, wind_gust * 0.8)`, `humidity > 90 and temperature < 2`.

    Allowed: numbers, the declared input names, + - * /, unary -, comparisons, and/or/not
    (true is 1.0, false 0.0), and abs/min/max/sqrt/hypot. Nothing else parses.
    """

    def __init__(self, text: str, names: frozenset[str] | set[str]) -> None:
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"expression {text!r} is not valid: {exc.msg}") from None
        self.text = text
        self.names = frozenset(names)
        self.used: set[str] = set()
        self._root = self._compile(tree.body)
        self._intervals = self._compile_intervals(tree.body)  # only nodes `_compile` accepted get here

    def over_intervals(self, columns: Intervals, size: int) -> tuple[Column, Column, Bools]:
        """Bounds of the value row by row when each input may take any value in its (low, high) column, and
        the rows where no bound is sure.

        Interval arithmetic, for a screen over many rules and many combinations of inputs at once: wherever
        every input lies in its interval, the scalar evaluation gives NaN only on a flagged row, and otherwise
        a value within the bounds up to rounding (a caller comparing to a level leaves a margin). With equal
        low and high columns the bounds are the value itself. A step that may divide by zero, take the square
        root of a negative number or overflow flags its rows.
        """
        uncertain = np.zeros(size, dtype=bool)
        with np.errstate(all="ignore"):
            lo, hi = self._intervals(columns, uncertain)
            lo = np.broadcast_to(lo, (size,)).astype(np.float64)
            hi = np.broadcast_to(hi, (size,)).astype(np.float64)
        uncertain |= ~(np.isfinite(lo) & np.isfinite(hi))
        return lo, hi, uncertain

    def __call__(self, env: Env) -> float:
        """The value for `env` (input name → value); a math error (x/0, sqrt(-1)) gives NaN."""
        try:
            return float(self._root(env))
        except (ZeroDivisionError, ValueError, OverflowError):
            return math.nan

    def _compile(self, node: ast.expr) -> Node:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            value = float(node.value)
            return lambda env: value
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                known = ", ".join(sorted(self.names)) or "none"
                raise ExpressionError(f"expression names unknown input {node.id!r} (inputs: {known})")
            name = node.id
            self.used.add(name)
            return lambda env: env[name]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            fn, left, right = _BINARY[type(node.op)], self._compile(node.left), self._compile(node.right)
            return lambda env: fn(left(env), right(env))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self._compile(node.operand)
            return lambda env: -inner(env)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self._compile(node.operand)
            return lambda env: 0.0 if inner(env) else 1.0
        if isinstance(node, ast.BoolOp):
            parts = [self._compile(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda env: 1.0 if all(p(env) for p in parts) else 0.0
            return lambda env: 1.0 if any(p(env) for p in parts) else 0.0
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            first = self._compile(node.left)
            pairs = [(_COMPARE[type(op)], self._compile(c)) for op, c in zip(node.ops, node.comparators, strict=True)]

            def compare(env: Env) -> float:
                left = first(env)
                for fn, right_node in pairs:
                    right = right_node(env)
                    if not fn(left, right):
                        return 0.0
                    left = right
                return 1.0

            return compare
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS
            and not node.keywords
            and node.args
        ):
            fewest, most = _ARITY[node.func.id]
            if len(node.args) < fewest or (most is not None and len(node.args) > most):
                many = f"{fewest}" if fewest == most else f"at least {fewest}"
                raise ExpressionError(f"expression {self.text!r}: {node.func.id}() takes {many} argument(s)")
            fn_call = _FUNCTIONS[node.func.id]
            args = [self._compile(a) for a in node.args]
            return lambda env: float(fn_call(*(a(env) for a in args)))
        raise ExpressionError(
            f"expression {self.text!r}: {ast.unparse(node)!r} is not allowed "
            f"(use numbers, inputs, + - * /, comparisons, and/or/not, {'/'.join(_FUNCTIONS)})"
        )

    def _compile_intervals(self, node: ast.expr) -> IntervalNode:
        """The same tree as `_compile`, over interval columns (comparisons and logic give 0.0..1.0 bounds)."""
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)  # `_compile` let only numbers through
            const = np.asarray(float(node.value))
            return lambda cols, bad: (const, const)
        if isinstance(node, ast.Name):
            name = node.id
            return lambda cols, bad: cols[name]
        if isinstance(node, ast.BinOp):
            left, right = self._compile_intervals(node.left), self._compile_intervals(node.right)
            op = type(node.op)

            def binary(cols: Intervals, bad: Bools) -> Interval:
                (a_lo, a_hi), (b_lo, b_hi) = left(cols, bad), right(cols, bad)
                if op is ast.Add:
                    return _checked(a_lo + b_lo, bad), _checked(a_hi + b_hi, bad)
                if op is ast.Sub:
                    return _checked(a_lo - b_hi, bad), _checked(a_hi - b_lo, bad)
                if op is ast.Div:
                    bad |= np.broadcast_to((b_lo <= 0) & (b_hi >= 0), bad.shape)  # may divide by zero
                    corners = [a_lo / b_lo, a_lo / b_hi, a_hi / b_lo, a_hi / b_hi]
                else:
                    corners = [a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi]
                return _checked(_lowest(corners), bad), _checked(_highest(corners), bad)

            return binary
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self._compile_intervals(node.operand)

            def negative(cols: Intervals, bad: Bools) -> Interval:
                lo, hi = inner(cols, bad)
                return np.negative(hi), np.negative(lo)

            return negative
        if isinstance(node, ast.UnaryOp):
            inner = self._compile_intervals(node.operand)

            def negation(cols: Intervals, bad: Bools) -> Interval:
                t_lo, t_hi = _truth(inner(cols, bad))
                return 1.0 - t_hi, 1.0 - t_lo

            return negation
        if isinstance(node, ast.BoolOp):
            parts = [self._compile_intervals(v) for v in node.values]
            both = isinstance(node.op, ast.And)

            def logic(cols: Intervals, bad: Bools) -> Interval:
                truths = [_truth(p(cols, bad)) for p in parts]
                pick = _lowest if both else _highest
                return pick([t[0] for t in truths]), pick([t[1] for t in truths])

            return logic
        if isinstance(node, ast.Compare):
            first = self._compile_intervals(node.left)
            pairs = [(type(op), self._compile_intervals(c)) for op, c in zip(node.ops, node.comparators, strict=True)]

            def compare(cols: Intervals, bad: Bools) -> Interval:
                left = first(cols, bad)
                sure_true: Bools = np.asarray(True)
                maybe_true: Bools = np.asarray(True)
                for op, right_node in pairs:
                    right = right_node(cols, bad)
                    yes, no = _sure(op, left, right)
                    sure_true = sure_true & yes
                    maybe_true = maybe_true & ~no
                    left = right
                return np.where(sure_true, 1.0, 0.0), np.where(maybe_true, 1.0, 0.0)

            return compare
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        args = [self._compile_intervals(a) for a in node.args]
        fname = node.func.id

        def call(cols: Intervals, bad: Bools) -> Interval:
            values = [a(cols, bad) for a in args]
            if fname == "sqrt":
                lo, hi = values[0]
                bad |= np.broadcast_to(lo < 0, bad.shape)
                return _checked(np.sqrt(lo), bad), _checked(np.sqrt(hi), bad)
            if fname in ("abs", "hypot"):
                mags = [_magnitude(v) for v in values]
                if fname == "abs":
                    return mags[0]
                lo, hi = mags[0]
                for m_lo, m_hi in mags[1:]:
                    lo, hi = np.hypot(lo, m_lo), np.hypot(hi, m_hi)
                return _checked(lo, bad), _checked(hi, bad)
            pick = _lowest if fname == "min" else _highest
            return pick([v[0] for v in values]), pick([v[1] for v in values])

        return call


def _lowest(columns: list[Column]) -> Column:
    out = columns[0]
    for c in columns[1:]:
        out = np.minimum(out, c)
    return out


def _highest(columns: list[Column]) -> Column:
    out = columns[0]
    for c in columns[1:]:
        out = np.maximum(out, c)
    return out


def _magnitude(interval: Interval) -> Interval:
    """Bounds of |x| for x in the interval."""
    lo, hi = interval
    low = np.where(lo >= 0, lo, np.where(hi <= 0, -hi, 0.0))
    return low, np.maximum(np.abs(lo), np.abs(hi))


def _truth(interval: Interval) -> Interval:
    """Bounds of a value's truth (1.0 true, 0.0 false): true unless zero, as in Python."""
    lo, hi = interval
    surely = (lo > 0) | (hi < 0)
    maybe = ~((lo == 0) & (hi == 0))
    return np.where(surely, 1.0, 0.0), np.where(maybe, 1.0, 0.0)


def _sure(op: type[ast.cmpop], a: Interval, b: Interval) -> tuple[Bools, Bools]:
    """Rows where `a op b` surely holds, and where it surely fails, for any values in the intervals."""
    (a_lo, a_hi), (b_lo, b_hi) = a, b
    if op is ast.Lt:
        return a_hi < b_lo, a_lo >= b_hi
    if op is ast.LtE:
        return a_hi <= b_lo, a_lo > b_hi
    if op is ast.Gt:
        return a_lo > b_hi, a_hi <= b_lo
    if op is ast.GtE:
        return a_lo >= b_hi, a_hi < b_lo
    equal = (a_lo == a_hi) & (b_lo == b_hi) & (a_lo == b_lo)
    apart = (a_hi < b_lo) | (a_lo > b_hi)
    if op is ast.Eq:
        return equal, apart
    return apart, equal


def _checked(value: Column, bad: Bools) -> Column:
    bad |= ~np.isfinite(value)
    return value
