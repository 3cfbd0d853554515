"""What analytics keeps of a customer (``sinks.analytics.privacy``): masked texts and
pseudonymous session keys, row by row, without a broker or ClickHouse."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from schemas.domain.customer_data import (
    CustomerDataStore,
    VariableChange,
    VariableEntry,
    VariableScope,
    VariableSource,
    VariableType,
)
from schemas.domain.enforcement import EnforcementLane, EnforcementResult, Violation
from schemas.domain.snapshot import CandidateVariable, FrustrationLevel, SituationalSnapshot
from schemas.domain.tools import ToolCall
from schemas.domain.turn_input import Channel
from schemas.events.completed_turn import CompletedTurn
from schemas.events.dead_letter import DeadLetter
from schemas.fields import json_text
from sinks.analytics import rows, tables
from sinks.analytics.privacy import (
    PROCESS_PSEUDONYMS,
    Pseudonyms,
    mask_patterns,
    turn_masker,
)
from tests.test_analytics_helpers import DAY1, make_turn

AT = datetime(2025, 6, 1, tzinfo=UTC)
ADDRESS = "dana.whitfield@example.com"
NEW_ADDRESS = "9 Harbor Road, Seattle, WA 98101"
OLD_ADDRESS = "12 Elm Street, Portland"
PHONE = "+1 206 555 0148"
SENSITIVE = frozenset({"email", "phone", "new_address"})


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"mail {ADDRESS}, thanks", "mail [email], thanks"),
        ("a.b+c@mail.co.uk and x@y.io.", "[email] and [email]."),
        ("call +1 (206) 555-0148 or 206-555-0148", "call [phone] or [phone]"),
        ("or 2065550148, or +44 20 7946 0958", "or [phone], or [phone]"),
        ("card 4111 1111 1111 1111 or 4111-1111-1111-1111", "card [card] or [card]"),
        ("5500000000000004.", "[card]."),
        # kept: order, tracking and RMA numbers, amounts, dates, years, URLs, short numbers
        ("order A-10023, tracking GX-7788-0001", "order A-10023, tracking GX-7788-0001"),
        ("1Z999AA10123456784 and RMA-20250601", "1Z999AA10123456784 and RMA-20250601"),
        ("900 USD, 649.00 USD, 1,234.56", "900 USD, 649.00 USD, 1,234.56"),
        ("on 2025-05-20 10:00 or 20-05-2025", "on 2025-05-20 10:00 or 20-05-2025"),
        ("from 2019-2025", "from 2019-2025"),
        ("https://labels.example/rma/12345678?id=87654321", None),
        ("4111 1111 1111 1112 fails the Luhn check", None),
        ("", ""),
    ],
)
def test_patterns_mask_what_they_should_and_nothing_else(text: str, masked: str | None) -> None:
    assert mask_patterns(text) == (text if masked is None else masked)
    assert mask_patterns(mask_patterns(text)) == mask_patterns(text)  # masking is stable


@pytest.mark.parametrize(
    "text",
    ["a" * 64_000, "1 " * 32_000, "7" * 64_000, "a@" + "b." * 30_000, ("x" * 60 + "@") * 1_000],
)
def test_masking_a_hostile_text_takes_linear_time(text: str) -> None:
    started = time.perf_counter()
    mask_patterns(text)
    assert time.perf_counter() - started < 1.0


def _entry(value: object, *history: object) -> VariableEntry:
    return VariableEntry(
        value=json_text(value),  # type: ignore[arg-type]
        type=VariableType.STRING,
        scope=VariableScope.CASE,
        source=VariableSource.USER,
        confidence=1.0,
        last_updated_at=AT,
        history=[
            VariableChange(value=json_text(old), source=VariableSource.USER, at=AT)  # type: ignore[arg-type]
            for old in history
        ],
    )


def _turn(message: str) -> CompletedTurn:
    """A turn on the email channel that knows an email, a new and an old address, and a
    phone number the sensor read (a candidate P3 has not kept)."""
    base = make_turn("P1", message=message)
    given = base.record.context.input.model_copy(
        update={"channel": Channel.EMAIL, "channel_id": ADDRESS}
    )
    store = CustomerDataStore(
        tenant_id="t1",
        customer_id="c-s-1",
        variables={
            "email": _entry(ADDRESS),
            "new_address": _entry(NEW_ADDRESS, OLD_ADDRESS),
            "customer_tier": _entry("gold"),  # not sensitive: kept
            "order_total": _entry(649.0),
        },
        updated_at=AT,
    )
    snapshot = SituationalSnapshot(
        language="en",
        intent_changed=False,
        topic_changed=False,
        tone="neutral",
        frustration_level=FrustrationLevel.NONE,
        candidate_variables={
            "phone": CandidateVariable(
                value=json_text(PHONE), scope=VariableScope.IDENTITY, is_update=False
            )
        },
    )
    violation = Violation(
        rule_id="no_pii", lane=EnforcementLane.LLM_JUDGE, detail=f"repeats {NEW_ADDRESS}"
    )
    ctx = base.record.context.model_copy(
        update={
            "input": given,
            "customer_data": store,
            "snapshot": snapshot,
            "response_text": f"I will ship to {NEW_ADDRESS.upper()} and write to {ADDRESS}.",
            "tool_calls": [
                ToolCall(
                    tool="update_address",
                    input=json_text({}),
                    success=False,
                    error=f"no order for {ADDRESS} at {OLD_ADDRESS}",
                    latency_ms=3.0,
                    attempts=1,
                )
            ],
            "enforcement": [EnforcementResult(attempt=1, passed=False, violations=[violation])],
        }
    )
    record = base.record.model_copy(update={"context": ctx})
    return CompletedTurn(session_key=given.session_key, record=record, emitted_at=DAY1)


def _row(batch: rows.RowBatch, table: tables.Table, index: int = 0) -> dict[str, object]:
    return dict(zip(table.column_names, batch.rows[table.name][index], strict=True))


def test_stored_texts_mask_every_value_the_turn_knows_of_a_sensitive_field() -> None:
    turn = _turn(
        f"Ship order A-10023 to  9 harbor road,\nSeattle, WA 98101 (not {OLD_ADDRESS}); "
        f"I am gold, call {PHONE}, mail {ADDRESS} or dana@work.example"
    )
    batch = rows.completed_turn_rows(turn, store_texts=True, sensitive_fields=SENSITIVE)
    turn_row = _row(batch, tables.TURNS)
    assert turn_row["message_text"] == (
        "Ship order A-10023 to  [sensitive:new_address] (not [sensitive:new_address]); I am gold, "
        "call [sensitive:phone], mail [sensitive:email] or [email]"
    )
    assert turn_row["response_text"] == (
        "I will ship to [sensitive:new_address] and write to [sensitive:email]."
    )
    assert _row(batch, tables.TOOL_CALLS)["error"] == (
        "no order for [sensitive:email] at [sensitive:new_address]"
    )
    assert _row(batch, tables.ENFORCEMENT_VIOLATIONS)["detail"] == "repeats [sensitive:new_address]"
    stored = repr(batch.rows)
    for value in (ADDRESS, NEW_ADDRESS, OLD_ADDRESS, PHONE, "Harbor", "dana@work"):
        assert value not in stored, value
    # deterministic: the same turn gives the same rows
    again = rows.completed_turn_rows(turn, store_texts=True, sensitive_fields=SENSITIVE)
    assert again.rows == batch.rows


def test_without_the_pack_texts_are_left_out_and_the_rest_is_masked_by_address_and_pattern() -> (
    None
):
    turn = _turn(f"mail {ADDRESS}")
    batch = rows.completed_turn_rows(turn, store_texts=True, sensitive_fields=None)
    turn_row = _row(batch, tables.TURNS)
    assert (turn_row["message_text"], turn_row["response_text"]) == ("", "")
    # the channel address is known without the pack; an address nobody marked is kept
    assert _row(batch, tables.TOOL_CALLS)["error"] == f"no order for [address] at {OLD_ADDRESS}"
    assert ADDRESS not in repr(batch.rows)


def test_short_values_and_booleans_are_not_masked_by_value() -> None:
    turn = _turn("it is ok")
    store = turn.record.context.customer_data
    assert store is not None
    variables = {**store.variables, "email": _entry("ok"), "phone": _entry(True)}
    masker = turn_masker(
        turn.record.model_copy(
            update={
                "context": turn.record.context.model_copy(
                    update={"customer_data": store.model_copy(update={"variables": variables})}
                )
            }
        ),
        SENSITIVE,
    )
    assert masker("it is ok, true") == "it is ok, true"


def test_the_session_key_is_stored_as_a_keyed_pseudonym() -> None:
    turn = _turn("hello")
    column = tables.TURNS.column_names.index("session_key")

    def stored(event: CompletedTurn, pseudonyms: Pseudonyms = PROCESS_PSEUDONYMS) -> str:
        value = rows.completed_turn_rows(event, pseudonyms=pseudonyms).rows["turns"][0][column]
        return str(value)

    key = stored(turn)
    assert key.startswith("sk_") and len(key) == 35 and ADDRESS not in key
    assert key == stored(turn) == PROCESS_PSEUDONYMS.session_key(f"t1:email:{ADDRESS}")
    other_tenant = make_turn("P2", tenant="t2")
    assert stored(other_tenant) != stored(make_turn("P2"))  # same address, other tenant
    deployment = Pseudonyms.from_key("a-deployment-secret-0123456789")
    assert stored(turn, deployment) == Pseudonyms.from_key(
        "a-deployment-secret-0123456789"
    ).session_key(turn.session_key)
    assert stored(turn, deployment) != key
    assert Pseudonyms.from_key(None) is PROCESS_PSEUDONYMS is Pseudonyms.from_key("")
    assert "0123456789" not in repr(deployment)
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonyms(b"short")


def test_dead_letter_details_lose_the_address_in_their_key() -> None:
    key = f"t1:email:{ADDRESS}".encode()
    other = b"t1:sms:+12065550148"
    letter = DeadLetter(
        source_topic="ts.turn.requested",
        partition=0,
        offset=7,
        key=key,
        reason="wrong_key",
        detail=f"record key {key!r} is not the session key {other!r}",
        original=b"x",
        at=AT,
    )
    (row,) = rows.dead_letter_rows(letter).rows["dead_letters"]
    assert row[0] == "t1" and row[4] == "wrong_key"
    assert row[5] == "record key b't1:email:[address]' is not the session key b't1:sms:[phone]'"
    (poison,) = rows.poison_rows(
        "ts.turn.completed", 0, 1, key, b"junk", "analytics.invalid", f"bad {ADDRESS}", AT
    ).rows["dead_letters"]
    assert poison[5] == "bad [address]"
