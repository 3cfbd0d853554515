"""Enforcement expressions under fuzzing: no code execution, bounded evaluation.

``tests/test_expressions_hostile.py`` holds the catalogue of hostile sources and random text /
token soup. This file adds what those cannot reach:

* expressions generated from the grammar itself (so they parse and get evaluated, deeply);
* hostile families grown to any size (nesting, exponent towers, repetition towers, hashing
  towers, long strings): each is refused with ``ExpressionError``, which is what bounds it;
* a tripwire around parse and evaluate that records any ``eval``/``exec``/``__import__``/
  ``open``/``os.system``/subprocess call and any ``compile`` that is not parse-only;
* the example pack's real enforcement expressions over random customer data and answers:
  ``check_rule_expression`` answers (``None`` or a reason) and never raises.

No wall-clock assertions: a case is bounded because it is refused or its values are capped;
the timeout mark only turns a regression into a failure instead of a stuck run.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.expressions import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_INT,
    MAX_LENGTH,
    MAX_SEQUENCE,
    MAX_STRING,
    MAX_WEIGHT,
    ExpressionError,
    evaluate,
    parse,
)
from processors.phases.enforcement import check_rule_expression
from schemas.pack.rules import Rule
from sinks.pack_files import load_pack
from tests.test_pack_validate import EXAMPLE

pytestmark = pytest.mark.timeout(120)

# -- the tripwire ----------------------------------------------------------------------------


class Tripwire:
    """Records every call that would mean code is being run, loaded or opened, by the thread
    that armed it: other threads of the test process (a client or exporter an earlier test
    left running) call the real function, since they do not run the expression."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.thread = threading.get_ident()

    def _record(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: object, **kwargs: object) -> Any:
            if threading.get_ident() != self.thread:
                return real(*args, **kwargs)
            self.calls.append(f"{name}{args!r:.80}")
            raise AssertionError(f"{name} called")

        return call

    @contextlib.contextmanager
    def armed(self) -> Iterator[Tripwire]:
        real_compile = builtins.compile

        def parse_only(source: Any, filename: Any, mode: Any, flags: int = 0, **kw: Any) -> Any:
            if not flags & ast.PyCF_ONLY_AST:
                self.calls.append(f"compile(mode={mode!r}, flags={flags})")
            return real_compile(source, filename, mode, flags, **kw)

        with contextlib.ExitStack() as stack:
            for target, name in (
                (builtins, "eval"),
                (builtins, "exec"),
                (builtins, "__import__"),
                (builtins, "open"),
                (builtins, "breakpoint"),
                (os, "system"),
                (os, "popen"),
                (subprocess, "Popen"),
            ):
                real = getattr(target, name)
                stack.enter_context(mock.patch.object(target, name, self._record(name, real)))
            stack.enter_context(mock.patch.object(builtins, "compile", parse_only))
            yield self


def _run(source: str, variables: dict[str, object]) -> object:
    """parse + evaluate under the tripwire: the value, or the ExpressionError raised."""
    tripwire = Tripwire()
    try:
        with tripwire.armed():
            try:
                return evaluate(parse(source), variables)
            except ExpressionError as exc:
                return exc
    finally:
        assert tripwire.calls == [], f"{source!r} ran code: {tripwire.calls}"


def _assert_capped(value: object) -> None:
    if isinstance(value, str):
        assert len(value) <= MAX_STRING
    elif isinstance(value, list | tuple):
        assert len(value) <= MAX_SEQUENCE
    elif isinstance(value, int) and not isinstance(value, bool):
        assert abs(value) <= MAX_INT


# -- expressions generated from the grammar --------------------------------------------------

VARIABLES: dict[str, object] = {
    "x": 7,
    "y": "gold",
    "items": [1, 2, 3],
    "d": {"gold": 500},
    "big": MAX_INT,
    "text": "refund 5000 USD " * 200,
}
LEAVES = st.one_of(
    st.integers(min_value=-MAX_INT, max_value=MAX_INT).map(str),
    st.sampled_from(["0", "1", "9", "10000", "99999", "1e308", "0.5", "-1"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=8).map(repr),
    st.sampled_from(["'a' * 1000", "'abc'", "None", "True", "False"]),
    st.sampled_from([*VARIABLES, "missing"]),
)
BINARY = ["+", "-", "*", "/", "//", "%", "**"]
COMPARE = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


def _compose(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(children, children)
    calls = st.sampled_from(sorted(name for name in FUNCTIONS if name != "matches")).flatmap(
        lambda name: st.lists(
            children, min_size=FUNCTIONS[name][0], max_size=min(FUNCTIONS[name][1], 3)
        ).map(lambda args: f"{name}({', '.join(args)})")
    )
    return st.one_of(
        st.tuples(children, st.sampled_from(BINARY), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, st.sampled_from(COMPARE), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, st.sampled_from(["and", "or"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        children.map(lambda c: f"(not {c})"),
        children.map(lambda c: f"(-{c})"),
        st.lists(children, max_size=4).map(lambda xs: f"[{', '.join(xs)}]"),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: f"({', '.join(xs)},)"),
        st.lists(children, max_size=3).map(lambda xs: "{" + ", ".join(xs) + "}" if xs else "{}"),
        pair.map(lambda p: "{" + f"{p[0]}: {p[1]}" + "}"),
        pair.map(lambda p: f"{p[0]}[{p[1]}]"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        calls,
        children.map(lambda c: f"matches({c}, r'^re.und\\s+[0-9]{{1,6}}')"),
    )


EXPRESSIONS = st.recursive(LEAVES, _compose, max_leaves=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=EXPRESSIONS)
def test_expressions_from_the_grammar_evaluate_to_a_capped_value_or_are_refused(
    source: str,
) -> None:
    result = _run(source, VARIABLES)
    if not isinstance(result, ExpressionError):
        _assert_capped(result)


# -- hostile families, grown ------------------------------------------------------------------


def _nest(open_: str, inner: str, close: str, depth: int) -> str:
    return open_ * depth + inner + close * depth


DEPTHS = [MAX_DEPTH + 1, 100, 1_000, 100_000]
NESTING: list[Callable[[int], str]] = [
    lambda n: _nest("(1 + ", "1", ")", n),
    lambda n: _nest("[", "1", "]", n),
    lambda n: _nest("-", "1", "", n),
    lambda n: _nest("not ", "x", "", n),
    lambda n: _nest("len(", "x", ")", n),
    lambda n: _nest("{1: ", "1", "}", n),
    lambda n: _nest("(1 if ", "x", " else 2)", n),
    lambda n: "x" + "[0]" * n,
    lambda n: " + ".join(["1"] * n),
    lambda n: " ** ".join(["2"] * n),
]


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("family", range(len(NESTING)))
def test_nesting_beyond_the_limits_is_refused(family: int, depth: int) -> None:
    source = NESTING[family](depth)
    assert isinstance(_run(source, {"x": [1]}), ExpressionError)


TOWERS = [
    # exponents: checked before they are computed
    "9 ** 9 ** 9 ** 9",
    "(10 ** 18) ** 2",
    "2 ** 63",
    "1.0000001 ** 1024 ** 2",
    "2.0 ** 1e6",
    "(-8) ** 0.5",  # complex
    "10.0 ** 400",
    # repetition: every level is small, the whole is not
    "[[1] * 10000] * 10000 == [[1] * 10000] * 10000",
    "[[[1] * 10000] * 10000] * 10000 == [[[1] * 10000] * 10000] * 10000",
    "[[[[0] * 100] * 100] * 100] * 100 in [[[[[0] * 100] * 100] * 100] * 100]",
    "max([[1] * 10000] * 10000, [[1] * 10000] * 10000)",
    "contains([[1] * 10000] * 10000, [2])",
    "[['a' * 100000] * 10000] == [['b' * 100000] * 10000]",
    "[[1] * 10000] * 11 + [[2]]",
    # hashing: a set or dict hashes every item of a tuple, at every level
    "{((1,) * 10000,) * 10000}",
    "{(((1,) * 10000,) * 10000,) * 10000: 1}",
    "((1,) * 10000,) * 10000 in {1}",
    # strings: every one is capped at MAX_STRING
    "'a' * 100001",
    "('a' * 100000) + 'b'",
    "lower('a' * 99999 + 'BB')",
    "'ab' * 50000 + 'ab' * 50000",
]


@pytest.mark.parametrize("source", TOWERS)
def test_towers_are_refused(source: str) -> None:
    assert len(source) <= MAX_LENGTH
    assert isinstance(_run(source, {}), ExpressionError)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("len([1] * 10000)", 10_000),
        ("len('a' * 100000)", 100_000),
        ("[[1] * 10000] * 9 == [[1] * 10000] * 9", True),
        ("len({(1,) * 10000})", 1),
        ("2 ** 62 > 0", True),
    ],
)
def test_values_just_inside_the_caps_still_work(source: str, expected: object) -> None:
    assert MAX_WEIGHT >= 9 * 10_000
    assert _run(source, {}) == expected


@settings(max_examples=200, deadline=None)
@given(
    levels=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=5),
    container=st.sampled_from(["[{}]", "({},)"]),
    use=st.sampled_from(["{0} == {0}", "{0} in [{0}]", "{{{0}}}", "max({0}, {0})", "len({0})"]),
)
def test_any_repetition_tower_is_evaluated_within_the_weight_cap_or_refused(
    levels: list[int], container: str, use: str
) -> None:
    tower = "0"
    for count in levels:
        tower = f"{container.format(tower)} * {count}"
    source = use.format(f"({tower})")
    result = _run(source, {})
    weight = 1
    for count in levels:
        weight *= count
    if weight > MAX_WEIGHT:
        assert isinstance(result, ExpressionError)


# -- no code execution -----------------------------------------------------------------------

ESCAPES = [
    "().__class__",
    "().__class__.__base__.__subclasses__()",
    "x.__class__",
    "x.__dict__",
    "items.append(1)",
    "y.upper()",
    "__import__('os')",
    "__builtins__",
    "__loader__",
    "_x",
    "lambda: 0",
    "(lambda: __import__('os').system('true'))()",
    "[a for a in items]",
    "{a: 1 for a in items}",
    "(a for a in items)",
    "eval('1')",
    "exec('x = 1')",
    "compile('1', 'f', 'eval')",
    "open('/etc/passwd')",
    "getattr(x, 'y')",
    "globals()",
    "locals()",
    "vars()",
    "type(x)",
    "breakpoint()",
    "help()",
    "str(x)",
    "f'{x}'",
    "(z := 1)",
    "len(*items)",
    "len(x=1)",
    "import os",
    "x; import os",
    "yield x",
    "await x",
    "x[0:1]",
]
AROUND = st.sampled_from(["", "1 + ", "not ", "x == ", "(", "[", "len(", "[1, ", "{1: "])
AFTER = st.sampled_from(["", " + 1", ")", "]", " or x", ", 2]", "}"])


@settings(max_examples=300, deadline=None)
@given(before=AROUND, escape=st.sampled_from(ESCAPES), after=AFTER)
def test_code_execution_attempts_are_refused_and_run_nothing(
    before: str, escape: str, after: str
) -> None:
    assert isinstance(_run(before + escape + after, VARIABLES), ExpressionError)


def test_the_tripwire_catches_what_it_guards() -> None:
    """The tripwire itself works: code run inside it is recorded."""
    tripwire = Tripwire()
    with tripwire.armed(), contextlib.suppress(AssertionError):
        builtins.eval("1")
    assert tripwire.calls and tripwire.calls[0].startswith("eval")


class Hostile:
    """A host object handed in as a variable: any use beyond identity is recorded."""

    touched: list[str] = []  # noqa: RUF012 - a shared record is the point

    def __getattribute__(self, name: str) -> Any:
        if name not in {"__class__", "__eq__", "__ne__", "__hash__"}:
            Hostile.touched.append(name)
        return object.__getattribute__(self, name)


@pytest.mark.parametrize(
    "source",
    ["obj == obj", "obj is None", "exists(obj)", "obj in [obj]", "[obj] == [obj]", "obj"],
)
def test_host_objects_are_compared_never_introspected(source: str) -> None:
    Hostile.touched.clear()
    _run(source, {"obj": Hostile()})
    assert Hostile.touched == []


# -- the example pack's enforcement expressions over random data -----------------------------

PACK = load_pack(EXAMPLE)
EXPRESSION_RULES = [rule for rule in PACK.rules if rule.enforcement_expression is not None]
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["gold", "silver", "standard", "platinum"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=10,
)
FIELDS = [field.key for field in PACK.fields] + ["session_turn_count", "session_tools_called"]
ANSWERS = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "I have issued a refund of $5,000.",
                "Refund: 5000 USD.",
                "refund 499.99 dollars",
                "Your refund has been processed.",
                "Write to ceo@acme-shop.example or x@y.z.",
                "card 4111 1111 1111 1111",
                "Use code SAVE2025NOW.",
                "It will arrive tomorrow.",
                "€" + "9" * 40,
                "1," * 200,
            ]
        ),
        max_size=6,
    ).map(" ".join),
)


@settings(max_examples=200, deadline=None)
@given(
    rule=st.sampled_from(EXPRESSION_RULES),
    variables=st.dictionaries(st.sampled_from(FIELDS), JSONISH, max_size=8),
    answer=ANSWERS,
    response_type=st.sampled_from([None, "ANSWER", "REFUSE", "ASK", "bogus"]),
)
def test_the_pack_constraints_always_answer_and_never_raise(
    rule: Rule, variables: dict[str, object], answer: str, response_type: str | None
) -> None:
    tripwire = Tripwire()
    with tripwire.armed():
        verdict = check_rule_expression(rule, answer, response_type, variables)
    assert tripwire.calls == []
    assert verdict is None or isinstance(verdict, str)


def test_a_constraint_that_cannot_be_evaluated_is_a_violation() -> None:
    limit = next(rule for rule in PACK.rules if rule.id == "refund_within_tier_limit")
    unhashable_tier = {"customer_tier": ["gold"]}
    verdict = check_rule_expression(limit, "A refund of 50 USD.", "ANSWER", unhashable_tier)
    assert verdict is not None and verdict.startswith("cannot verify")
