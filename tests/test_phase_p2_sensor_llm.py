"""P2 in LLM mode through the real openai client: used, validated, retried or fallen back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processors.phases.sensor import CustomerDataMask, mask_customer_data, sense
from processors.phases.sensor_llm import SCHEMA_NAME, SensorOutcome, run_sensor
from schemas.domain.customer_data import (
    CustomerDataStore,
    VariableEntry,
    VariableScope,
    VariableSource,
    VariableType,
)
from schemas.domain.phase import Phase
from schemas.domain.session import MessageRole, SessionMessage
from schemas.domain.snapshot import FrustrationLevel
from schemas.domain.usage import TokenUsage
from schemas.pack.agent_pack import AgentPack
from sinks.llm_openai import OpenAiLlm
from sinks.pack_files import load_pack
from streams.settings import TaskMode
from tests.fake_openai import (
    MODEL,
    DelayReply,
    FakeOpenAi,
    RawReply,
    StatusReply,
    server_fixture,
)

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2024, 5, 1, tzinfo=UTC)
API_KEY = "sk-sensor-key-never-in-a-prompt"
STORED = {"email": "jane.hidden@example.com", "customer_name": "Janet Hiddenname"}
MESSAGE = "My blender from order A-10023 arrived broken, I want my money back!"
GOOD: dict[str, Any] = {
    "language": "en",
    "intent_changed": True,
    "new_intent_label": "refund_request",
    "topic_changed": True,
    "tone": "frustrated",
    "frustration_level": "MEDIUM",
    "situation_facts": ["the blender arrived broken"],
    "candidate_variables": [
        {"key": "order_id", "value": "A-10023"},
        {"key": "refund_reason", "value": "damaged"},
    ],
}

server = server_fixture()


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


@pytest.fixture(scope="module")
def mask(pack: AgentPack) -> CustomerDataMask:
    entries = {
        key: VariableEntry(
            value=json.dumps(value),
            type=VariableType.STRING,
            scope=VariableScope.IDENTITY,
            source=VariableSource.USER,
            confidence=1.0,
            last_updated_at=NOW,
        )
        for key, value in STORED.items()
    }
    store = CustomerDataStore(
        tenant_id="acme-shop", customer_id="c1", variables=entries, updated_at=NOW
    )
    return mask_customer_data(pack.fields, store)


HISTORY = [
    SessionMessage(role=MessageRole.CUSTOMER, text="Where is my order?", turn_id="t1", at=NOW),
    SessionMessage(role=MessageRole.AGENT, text="Let me check that.", turn_id="t1", at=NOW),
]


def port(server: FakeOpenAi, **options: Any) -> OpenAiLlm:
    return server.llm(Phase.SENSOR, api_key=API_KEY, **options)


async def sensed(
    pack: AgentPack,
    mask: CustomerDataMask,
    llm: OpenAiLlm | None,
    mode: TaskMode = TaskMode.LLM,
) -> SensorOutcome:
    return await run_sensor(MESSAGE, mask, pack.glossary, HISTORY, pack.intents, mode=mode, llm=llm)


def heuristic(pack: AgentPack, mask: CustomerDataMask) -> Any:
    return sense(MESSAGE, mask, pack.glossary, HISTORY, pack.intents)


def values(outcome: SensorOutcome) -> dict[str, object]:
    return {k: json.loads(v.value) for k, v in outcome.snapshot.candidate_variables.items()}


async def test_a_good_reply_becomes_the_snapshot_with_its_usage(
    server: FakeOpenAi, pack: AgentPack, mask: CustomerDataMask
) -> None:
    server.script(SCHEMA_NAME, GOOD)
    outcome = await sensed(pack, mask, port(server))
    snap = outcome.snapshot
    assert outcome.llm_error is None
    assert (snap.language, snap.tone, snap.frustration_level) == (
        "en",
        "frustrated",
        FrustrationLevel.MEDIUM,
    )
    assert snap.new_intent_label == "refund_request" and snap.new_intent_text == MESSAGE
    assert snap.intent_changed and snap.topic_changed
    assert snap.situation_facts == ["the blender arrived broken"]
    assert values(outcome) == {"order_id": "A-10023", "refund_reason": "damaged"}
    assert outcome.usage == [
        TokenUsage(phase=Phase.SENSOR, model=MODEL, prompt_tokens=11, completion_tokens=7)
    ]


async def test_the_request_is_a_json_schema_over_the_packs_intents_and_fields(
    server: FakeOpenAi, pack: AgentPack, mask: CustomerDataMask
) -> None:
    server.script(SCHEMA_NAME, GOOD)
    await sensed(pack, mask, port(server))
    (request,) = server.requests
    schema = request["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) == set(schema["properties"])
    intent_enum = schema["properties"]["new_intent_label"]["enum"]
    assert intent_enum == [*(i.id for i in pack.intents), None]
    key_enum = schema["properties"]["candidate_variables"]["items"]["properties"]["key"]["enum"]
    assert key_enum == [f.key for f in pack.fields]
    user = json.loads(request["messages"][1]["content"])
    assert user["message"] == MESSAGE
    assert [m["text"] for m in user["earlier_messages"]] == [m.text for m in HISTORY]
    email = next(f for f in user["customer_data_fields"] if f["key"] == "email")
    assert email["exists"] is True and "value" not in email


async def test_the_prompt_holds_no_customer_value_and_no_api_key(
    server: FakeOpenAi, pack: AgentPack, mask: CustomerDataMask
) -> None:
    server.script(SCHEMA_NAME, GOOD)
    await sensed(pack, mask, port(server))
    assert API_KEY not in json.dumps(server.requests)
    assert not [value for value in STORED.values() if value in server.prompts()]


async def test_what_the_llm_cannot_know_is_checked_or_taken_from_the_mask(
    server: FakeOpenAi, pack: AgentPack, mask: CustomerDataMask
) -> None:
    reply = {
        **GOOD,
        "new_intent_label": "buy_a_yacht",
        "situation_facts": ["broken", 42, "  "],
        "candidate_variables": [
            {"key": "order_id", "value": "A-10023", "scope": "IDENTITY", "is_update": True},
            {"key": "password", "value": "hunter2"},
            {"key": "email", "value": "jane@example.org"},
            {"key": "order_total", "value": None},
        ],
    }
    server.script(SCHEMA_NAME, reply)
    outcome = await sensed(pack, mask, port(server))
    snap = outcome.snapshot
    assert outcome.llm_error is None
    assert snap.new_intent_label is None and not snap.intent_changed
    assert snap.situation_facts == ["broken"]
    assert values(outcome) == {"order_id": "A-10023", "email": "jane@example.org"}
    order_id, email = snap.candidate_variables["order_id"], snap.candidate_variables["email"]
    assert (order_id.scope, order_id.is_update) == (VariableScope.CASE, False)
    assert (email.scope, email.is_update) == (VariableScope.IDENTITY, True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"tone": "furious"}, "tone"),
        ({"frustration_level": "EXTREME"}, "frustration_level"),
        ({"language": "not a tag!"}, "language"),
        ({"intent_changed": "yes"}, "intent_changed"),
        ({"candidate_variables": {"order_id": "A-10023"}}, "candidate_variables"),
    ],
)
async def test_a_reply_that_breaks_the_schema_falls_back_to_the_heuristic(
    server: FakeOpenAi,
    pack: AgentPack,
    mask: CustomerDataMask,
    change: dict[str, object],
    reason: str,
) -> None:
    server.script(SCHEMA_NAME, {**GOOD, **change})
    outcome = await sensed(pack, mask, port(server))
    assert outcome.snapshot == heuristic(pack, mask)
    assert outcome.llm_error is not None and reason in outcome.llm_error
    assert len(outcome.usage) == 1


async def test_malformed_json_falls_back_and_keeps_the_usage(
    server: FakeOpenAi, pack: AgentPack, mask: CustomerDataMask
) -> None:
    server.script(SCHEMA_NAME, RawReply("{not json"), RawReply("still not"))
    outcome = await sensed(pack, mask, port(server, retries=1))
    assert outcome.snapshot == heuristic(pack, mask)
    assert outcome.llm_error is not None and "malformed reply" in outcome.llm_error
    assert len(outcome.usage) == 2 and len(server.requests) == 2


async def test_a_429_is_retried_and_the_second_answer_used(
    server: FakeOpenAi, pack: AgentPack, mask: CustomerDataMask
) -> None:
    server.script(SCHEMA_NAME, StatusReply(429, retry_after=0), GOOD)
    outcome = await sensed(pack, mask, port(server))
    assert outcome.llm_error is None and outcome.snapshot.tone == "frustrated"
    assert len(server.requests) == 2


async def test_a_timeout_falls_back_to_the_heuristic(
    server: FakeOpenAi, pack: AgentPack, mask: CustomerDataMask
) -> None:
    server.script(SCHEMA_NAME, DelayReply(2.0, then=RawReply(json.dumps(GOOD))))
    outcome = await sensed(pack, mask, port(server, timeout_s=0.2, retries=0))
    assert outcome.snapshot == heuristic(pack, mask)
    assert outcome.llm_error is not None and "APITimeoutError" in outcome.llm_error
    assert API_KEY not in outcome.llm_error


async def test_heuristic_mode_is_the_documented_sense_and_calls_nothing(
    server: FakeOpenAi, pack: AgentPack, mask: CustomerDataMask
) -> None:
    outcome = await sensed(pack, mask, port(server), TaskMode.HEURISTIC)
    assert outcome == SensorOutcome(heuristic(pack, mask))
    assert server.requests == []


async def test_llm_mode_without_a_port_says_so_and_uses_the_heuristic(
    pack: AgentPack, mask: CustomerDataMask
) -> None:
    outcome = await sensed(pack, mask, None)
    assert outcome.snapshot == heuristic(pack, mask)
    assert outcome.llm_error == "llm mode without an LLM port"


async def test_customer_values_cannot_reach_the_prompt_in_place_of_the_mask(
    server: FakeOpenAi, pack: AgentPack
) -> None:
    with pytest.raises(TypeError):
        await run_sensor(
            MESSAGE,
            STORED,  # type: ignore[arg-type]
            pack.glossary,
            HISTORY,
            pack.intents,
            mode=TaskMode.LLM,
            llm=port(server),
        )
    assert server.requests == []
