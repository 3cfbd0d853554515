"""Evaluation of checked expression trees: the values and their limits.

:mod:`processors.expressions` parses and checks an expression and documents the language;
this module gives a checked tree its meaning. It never sees an unchecked tree, so it only
handles the node types the checker lets through. Every value it builds is capped
(:data:`MAX_STRING`, :data:`MAX_SEQUENCE`, :data:`MAX_INT`, :data:`MAX_WEIGHT`) and exponents
are checked before they are computed, so no expression can allocate or compute without bound.

Why a weight as well as lengths: repetition shares items, so ``[[[1]*10000]*10000]*10000`` is
three lists of 10,000 items each, cheap to build, yet comparing it with an equal copy, hashing
it or searching it visits 10**12 items in C code that holds the GIL. The weight counts what
such an operation may visit, through every level of nesting and every shared reference.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from processors.expression_regex import search

MAX_STRING = 100_000
MAX_SEQUENCE = 10_000
MAX_INT = 2**63 - 1
MAX_WEIGHT = 100_000
"""The most a built container may weigh: one unit per item at every level of nesting (a
shared item counts each time it is referenced) and per :data:`CHARS_PER_UNIT` characters of a
string. Comparing, hashing or searching a value costs at most about its weight."""
CHARS_PER_UNIT = 100
MAX_VALUE_DEPTH = 64

#: name -> (minimum, maximum) number of positional arguments
FUNCTIONS: Mapping[str, tuple[int, int]] = {
    "len": (1, 1),
    "lower": (1, 1),
    "upper": (1, 1),
    "contains": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "abs": (1, 1),
    "min": (1, 16),
    "max": (1, 16),
    "round": (1, 2),
    "exists": (1, 1),
    "matches": (2, 2),
}


class ExpressionError(ValueError):
    """An expression is refused or cannot be evaluated; ``column`` is 1-based (0: unknown)."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        return f"{self.message} (column {self.column})" if self.column else self.message


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float)


def _sized(value: object) -> object:
    """Cap what the evaluator builds, so that no expression can allocate without bound."""
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ExpressionError(f"string longer than {MAX_STRING} characters")
    if isinstance(value, list | tuple) and len(value) > MAX_SEQUENCE:
        raise ExpressionError(f"list longer than {MAX_SEQUENCE} items")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise ExpressionError("integer too large")
    if isinstance(value, complex):
        raise ExpressionError("complex result")
    return value


def _repeat(left: object, right: object) -> object:
    seq, count = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(seq, str | list | tuple) and isinstance(count, int):
        if len(seq) * max(count, 0) > MAX_STRING:
            raise ExpressionError("repetition result too large")
        return seq * count
    return _numeric(operator.mul, left, right)


def _power(base: object, exponent: object) -> object:
    if not (_is_number(base) and _is_number(exponent)):
        raise ExpressionError("** needs numbers")
    if abs(exponent) > 1024 or (abs(base) > 1 and exponent * math.log2(abs(base)) > 63):
        raise ExpressionError("exponent too large")
    return base**exponent


def _numeric(op: Callable[[Any, Any], Any], left: object, right: object) -> object:
    if not (_is_number(left) and _is_number(right)):
        raise ExpressionError(
            f"arithmetic needs numbers, got {type(left).__name__} and {type(right).__name__}"
        )
    return op(left, right)


def _add(left: object, right: object) -> object:
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    if isinstance(left, list) and isinstance(right, list):
        return left + right
    return _numeric(operator.add, left, right)


_ARITHMETIC: Mapping[type[ast.operator], Callable[[object, object], object]] = {
    ast.Add: _add,
    ast.Sub: lambda a, b: _numeric(operator.sub, a, b),
    ast.Mult: _repeat,
    ast.Div: lambda a, b: _numeric(operator.truediv, a, b),
    ast.FloorDiv: lambda a, b: _numeric(operator.floordiv, a, b),
    ast.Mod: lambda a, b: _numeric(operator.mod, a, b),
    ast.Pow: _power,
}


_ORDERING: Mapping[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _compare(op: ast.cmpop, left: object, right: object) -> bool:
    if isinstance(op, ast.Eq):
        return bool(left == right)
    if isinstance(op, ast.NotEq):
        return bool(left != right)
    if isinstance(op, ast.Is):  # parse() only lets ``is`` compare with None
        return left is None
    if isinstance(op, ast.IsNot):
        return left is not None
    if isinstance(op, ast.In | ast.NotIn):
        if right is None or (left is None and isinstance(right, str)):
            return False
        if not isinstance(right, str | list | tuple | set | frozenset | dict):
            raise ExpressionError(
                f"'in' needs a string, list, set or dict, not {type(right).__name__}"
            )
        found = left in right  # a TypeError (unhashable item, 1 in "a") becomes ExpressionError
        return found if isinstance(op, ast.In) else not found
    if left is None or right is None:
        return False
    return bool(_ORDERING[type(op)](left, right))


def evaluate_tree(
    tree: ast.expr, patterns: Mapping[str, re.Pattern[str]], variables: Mapping[str, object]
) -> object:
    """The value of a tree checked by :func:`processors.expressions.parse`."""
    return _Evaluator(patterns, variables).eval(tree)


class _Evaluator:
    def __init__(
        self, patterns: Mapping[str, re.Pattern[str]], variables: Mapping[str, object]
    ) -> None:
        self.variables = variables
        self.patterns = patterns
        self._weights: dict[int, int] = {}
        self._weighed: list[object] = []  # keeps weighed values alive, so their ids stay theirs

    def _weight(self, value: object, depth: int = 0) -> int:
        """The weight of ``value`` (see :data:`MAX_WEIGHT`), or a number above it as soon as
        it is known to be too heavy: the work done here is bounded by the cap too."""
        if isinstance(value, str):
            return 1 + len(value) // CHARS_PER_UNIT
        if not isinstance(value, list | tuple | set | frozenset | dict):
            return 1
        known = self._weights.get(id(value))
        if known is not None:
            return known
        if depth > MAX_VALUE_DEPTH:
            raise ExpressionError(f"value nested deeper than {MAX_VALUE_DEPTH} levels")
        items = (
            (item for pair in value.items() for item in pair) if isinstance(value, dict) else value
        )
        total = 1
        for item in items:
            total += self._weight(item, depth + 1)
            if total > MAX_WEIGHT:
                break
        self._weights[id(value)] = total
        self._weighed.append(value)
        return total

    def _bounded(self, value: object) -> object:
        """``value`` when it stays within every cap, else :class:`ExpressionError`."""
        _sized(value)
        if self._weight(value) > MAX_WEIGHT:
            raise ExpressionError(f"value too large (weighs more than {MAX_WEIGHT})")
        return value

    def eval(self, node: ast.expr) -> object:
        try:
            return self._eval(node)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise ExpressionError(f"cannot evaluate: {exc}") from None

    def _eval(self, node: ast.expr) -> object:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.variables.get(node.id)
        if isinstance(node, ast.BoolOp):
            return self._bool_op(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left), self._eval(node.right)
            if left is None or right is None:
                return None
            return self._bounded(_ARITHMETIC[type(node.op)](left, right))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.IfExp):
            return self._eval(node.body if self._eval(node.test) else node.orelse)
        if isinstance(node, ast.Subscript):
            return self._subscript(self._eval(node.value), self._eval(node.slice))
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            # weighed before a set hashes its items: hashing visits all of each item
            items = self._bounded([self._eval(item) for item in node.elts])
            assert isinstance(items, list)
            if isinstance(node, ast.List):
                return items
            return tuple(items) if isinstance(node, ast.Tuple) else set(items)
        if isinstance(node, ast.Dict):
            pairs = self._bounded(
                [
                    (self._eval(k), self._eval(v))
                    for k, v in zip(node.keys, node.values, strict=True)
                    if k is not None
                ]
            )
            assert isinstance(pairs, list)
            return dict(pairs)
        raise ExpressionError(f"{type(node).__name__} is not allowed")  # parse() already refused it

    def _bool_op(self, node: ast.BoolOp) -> object:
        value: object = None
        for item in node.values:
            value = self._eval(item)
            if bool(value) == isinstance(node.op, ast.Or):
                return value
        return value

    def _unary(self, node: ast.UnaryOp) -> object:
        operand = self._eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not operand
        if operand is None:
            return None
        if not _is_number(operand):
            raise ExpressionError(f"unary minus/plus needs a number, got {type(operand).__name__}")
        return -operand if isinstance(node.op, ast.USub) else +operand

    def _compare(self, node: ast.Compare) -> bool:
        left = self._eval(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self._eval(right_node)
            if not _compare(op, left, right):
                return False
            left = right
        return True

    @staticmethod
    def _subscript(container: object, key: object) -> object:
        if container is None or key is None:
            return None
        if isinstance(container, dict):
            try:
                return container.get(key)
            except TypeError:
                raise ExpressionError(f"unhashable key of type {type(key).__name__}") from None
        if isinstance(container, str | list | tuple) and isinstance(key, int):
            return container[key] if -len(container) <= key < len(container) else None
        raise ExpressionError(
            f"cannot subscript {type(container).__name__} with {type(key).__name__}"
        )

    def _call(self, node: ast.Call) -> object:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        if name == "matches":
            text = self._eval(node.args[0])
            pattern = node.args[1]
            assert isinstance(pattern, ast.Constant) and isinstance(pattern.value, str)
            if text is None:
                return False
            if not isinstance(text, str):
                raise ExpressionError(f"matches() needs a string, got {type(text).__name__}")
            return search(self.patterns[pattern.value], text)
        args = [self._eval(arg) for arg in node.args]
        return self._bounded(_BUILTINS[name](*args))


def _string_arg(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"{name}() needs a string, got {type(value).__name__}")
    return value


def _len(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, str | list | tuple | set | frozenset | dict):
        return len(value)
    raise ExpressionError(f"len() of {type(value).__name__}")


def _case(name: str, convert: Callable[[str], str]) -> Callable[[object], object]:
    return lambda value: None if value is None else convert(_string_arg(name, value))


def _contains(haystack: object, needle: object) -> bool:
    if haystack is None or needle is None:
        return False
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle in haystack
    return _compare(ast.In(), needle, haystack)


def _affix(name: str, test: Callable[[str, str], bool]) -> Callable[[object, object], bool]:
    def check(text: object, affix: object) -> bool:
        if text is None or affix is None:
            return False
        return test(_string_arg(name, text), _string_arg(name, affix))

    return check


def _extreme(pick: Callable[..., Any]) -> Callable[..., object]:
    def extreme(*args: object) -> object:
        values = args[0] if len(args) == 1 and isinstance(args[0], list | tuple | set) else args
        if not values or any(value is None for value in values):
            return None
        return pick(values)

    return extreme


def _abs(value: object) -> object:
    if value is None:
        return None
    if not _is_number(value):
        raise ExpressionError(f"abs() needs a number, got {type(value).__name__}")
    return abs(value)


def _round(value: object, digits: object = 0) -> object:
    if value is None or digits is None:
        return None
    if not isinstance(digits, int) or not 0 <= digits <= 10:
        raise ExpressionError("round() digits must be an integer from 0 to 10")
    return _numeric(round, value, digits)


_BUILTINS: Mapping[str, Callable[..., object]] = {
    "len": _len,
    "lower": _case("lower", str.lower),
    "upper": _case("upper", str.upper),
    "contains": _contains,
    "startswith": _affix("startswith", str.startswith),
    "endswith": _affix("endswith", str.endswith),
    "abs": _abs,
    "min": _extreme(min),
    "max": _extreme(max),
    "round": _round,
    "exists": lambda value: value is not None,
}
