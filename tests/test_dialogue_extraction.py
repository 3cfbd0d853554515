"""Pack-declared extraction and money: enum synonyms, case flags, free text, dates as
customers write them (resolved against the turn's time), values of the field being asked
for, and ``response_<key>`` amounts that a pack names itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.expression_vars import amount_names, amount_variables
from processors.phases.customer_data import coerce_value, update_customer_data
from processors.phases.dates import find_date, resolve_date
from processors.phases.enforcement import enforce
from processors.phases.lexicon import affirmation, is_acknowledgement
from processors.phases.sensor import mask_customer_data, sense
from schemas.domain.customer_data import CustomerDataStore, VariableScope, VariableType
from schemas.domain.outcome import Resolution, TurnOutcome
from schemas.domain.plan import ResponsePlan, ResponseType
from schemas.pack.agent_pack import AgentPack
from schemas.pack.fields import CustomerDataField, DateOrder
from schemas.pack.rules import Rule
from sinks.pack_files import load_pack

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2026, 12, 7, 15, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def field(**extra: object) -> CustomerDataField:
    return CustomerDataField.model_validate({"scope": VariableScope.CASE, **extra})


PLAN = field(
    key="plan",
    type=VariableType.STRING,
    allowed_values=["basic", "plus", "premium"],
    extraction={"keywords": ["plan"], "synonyms": {"premium": ["the unlimited one"]}},
)
START = field(key="start_date", type=VariableType.DATETIME, extraction={"keywords": ["from"]})
ACCOUNT = field(
    key="account_id",
    type=VariableType.STRING,
    extraction={
        "patterns": [r"\bAC-\d{4}\b"],
        "ignore_case": True,
        "normalize_case": "upper",
    },
)
ADDRESS = field(key="new_address", type=VariableType.STRING, extraction={"free_text": True})
CREDIT = field(key="credit_amount", type=VariableType.NUMBER, amount_terms=["credit"])
FIELDS = [PLAN, START, ACCOUNT, ADDRESS, CREDIT]


def values(text: str, expected: set[str] | None = None) -> dict[str, object]:
    store = CustomerDataStore(tenant_id="t", customer_id="c", updated_at=NOW)
    snap = sense(text, mask_customer_data(FIELDS, store), [], [], expected_fields=expected or ())
    after = update_customer_data(store, FIELDS, snap, NOW).store
    return {key: json.loads(entry.value) for key, entry in after.variables.items()}


def test_two_fields_of_one_message_are_both_read() -> None:
    assert values("switch me to the unlimited one plan from next Monday please") == {
        "plan": "premium",
        "start_date": "2026-12-14T00:00:00+00:00",
    }


def test_the_field_being_asked_for_needs_no_keyword() -> None:
    assert values("the Plus one", expected={"plan"}) == {"plan": "plus"}
    assert values("the Plus one") == {}
    assert values("tomorrow", expected={"start_date"}) == {
        "start_date": "2026-12-08T00:00:00+00:00"
    }


def test_ids_match_in_any_case_and_are_kept_in_the_declared_case() -> None:
    assert values("my account is ac-1234") == {"account_id": "AC-1234"}


def test_a_free_text_field_takes_the_reply_but_not_a_bare_yes_or_thanks() -> None:
    reply = "12 Elm Street, Springfield"
    assert values(reply, expected={"new_address"}) == {"new_address": reply}
    assert values("ok thanks", expected={"new_address"}) == {}
    assert values(reply) == {}  # only when it is the question asked


@pytest.mark.parametrize(
    "text, day",
    [
        ("tomorrow", "2026-12-08"),
        ("the day after tomorrow", "2026-12-09"),
        ("next Monday", "2026-12-14"),
        ("friday", "2026-12-11"),
        ("in 2 weeks", "2026-12-21"),
        ("3 March", "2027-03-03"),
        ("March 3rd, 2027", "2027-03-03"),
        ("mañana", "2026-12-08"),
        ("el 5 de mayo", "2027-05-05"),
        ("le 3 mars", "2027-03-03"),
        ("am 24. Dezember", "2026-12-24"),
        ("depois de amanhã", "2026-12-09"),
        ("03/04/2027", "2027-04-03"),
        ("2027-01-02", "2027-01-02"),
    ],
)
def test_dates_as_customers_write_them_resolve_against_the_turn(text: str, day: str) -> None:
    phrase = find_date(text)
    assert phrase is not None
    resolved = resolve_date(phrase, NOW)
    assert resolved is not None and resolved.isoformat() == day


def test_numeric_dates_follow_the_fields_date_order() -> None:
    us_day = resolve_date("03/04/2027", NOW, DateOrder.MDY)
    assert us_day is not None and us_day.isoformat() == "2027-03-04"
    us = field(key="d", type=VariableType.DATETIME, extraction={"date_order": "MDY"})
    assert coerce_value("03/04/2027", us, NOW) == "2027-03-04T00:00:00+00:00"
    with pytest.raises(ValueError):
        coerce_value("next blue moon", us, NOW)


def test_enum_synonyms_are_the_packs_own(pack: AgentPack) -> None:
    reason = next(f for f in pack.fields if f.key == "refund_reason")
    assert reason.extraction.synonyms["damaged"][0] == "broken"
    assert coerce_value("the unlimited one", PLAN) == "premium"


@pytest.mark.parametrize(
    "reply, meaning",
    [
        ("yes please", True),
        ("vale, adelante", True),
        ("ja, gerne", True),
        ("pode ser", True),
        ("d'accord", True),
        ("no thanks", False),
        ("yes... no wait", False),
        ("nein", False),
        ("I have a question", None),
    ],
)
def test_the_yes_no_lexicon(reply: str, meaning: bool | None) -> None:
    assert affirmation(reply) is meaning


def test_acknowledgements_are_not_answers() -> None:
    assert is_acknowledgement("ok thanks") and is_acknowledgement("great, cheers")
    assert not is_acknowledgement("thanks, my order is A-10023")


def test_a_pack_names_its_own_money_amounts_for_enforcement(pack: AgentPack) -> None:
    names = amount_names(FIELDS)
    assert names == {"response_credit_amount": ("credit",)}
    found = amount_variables("A credit of $80 is on its way. The fee stays 5 USD.", names)
    assert found == {"response_credit_amount": 80.0}


async def test_enforcement_checks_a_packs_own_amount(pack: AgentPack) -> None:
    rule = Rule(
        id="credit_limit",
        condition_text="Any answer.",
        action_text="Never offer a credit above 50.",
        is_hard_constraint=True,
        enforcement_expression="response_credit_amount is None or response_credit_amount <= 50",
    )
    own = pack.model_copy(update={"fields": [*pack.fields, CREDIT], "rules": [rule]})
    plan = ResponsePlan(response_type=ResponseType.ANSWER)
    outcome = TurnOutcome(resolution=Resolution.RESOLVED)
    over = await enforce(
        "We add a credit of $80.", plan, [], own, {}, attempt=1, max_attempts=2, outcome=outcome
    )
    assert [v.rule_id for v in over.result.violations] == ["credit_limit"]
    within = await enforce(
        "We add a credit of $40.", plan, [], own, {}, attempt=1, max_attempts=2, outcome=outcome
    )
    assert within.result.passed
