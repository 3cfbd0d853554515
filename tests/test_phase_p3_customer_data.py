"""P3: candidates validated and coerced against the pack's fields, with history and persist."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from processors.phases.customer_data import (
    CoercionError,
    apply_values,
    coerce_value,
    update_customer_data,
)
from schemas.domain.customer_data import (
    MAX_HISTORY,
    CustomerDataStore,
    VariableScope,
    VariableSource,
    VariableType,
)
from schemas.domain.snapshot import CandidateVariable, FrustrationLevel, SituationalSnapshot
from schemas.pack.agent_pack import AgentPack
from schemas.pack.fields import CustomerDataField
from sinks.pack_files import load_pack

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def empty() -> CustomerDataStore:
    return CustomerDataStore(tenant_id="acme-shop", customer_id="c1", updated_at=NOW)


def snapshot(**values: object) -> SituationalSnapshot:
    return SituationalSnapshot(
        language="en",
        intent_changed=False,
        topic_changed=False,
        tone="neutral",
        frustration_level=FrustrationLevel.NONE,
        candidate_variables={
            k: CandidateVariable(value=json.dumps(v), scope=VariableScope.CASE, is_update=False)
            for k, v in values.items()
        },
    )


def field(type_: VariableType, allowed: list[str] | None = None) -> CustomerDataField:
    return CustomerDataField(key="f", scope=VariableScope.CASE, type=type_, allowed_values=allowed)


@pytest.mark.parametrize(
    ("type_", "raw", "expected"),
    [
        (VariableType.NUMBER, "1,234.50", 1234.5),
        (VariableType.NUMBER, "$12", 12),
        (VariableType.NUMBER, 3.0, 3),
        (VariableType.BOOLEAN, "Yes", True),
        (VariableType.BOOLEAN, "nein", False),
        (VariableType.BOOLEAN, 0, False),
        (VariableType.STRING, 10023, "10023"),
        (VariableType.STRING, "  A-10023 ", "A-10023"),
        (VariableType.DATETIME, "2024-05-03", "2024-05-03T00:00:00+00:00"),
        (VariableType.DATETIME, "2024-05-03T10:00:00+02:00", "2024-05-03T08:00:00+00:00"),
        (VariableType.JSON, {"a": [1, 2]}, {"a": [1, 2]}),
    ],
)
def test_values_are_coerced_to_the_field_type(
    type_: VariableType, raw: object, expected: object
) -> None:
    assert coerce_value(raw, field(type_)) == expected


@pytest.mark.parametrize(
    ("type_", "raw", "code"),
    [
        (VariableType.NUMBER, "twelve", "invalid_number"),
        (VariableType.NUMBER, True, "invalid_number"),
        (VariableType.BOOLEAN, "maybe", "invalid_boolean"),
        (VariableType.STRING, "   ", "invalid_string"),
        (VariableType.STRING, ["a"], "invalid_string"),
        (VariableType.DATETIME, "next friday", "invalid_datetime"),
        (VariableType.DATETIME, "2024-05-03T10:00:00", "invalid_datetime"),
    ],
)
def test_invalid_values_raise_a_coded_error(type_: VariableType, raw: object, code: str) -> None:
    with pytest.raises(CoercionError) as info:
        coerce_value(raw, field(type_))
    assert info.value.code == code


def test_allowed_values_match_loosely_and_keep_the_pack_spelling() -> None:
    reasons = field(VariableType.STRING, ["wrong_item", "damaged"])
    assert coerce_value("Wrong item", reasons) == "wrong_item"
    with pytest.raises(CoercionError, match="not one of"):
        coerce_value("lost", reasons)


def test_candidates_become_variables_with_field_scope_and_persist_flags(pack: AgentPack) -> None:
    store, changes, rejections = update_customer_data(
        empty(), pack.fields, snapshot(order_id="A-10023", asked_for_human="yes"), NOW
    )
    assert rejections == []
    assert json.loads(store.variables["asked_for_human"].value) is True
    assert store.variables["asked_for_human"].scope is VariableScope.SESSION
    persist = {c.key: c.persist for c in changes}
    assert persist == {"asked_for_human": False, "order_id": True}
    assert store.variables["order_id"].source is VariableSource.USER
    assert store.updated_at == NOW


def test_unknown_keys_and_invalid_values_are_rejected_not_raised(pack: AgentPack) -> None:
    update = update_customer_data(
        empty(),
        pack.fields,
        snapshot(shoe_size=42, refund_reason="bored", refund_amount="lots", order_id="A-1"),
        NOW,
    )
    codes = {r.key: r.code for r in update.rejections}
    assert codes == {
        "shoe_size": "unknown_field",
        "refund_reason": "not_allowed",
        "refund_amount": "invalid_number",
    }
    assert set(update.store.variables) == {"order_id"}


def test_protected_fields_refuse_what_the_customer_says_but_take_tool_values(
    pack: AgentPack,
) -> None:
    said = update_customer_data(
        empty(), pack.fields, snapshot(customer_tier="gold", customer_id="C-1002"), NOW
    )
    assert {r.key: r.code for r in said.rejections} == {
        "customer_tier": "protected",
        "customer_id": "protected",
    }
    assert said.store.variables == {}
    from_tool = apply_values(
        empty(), pack.fields, {"customer_tier": "gold"}, NOW,
        source=VariableSource.TOOL, confidence=1.0,
    )  # fmt: skip
    assert from_tool.rejections == [] and "customer_tier" in from_tool.store.variables


def test_an_update_keeps_the_previous_value_in_history(pack: AgentPack) -> None:
    first, _, _ = update_customer_data(empty(), pack.fields, snapshot(order_id="A-10023"), NOW)
    later = NOW + timedelta(minutes=5)
    second, changes, _ = update_customer_data(
        first, pack.fields, snapshot(order_id="A-10024"), later, turn_id="t2"
    )
    entry = second.variables["order_id"]
    assert json.loads(entry.value) == "A-10024" and entry.last_updated_at == later
    (old,) = entry.history
    assert json.loads(old.value) == "A-10023" and old.at == NOW and old.turn_id == "t2"
    assert changes[0].previous == '"A-10023"'


def test_the_same_value_again_changes_nothing(pack: AgentPack) -> None:
    first, _, _ = update_customer_data(empty(), pack.fields, snapshot(order_id="A-10023"), NOW)
    again = update_customer_data(first, pack.fields, snapshot(order_id="A-10023"), NOW)
    assert again.changes == [] and again.store is first


def test_history_is_capped_to_the_newest_entries(pack: AgentPack) -> None:
    store = empty()
    for amount in range(MAX_HISTORY + 5):
        store = apply_values(
            store,
            pack.fields,
            {"refund_amount": amount},
            NOW,
            source=VariableSource.TOOL,
            confidence=1.0,
        ).store
    history = store.variables["refund_amount"].history
    assert len(history) == MAX_HISTORY and json.loads(history[-1].value) == MAX_HISTORY + 3


def test_persistent_changes_lists_what_p11_writes(pack: AgentPack) -> None:
    update = update_customer_data(
        empty(), pack.fields, snapshot(asked_for_human=True, refund_reason="late"), NOW
    )
    assert [c.key for c in update.persistent_changes] == ["refund_reason"]
