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
Columns = Mapping[str, Column]
# A node over columns; it ORs into the mask the rows where a step was not finite.
ColumnNode = Callable[[Columns, npt.NDArray[np.bool_]], Column]

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
_NP_BINARY: dict[type[ast.operator], Callable[[Column, Column], Column]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
}
_NP_COMPARE: dict[type[ast.cmpop], Callable[[Column, Column], npt.NDArray[np.bool_]]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
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
        self._columns = self._compile_columns(tree.body)  # only nodes `_compile` accepted get here

    def over_columns(self, columns: Columns, size: int) -> tuple[Column, npt.NDArray[np.bool_]]:
        """The value row by row for columns of inputs, and the rows where it is uncertain.

        A screen for many rules at once, not a substitute for `__call__`: where a step was not finite
        (x/0, sqrt(-1), overflow) the scalar evaluation may give NaN or differ, so such rows are flagged.
        """
        uncertain = np.zeros(size, dtype=bool)
        with np.errstate(all="ignore"):
            value = np.broadcast_to(self._columns(columns, uncertain), (size,)).astype(np.float64)
        uncertain |= ~np.isfinite(value)
        return value, uncertain

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

    def _compile_columns(self, node: ast.expr) -> ColumnNode:
        """The same tree as `_compile`, over numpy columns (comparisons and logic give 1.0/0.0)."""
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)  # `_compile` let only numbers through
            value = float(node.value)
            return lambda cols, bad: np.asarray(value)
        if isinstance(node, ast.Name):
            name = node.id
            return lambda cols, bad: cols[name]
        if isinstance(node, ast.BinOp):
            fn, left, right = _NP_BINARY[type(node.op)], self._compile_columns(node.left), self._compile_columns(
                node.right)
            return lambda cols, bad: _checked(fn(left(cols, bad), right(cols, bad)), bad)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self._compile_columns(node.operand)
            return lambda cols, bad: np.negative(inner(cols, bad))
        if isinstance(node, ast.UnaryOp):
            inner = self._compile_columns(node.operand)
            return lambda cols, bad: np.where(inner(cols, bad) != 0, 0.0, 1.0)
        if isinstance(node, ast.BoolOp):
            parts = [self._compile_columns(v) for v in node.values]
            join = np.logical_and if isinstance(node.op, ast.And) else np.logical_or

            def logic(cols: Columns, bad: npt.NDArray[np.bool_]) -> Column:
                truth = parts[0](cols, bad) != 0
                for p in parts[1:]:
                    truth = join(truth, p(cols, bad) != 0)
                return np.where(truth, 1.0, 0.0)

            return logic
        if isinstance(node, ast.Compare):
            first = self._compile_columns(node.left)
            pairs = [(_NP_COMPARE[type(op)], self._compile_columns(c))
                     for op, c in zip(node.ops, node.comparators, strict=True)]

            def compare(cols: Columns, bad: npt.NDArray[np.bool_]) -> Column:
                left = first(cols, bad)
                truth = np.asarray(True)
                for fn, right_node in pairs:
                    right = right_node(cols, bad)
                    truth = truth & fn(left, right)
                    left = right
                return np.where(truth, 1.0, 0.0)

            return compare
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        args = [self._compile_columns(a) for a in node.args]
        fname = node.func.id

        def call(cols: Columns, bad: npt.NDArray[np.bool_]) -> Column:
            values = [a(cols, bad) for a in args]
            if fname == "abs":
                return np.abs(values[0])
            if fname == "sqrt":
                return _checked(np.sqrt(values[0]), bad)
            reduce = {"min": np.minimum, "max": np.maximum, "hypot": np.hypot}[fname]
            out = np.abs(values[0]) if fname == "hypot" else values[0]
            for v in values[1:]:
                out = reduce(out, v)
            return _checked(out, bad)

        return call


def _checked(value: Column, bad: npt.NDArray[np.bool_]) -> Column:
    bad |= ~np.isfinite(value)
    return value
