"""Safe arithmetic: numbers, + - * / // % **, unary signs and parentheses. No eval."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

MAX_EXPRESSION_CHARS = 200
_MAX_RESULT_BITS = 4096

Number = int | float


class CalcError(ValueError):
    """The expression is not plain arithmetic, or its value is out of bounds."""


def _power(base: Number, exponent: Number) -> Number:
    magnitude = abs(base)
    if magnitude > 1 and abs(exponent) * math.log2(magnitude) > _MAX_RESULT_BITS:
        raise CalcError("result too large")
    return operator.pow(base, exponent)  # type: ignore[no-any-return]


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def calculate(expression: str) -> Number:
    """Evaluate ``expression``; raises :class:`CalcError` for anything but arithmetic."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalcError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise CalcError("not a valid arithmetic expression") from None
    try:
        return _bounded(_evaluate(tree.body))
    except ZeroDivisionError:
        raise CalcError("division by zero") from None
    except OverflowError:
        raise CalcError("result too large") from None


def _bounded(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > _MAX_RESULT_BITS:
        raise CalcError("result too large")
    return value


def _evaluate(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise CalcError("only numbers are allowed")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](
            _bounded(_evaluate(node.left)), _bounded(_evaluate(node.right))
        )
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise CalcError("only numbers, + - * / // % ** and parentheses are allowed")


def format_number(value: Number) -> str:
    """``3.0`` -> ``"3"``; other values as Python prints them."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
