"""A safe arithmetic expression over named inputs: parsed once into a closure tree, never eval()'d."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

Env = Mapping[str, float]
Node = Callable[[Env], float]

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
            fn_call = _FUNCTIONS[node.func.id]
            args = [self._compile(a) for a in node.args]
            return lambda env: float(fn_call(*(a(env) for a in args)))
        raise ExpressionError(
            f"expression {self.text!r}: {ast.unparse(node)!r} is not allowed "
            f"(use numbers, inputs, + - * /, comparisons, and/or/not, {'/'.join(_FUNCTIONS)})"
        )
