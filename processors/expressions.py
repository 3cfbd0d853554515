"""A small, safe expression language for rule enforcement, step completion and transitions.

Agent builders write expressions in YAML, and P10 evaluates them on every turn over data that
customers and the LLM control, so nothing here may run code or hang. Expressions are parsed
with :func:`ast.parse` (``mode="eval"``) and evaluated by walking a whitelist of node types;
``eval``/``compile`` are never used.

Grammar (Python syntax, a subset):

* literals: strings, integers, floats, ``True``/``False``/``None``, lists, tuples, sets, dicts;
* names (variables, see :mod:`processors.expression_vars`); names starting with ``_`` are refused;
* ``and``/``or``/``not``; comparisons incl. chained ones, ``in``/``not in``, ``is (not) None``;
* arithmetic ``+ - * / // % **`` and unary ``-``/``+``; ``a if cond else b``;
* subscripts ``d[key]`` / ``seq[index]`` (no slices);
* calls of :data:`FUNCTIONS` only, positional arguments only.

Refused: attribute access, lambdas, comprehensions, f-strings, starred arguments, ``:=``,
keyword arguments, any other call. Bounds: :data:`MAX_LENGTH` characters, :data:`MAX_DEPTH`
levels, :data:`MAX_NODES` nodes. There are no loops, so evaluation visits each node at most once
and the node cap bounds its steps; values it builds are capped (:data:`MAX_STRING`,
:data:`MAX_SEQUENCE`, :data:`MAX_INT`, and :data:`MAX_WEIGHT` for containers through every
level of nesting, so that comparing or hashing one stays cheap), exponents are checked before
they are computed, and ``matches`` uses :mod:`processors.expression_regex`.

Missing data: a name absent from the variables evaluates to ``None``, and ``None``

* makes ordering comparisons (``< <= > >=``) ``False``, and ``in``/``not in`` when it is the
  container (or the item looked for in a string);
* makes the predicate functions (``contains``, ``startswith``, ``endswith``, ``matches``)
  ``False``;
* propagates through arithmetic, subscripts and value functions (``None + 1`` is ``None``).

``==``/``!=``/``is`` keep Python's meaning, so ``x is None`` and ``exists(x)`` test presence.
An enforcement expression states what must hold, so a constraint over missing data fails
closed unless it says otherwise (``response_refund_amount is None or ...``).

Errors: :func:`parse` raises :class:`ExpressionError` with a 1-based column; :func:`evaluate`
raises :class:`ExpressionError` for type errors and division by zero (callers that enforce
policy should treat that as "cannot verify", i.e. a violation).
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from processors.expression_eval import (
    FUNCTIONS,
    MAX_INT,
    MAX_SEQUENCE,
    MAX_STRING,
    MAX_WEIGHT,
    ExpressionError,
    evaluate_tree,
)
from processors.expression_regex import UnsafePatternError, compile_safe

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_INT",
    "MAX_LENGTH",
    "MAX_NODES",
    "MAX_SEQUENCE",
    "MAX_STRING",
    "MAX_WEIGHT",
    "CompiledExpression",
    "ExpressionError",
    "evaluate",
    "holds",
    "parse",
]

MAX_LENGTH = 2000
MAX_DEPTH = 32
MAX_NODES = 400

_REFUSED: Mapping[type[ast.AST], str] = {
    ast.Attribute: "attribute access is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Slice: "slices are not allowed",
}
_BIN_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_CMP_OPS = (
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
)
_ALLOWED = (
    ast.Constant,
    ast.Name,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.Compare,
    ast.IfExp,
    ast.Subscript,
    ast.Call,
    ast.List,
    ast.Tuple,
    ast.Set,
    ast.Dict,
)


@dataclass(frozen=True)
class CompiledExpression:
    """A checked expression: evaluate it as often as needed with :func:`evaluate`."""

    source: str
    names: frozenset[str]
    _tree: ast.expr = field(repr=False, compare=False)
    _patterns: Mapping[str, re.Pattern[str]] = field(repr=False, compare=False)


def parse(source: str) -> CompiledExpression:
    """Parse and check ``source``; raise :class:`ExpressionError` on anything refused."""
    if not isinstance(source, str):
        raise ExpressionError("an expression must be a string")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters", 1)
    if not source.strip():
        raise ExpressionError("empty expression", 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "\d" in a non-raw string: make authors write r"\d"
            tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        column = _column(source.strip(), exc.lineno or 1, max(exc.offset or 1, 1) - 1, chars=True)
        raise ExpressionError(f"syntax error: {exc.msg}", column + _lead(source)) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes; parser stack
        raise ExpressionError(f"cannot parse: {exc}", 1) from None
    checker = _Checker(source)
    checker.check_shape(tree)
    checker.visit(tree)
    return CompiledExpression(source, frozenset(checker.names), tree, checker.patterns)


def evaluate(expression: CompiledExpression, variables: Mapping[str, object]) -> object:
    """Evaluate ``expression`` with ``variables``; see the module docstring for semantics."""
    return evaluate_tree(expression._tree, expression._patterns, variables)


def holds(expression: CompiledExpression, variables: Mapping[str, object]) -> bool:
    """Truthiness of the result: what enforcement and conditions need."""
    return bool(evaluate(expression, variables))


def _lead(source: str) -> int:
    return len(source) - len(source.lstrip())


def _column(source: str, lineno: int, offset: int, *, chars: bool) -> int:
    """1-based character column in ``source`` of a (line, offset) position from the parser."""
    lines = source.splitlines(keepends=True) or [""]
    line = lines[min(lineno, len(lines)) - 1]
    if not chars:  # ast col_offset counts UTF-8 bytes
        offset = len(line.encode()[:offset].decode(errors="ignore"))
    return sum(len(previous) for previous in lines[: lineno - 1]) + offset + 1


class _Checker:
    """Walks the tree once before evaluation: whitelist, names, patterns, arity."""

    def __init__(self, source: str) -> None:
        self.text = source.strip()
        self.lead = _lead(source)
        self.names: set[str] = set()
        self.patterns: dict[str, re.Pattern[str]] = {}

    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        lineno, offset = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        return ExpressionError(message, _column(self.text, lineno, offset, chars=False) + self.lead)

    def check_shape(self, tree: ast.expr) -> None:
        """Depth and size, iteratively: the parser accepts nesting deeper than our recursion."""
        stack: list[tuple[ast.AST, int]] = [(tree, 1)]
        count = 0
        while stack:
            node, depth = stack.pop()
            count += 1
            if count > MAX_NODES:
                raise self.fail(tree, f"expression has more than {MAX_NODES} nodes")
            if depth > MAX_DEPTH:
                raise self.fail(node, f"expression nested deeper than {MAX_DEPTH} levels")
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))

    def visit(self, node: ast.expr) -> None:
        if type(node) in _REFUSED:
            raise self.fail(node, _REFUSED[type(node)])
        if not isinstance(node, _ALLOWED):
            raise self.fail(node, f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Constant):
            self._constant(node)
        elif isinstance(node, ast.Name):
            self._name(node)
        elif isinstance(node, ast.Call):
            self._call(node)
        elif isinstance(node, ast.BinOp) and not isinstance(node.op, _BIN_OPS):
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        elif isinstance(node, ast.Compare):
            self._compare(node)
        elif isinstance(node, ast.Dict) and any(key is None for key in node.keys):
            raise self.fail(node, "** unpacking is not allowed")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            raise self.fail(node, "operator ~ is not allowed")
        if not isinstance(node, ast.Call):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.visit(child)

    def _constant(self, node: ast.Constant) -> None:
        value = node.value
        if value is not None and not isinstance(value, str | int | float):
            raise self.fail(node, f"{type(value).__name__} literals are not allowed")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise self.fail(node, "integer literal too large")

    def _name(self, node: ast.Name) -> None:
        if node.id.startswith("_"):
            raise self.fail(node, f"name {node.id!r}: names starting with '_' are not allowed")
        if node.id in FUNCTIONS:
            raise self.fail(node, f"{node.id!r} is a function; call it")
        self.names.add(node.id)

    def _compare(self, node: ast.Compare) -> None:
        for op, right in zip(node.ops, node.comparators, strict=True):
            if not isinstance(op, _CMP_OPS):
                raise self.fail(node, f"comparison {type(op).__name__} is not allowed")
            is_none = isinstance(right, ast.Constant) and right.value is None
            if isinstance(op, ast.Is | ast.IsNot) and not is_none:
                raise self.fail(right, "'is' and 'is not' only compare with None")

    def _call(self, node: ast.Call) -> None:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            allowed = ", ".join(FUNCTIONS)
            raise self.fail(node, f"only these functions can be called: {allowed}")
        name = node.func.id
        if node.keywords:
            raise self.fail(node.keywords[0].value, "keyword arguments are not allowed")
        low, high = FUNCTIONS[name]
        if not low <= len(node.args) <= high:
            expected = str(low) if low == high else f"{low} to {high}"
            raise self.fail(node, f"{name}() takes {expected} argument(s), got {len(node.args)}")
        if name == "matches":
            self._pattern(node.args[1])
        for arg in node.args:
            self.visit(arg)

    def _pattern(self, node: ast.expr) -> None:
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            raise self.fail(node, "matches() needs the pattern as a string literal")
        try:
            self.patterns[node.value] = compile_safe(node.value)
        except UnsafePatternError as exc:
            raise self.fail(node, f"matches(): {exc}") from None
