"""The expression language: what expressions mean (hostile inputs: test_expressions_hostile)."""

from __future__ import annotations

import pytest

from processors.expression_vars import RESPONSE_VARIABLES, response_variables
from processors.expressions import ExpressionError, evaluate, holds, parse

TIER_LIMIT = (
    "response_refund_amount is None or response_refund_amount <= "
    '({"gold": 500, "silver": 200, "standard": 100}[customer_tier] or 100)'
)


def run(source: str, **variables: object) -> object:
    return evaluate(parse(source), variables)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("7 / 2", 3.5),
        ("-3 + +1", -2),
        ("2 ** 10", 1024),
        ("'ab' + 'cd'", "abcd"),
        ("'ab' * 3", "ababab"),
        ("[1] + [2]", [1, 2]),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("3 >= 3 > 2 != 1", True),
        ("'gold' in ['gold', 'silver']", True),
        ("'bronze' not in ('gold', 'silver')", True),
        ("'ell' in 'hello'", True),
        ("'a' in {'a': 1}", True),
        ("2 in {1, 2}", True),
        ("True and 'x'", "x"),
        ("0 or 'fallback'", "fallback"),
        ("not ''", True),
        ("'yes' if 2 > 1 else 'no'", "yes"),
        ("{'gold': 500}['gold']", 500),
        ("{'gold': 500}['tin']", None),
        ("[10, 20, 30][-1]", 30),
        ("[10, 20][5]", None),
        ("'abc'[0]", "a"),
        ("None is None", True),
        ("None in [None, 1]", True),
        ("None in 'abc'", False),
        ("1 is not None", True),
    ],
)
def test_results(source: str, expected: object) -> None:
    assert run(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("len('abcd')", 4),
        ("len([1, 2])", 2),
        ("lower('AbC')", "abc"),
        ("upper('abc')", "ABC"),
        ("contains('refund issued', 'issued')", True),
        ("contains([1, 2], 3)", False),
        ("startswith('A-10023', 'A-')", True),
        ("endswith('file.pdf', '.pdf')", True),
        ("abs(-4.5)", 4.5),
        ("min(3, 1, 2)", 1),
        ("max([3, 1, 2])", 3),
        ("max([])", None),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("exists(0)", True),
        ("exists(missing)", False),
        (r"matches('A-10023', r'^A-\d{5}$')", True),
        (r"matches('B-1', r'^A-\d{5}$')", False),
    ],
)
def test_functions(source: str, expected: object) -> None:
    assert run(source) == expected


def test_names_are_reported() -> None:
    compiled = parse("customer_tier == 'gold' and len(response_text) < session_turn_count * 10")
    assert compiled.names == {"customer_tier", "response_text", "session_turn_count"}


def test_variables_resolve() -> None:
    assert (
        run(
            "order_total > 100 and customer_tier == 'gold'", order_total=120.0, customer_tier="gold"
        )
        is True
    )


@pytest.mark.parametrize(
    "source",
    [
        "missing < 1",
        "missing >= 1",
        "1 > missing",
        "'a' in missing",
        "'a' not in missing",
        "contains(missing, 'a')",
        "startswith(missing, 'a')",
        "matches(missing, 'a')",
        "missing == 1",
        "exists(missing)",
    ],
)
def test_missing_variables_make_comparisons_false(source: str) -> None:
    assert run(source) is False


@pytest.mark.parametrize(
    "source",
    [
        "missing + 1",
        "-missing",
        "missing['k']",
        "len(missing)",
        "lower(missing)",
        "min(missing, 2)",
        "abs(missing)",
        "round(missing)",
        "{'a': 1}[missing]",
    ],
)
def test_missing_variables_propagate_none(source: str) -> None:
    assert run(source) is None


def test_missing_equality_keeps_python_meaning() -> None:
    assert run("missing != 1") is True
    assert run("missing is None") is True
    assert run("missing == None") is True


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("1 / 0", "division by zero"),
        ("1 // 0", "division"),
        ("'a' < 1", "cannot evaluate"),
        ("'a' - 'b'", "arithmetic needs numbers"),
        ("'%s' % 1", "arithmetic needs numbers"),
        ("len(5)", "len() of int"),
        ("lower(5)", "needs a string"),
        ("[1][[0]]", "cannot subscript"),
        ("{[1]: 2}", "cannot evaluate"),
        ("round(1.5, 99)", "digits"),
        ("(-8) ** 0.5", "complex"),
        ("1 in 5", "'in' needs"),
        ("1 in 'abc'", "cannot evaluate"),
        ("[1] in {1}", "cannot evaluate"),
    ],
)
def test_evaluation_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(source)


@pytest.mark.parametrize(
    ("variables", "compliant"),
    [
        ({"customer_tier": "gold", "response_refund_amount": 450.0}, True),
        ({"customer_tier": "silver", "response_refund_amount": 450.0}, False),
        ({"customer_tier": "standard", "response_refund_amount": 100.0}, True),
        ({"customer_tier": None, "response_refund_amount": 150.0}, False),
        ({"customer_tier": None, "response_refund_amount": 90.0}, True),
        ({"customer_tier": "silver"}, True),
    ],
)
def test_tier_limit_rule(variables: dict[str, object], compliant: bool) -> None:
    assert holds(parse(TIER_LIMIT), variables) is compliant


def test_tier_limit_over_a_generated_answer() -> None:
    answer = "Good news! I've approved a refund of $350.00 for order A-10023."
    variables = {"customer_tier": "silver", **response_variables(answer)}
    assert holds(parse(TIER_LIMIT), variables) is False
    assert holds(parse(TIER_LIMIT), {**variables, "customer_tier": "gold"}) is True


def test_response_variables() -> None:
    answer = (
        "Your order A-10023 ($120) will be delivered on Friday, May 3rd.\n"
        "I've issued a refund of $45.50 to your card. Total 1,200 EUR today. "
        "Reach me at Help@Acme.example."
    )
    found = response_variables(answer, "ANSWER")
    assert set(found) == set(RESPONSE_VARIABLES)
    assert found["response_amounts"] == [120.0, 45.5, 1200.0]
    assert found["response_max_amount"] == 1200.0
    assert found["response_refund_amount"] == 45.5
    assert found["response_dates"] == ["friday", "may 3rd", "today"]
    assert found["response_delivery_dates"] == ["friday", "may 3rd"]
    assert found["response_emails"] == ["help@acme.example"]
    assert found["response_type"] == "ANSWER"


def test_response_variables_of_a_plain_answer() -> None:
    found = response_variables("Happy to help!")
    assert found["response_amounts"] == []
    assert found["response_max_amount"] is None
    assert found["response_refund_amount"] is None


def test_error_columns_are_one_based() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("customer_tier == 'gold' and x.y")
    assert caught.value.column == 29
    assert "column 29" in str(caught.value)
