"""The pydantic models: validation that matters, and samples that exercise every field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError

from schemas.avro import full_name
from schemas.domain.enforcement import EnforcementLane, EnforcementResult, Violation
from schemas.domain.outcome import OutcomeCategory, Resolution, TurnOutcome
from schemas.domain.rules import AppliedRule, RelationshipKind, RuleVerdict
from schemas.domain.tools import ToolCall
from schemas.domain.turn_input import TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import ResponseStatus, TurnResponse
from schemas.fields import MAX_ID_CHARS, MAX_MESSAGE_CHARS, json_text
from schemas.registry import EVENT_MODELS
from schemas.samples import T0, sample_events, turn_context, turn_input, turn_record

VALID_INPUT = turn_input().model_dump()


def nested_models(value: Any) -> Iterator[BaseModel]:
    """``value`` and every model inside it."""
    if isinstance(value, BaseModel):
        yield value
        for name in type(value).model_fields:
            yield from nested_models(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            yield from nested_models(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from nested_models(item)


def model_types(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation mentions: ``X``, ``list[X]``, ``X | None``, ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from model_types(arg)


def reachable_fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[tuple[str, str]]:
    """(model, field) for every field of ``model`` and of every model it can hold."""
    if model in seen:
        return set()
    seen.add(model)
    found = {(model.__name__, name) for name in model.model_fields}
    for info in model.model_fields.values():
        for nested in model_types(info.annotation):
            found |= reachable_fields(nested, seen)
    return found


def test_samples_cover_every_registered_model() -> None:
    assert {full_name(type(event)) for event in sample_events()} == set(EVENT_MODELS)


def test_samples_set_every_field_of_every_nested_model_at_least_once() -> None:
    populated = {
        (type(model).__name__, name)
        for event in sample_events()
        for model in nested_models(event)
        for name in type(model).model_fields
        if getattr(model, name) not in (None, [], {})
    }
    seen: set[type[BaseModel]] = set()
    every = set().union(*(reachable_fields(model, seen) for model in EVENT_MODELS.values()))

    assert every - populated == set()


@pytest.mark.parametrize("tenant_id", ["", " ", "two words", "tab\there", "x" * (MAX_ID_CHARS + 1)])
def test_ids_must_be_non_empty_bounded_and_without_whitespace(tenant_id: str) -> None:
    with pytest.raises(ValidationError, match="tenant_id"):
        TurnInput.model_validate(VALID_INPUT | {"tenant_id": tenant_id})


@pytest.mark.parametrize("message", ["", "x" * (MAX_MESSAGE_CHARS + 1)], ids=["empty", "long"])
def test_message_must_be_non_empty_and_bounded(message: str) -> None:
    with pytest.raises(ValidationError, match="message"):
        TurnInput.model_validate(VALID_INPUT | {"message": message})


@pytest.mark.parametrize("value", ["not json", "{'single': 1}", "NaN", "[1,", ""])
def test_json_text_must_hold_one_json_document(value: str) -> None:
    call = turn_context().tool_calls[0].model_dump()
    with pytest.raises(ValidationError, match="not a JSON document"):
        ToolCall.model_validate(call | {"input": value})


def test_json_text_helper_writes_compact_json() -> None:
    assert json_text({"order": "A-1", "items": [1, 2.5, None, True]}) == (
        '{"order":"A-1","items":[1,2.5,null,true]}'
    )


def test_timestamps_without_timezone_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        TurnRequested(turn_id="t", input=turn_input(), sent_at=datetime(2025, 1, 1))


def test_timestamps_are_normalized_to_utc() -> None:
    local = T0.astimezone(timezone(timedelta(hours=2)))

    sent_at = TurnRequested(turn_id="t", input=turn_input(), sent_at=local).sent_at

    assert sent_at == T0
    assert sent_at.tzinfo is UTC


def test_floats_must_be_finite() -> None:
    with pytest.raises(ValidationError, match="finite"):
        AppliedRule(rule_id="r", score=float("nan"), verdict=RuleVerdict.APPLIES)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TurnInput.model_validate(VALID_INPUT | {"mesage": "typo"})


def test_models_are_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        turn_input().message = "changed"  # type: ignore[misc]


def test_enums_accept_their_values_only() -> None:
    with pytest.raises(ValidationError, match="channel"):
        TurnInput.model_validate(VALID_INPUT | {"channel": "WHATSAPP"})


def test_relationship_fields_come_together() -> None:
    with pytest.raises(ValidationError, match="set together"):
        AppliedRule(
            rule_id="r",
            score=0.1,
            verdict=RuleVerdict.APPLIES,
            via_relationship=RelationshipKind.IMPLIES,
        )


@pytest.mark.parametrize("success, error", [(True, "boom"), (False, None)])
def test_tool_call_carries_an_error_exactly_when_it_failed(
    success: bool, error: str | None
) -> None:
    with pytest.raises(ValidationError, match="failed call carries an error"):
        ToolCall(tool="t", input="{}", success=success, error=error, latency_ms=1, attempts=1)


def test_enforcement_passes_exactly_without_violations() -> None:
    violation = Violation(rule_id="r", lane=EnforcementLane.LLM_JUDGE, detail="rude")
    with pytest.raises(ValidationError, match="no violations"):
        EnforcementResult(attempt=1, passed=True, violations=[violation])
    with pytest.raises(ValidationError, match="no violations"):
        EnforcementResult(attempt=1, passed=False)


def test_outcome_categories_are_distinct() -> None:
    gap = OutcomeCategory.KNOWLEDGE_GAP
    with pytest.raises(ValidationError, match="distinct"):
        TurnOutcome(categories=[gap, gap], resolution=Resolution.UNRESOLVED)


@pytest.mark.parametrize(
    "changes",
    [{"text": None}, {"error": {"phase": "tools", "code": "x", "message": "m"}}],
    ids=["ok_without_text", "ok_with_error"],
)
def test_ok_response_has_text_and_no_error(changes: dict[str, Any]) -> None:
    ok = next(e for e in sample_events() if isinstance(e, TurnResponse) and e.text is not None)
    with pytest.raises(ValidationError, match="OK response"):
        TurnResponse.model_validate(ok.model_dump() | changes)


def test_error_response_has_an_error() -> None:
    with pytest.raises(ValidationError, match="ERROR response"):
        TurnResponse(
            turn_id="t",
            tenant_id="a",
            agent_id="b",
            channel="api",
            channel_id="c",
            status=ResponseStatus.ERROR,
            responded_at=T0,
        )


def test_turn_record_ids_must_match_its_context() -> None:
    with pytest.raises(ValidationError, match="match the context"):
        TurnRecord.model_validate(turn_record().model_dump() | {"tenant_id": "other"})


def test_coalesced_message_count_includes_the_turns_own_message() -> None:
    assert turn_context().coalesced_message_count == 2
