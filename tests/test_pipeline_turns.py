"""The turn pipeline end to end on the real broker, with one in-process worker: state across
turns, back-to-back messages, many concurrent sessions, and bad input as events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.codec import decode_as, encode
from schemas.domain.retrieval import GapReason, RetrievalType
from schemas.events.dead_letter import DeadLetter
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import ResponseStatus
from streams import metrics
from streams.pipeline import stage_agents
from streams.settings import Settings
from streams.topics import DEAD_LETTER
from streams.turn_client import TurnClient
from tests.pipeline_support import (
    customer_says,
    pipeline_settings,
    prepare,
    running_worker,
    settle,
)

pytestmark = pytest.mark.integration

REFUND = "Hi, I'd like a refund of 900 dollars for order A-10023, it arrived broken."


@pytest.fixture(scope="module")
async def settings(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return pipeline_settings(kafka_settings, tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
async def client(settings: Settings) -> AsyncIterator[TurnClient]:
    await prepare(settings)
    async with running_worker(settings), TurnClient(settings, records=True) as turn_client:
        yield turn_client


def visitor() -> str:
    return f"v-{uuid.uuid4().hex[:10]}"


async def test_state_carries_across_turns_of_a_conversation(client: TurnClient) -> None:
    who = visitor()
    first = await client.send(customer_says(who, REFUND, customer_id="C-1001"))
    answer = await client.response(first, timeout=120)
    record = await client.record(first)
    assert answer.status is ResponseStatus.OK
    refund = record.context.scenario_decisions[0]
    assert (refund.scenario_id, refund.entered_step_id) == ("refund", "confirm_refund")
    assert set(refund.skipped_step_ids) == {"ask_order_id", "ask_reason"}

    second = await client.send(customer_says(who, "Yes please, go ahead.", customer_id="C-1001"))
    answer2 = await client.response(second, timeout=60)
    record2 = await client.record(second)
    context = record2.context
    assert context.session is not None and context.customer_data is not None
    assert context.session.turn_count == 1  # it saw turn 1 persisted
    assert context.session.last_turn_id == first
    assert "A-10023" in context.customer_data.variables["order_id"].value
    assert [c.tool for c in context.tool_calls] == ["create_refund"]
    assert answer2.text is not None and "RF-10023" in answer2.text


async def test_back_to_back_messages_are_ordered_or_coalesced(client: TurnClient) -> None:
    who = visitor()
    first = await client.send(customer_says(who, "Hello there"))
    second = await client.send(customer_says(who, "where is my order A-10024?"))
    one = await client.response(first, timeout=120)
    two = await client.response(second, timeout=60)
    if one is two:  # coalesced into one turn, and recorded as such
        assert one.coalesced_turn_ids == [second]
        record = await client.record(first)
        assert record.context.input.message == "Hello there\nwhere is my order A-10024?"
    else:
        record2 = await client.record(second)
        assert record2.context.session is not None
        assert record2.context.session.turn_count == 1
        assert record2.context.session.last_turn_id == first


async def test_fifty_sessions_of_five_turns_are_each_answered_exactly_once(
    client: TurnClient,
) -> None:
    messages = ["hi", "where is my order A-10024?", "ok thanks", "can I change my address?", "bye"]
    sent: list[str] = []

    async def session(n: int) -> None:
        who = f"load-{n}-{uuid.uuid4().hex[:6]}"
        for message in messages:
            turn_id = await client.send(customer_says(who, message))
            sent.append(turn_id)
            response = await client.response(turn_id, timeout=240)
            assert response.status is ResponseStatus.OK, response.error

    await asyncio.gather(*(session(n) for n in range(50)))
    await settle(2.0)
    assert len(sent) == 250
    assert {client.response_counts[t] for t in sent} == {1}


async def test_bad_input_is_dead_lettered_and_answered_and_the_next_turn_goes_on(
    client: TurnClient, settings: Settings
) -> None:
    who = visitor()
    key = f"acme-shop:webchat:{who}".encode()
    headers = {"turn_id": b"bad-bytes-1", "agent_id": b"support"}
    await client.send_raw(key, b"\x00\x01not avro at all", headers)
    unknown = await client.send(customer_says(who, "hi").model_copy(update={"agent_id": "nobody"}))
    big = TurnRequested(turn_id="too-big-1", input=customer_says(who, "x" * 15_000), sent_at=_now())
    padded = encode(
        big.model_copy(
            update={
                "input": big.input.model_copy(
                    update={"metadata": {f"k{i}": "y" * 900 for i in range(60)}}
                )
            }
        )
    )
    assert len(padded) > settings.max_message_bytes
    await client.send_raw(key, padded, {"turn_id": b"too-big-1", "agent_id": b"support"})
    good = await client.send(customer_says(who, "where is my order A-10024?"))

    for turn_id, code in (
        ("bad-bytes-1", "codec.bad_marker"),
        (unknown, "unknown_agent"),
        ("too-big-1", "too_large"),
    ):
        response = await client.response(turn_id, timeout=120)
        assert response.status is ResponseStatus.ERROR
        assert response.error is not None and response.error.code == code
    assert (await client.response(good, timeout=60)).status is ResponseStatus.OK

    letters = await _dead_letters(settings, 3)
    assert {letter.reason for letter in letters} == {
        "codec.bad_marker",
        "unknown_agent",
        "too_large",
    }


async def test_a_300_character_token_is_answered_through_the_pipeline(
    client: TurnClient,
) -> None:
    """A pasted hash or URL path longer than a lexical term may be is clipped as a feature
    (``retrieval_stage.MAX_TERM_CHARS``), not a failed turn (issue 20)."""
    message = f"where is my order A-10024? tracking {'9f' * 150}"
    turn_id = await client.send(customer_says(visitor(), message, customer_id="C-1001"))
    response = await client.response(turn_id, timeout=120)
    record = await client.record(turn_id)
    assert response.status is ResponseStatus.OK and response.error is None
    assert record.context.canonical_intent == "order_status"  # understood despite the token
    assert response.text and "A-10024" in response.text
    assert record.context.errors == []
    assert len(record.context.retrievals) == 4  # every retrieval type answered


async def test_a_hung_retrieval_type_is_a_gap_and_the_turn_is_answered(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The join's deadline runs from when a type's consumer took the request up: a type that
    hangs there past ``retrieval.timeout_s`` is recorded as a gap (and counted in metrics);
    the other three arrive and are used."""
    real = stage_agents.retrieve_one

    def hangs_for_memories(request: Any, pack: Any, deps: Any) -> Any:
        if request.retrieval_type is RetrievalType.MEMORIES:
            time.sleep(1.0)
        return real(request, pack, deps)

    monkeypatch.setattr(stage_agents, "retrieve_one", hangs_for_memories)
    late = pipeline_settings(kafka_settings, tmp_path)
    late = late.model_copy(
        update={
            "phases": late.phases.model_copy(
                update={"retrieval": late.phases.retrieval.model_copy(update={"timeout_s": 0.3})}
            )
        }
    )
    gaps_before = metrics.RETRIEVAL_GAPS.labels("memories", "TIMEOUT")._value.get()
    await prepare(late)
    async with running_worker(late), TurnClient(late, records=True) as turn_client:
        turn_id = await turn_client.send(customer_says(visitor(), "where is my order A-10024?"))
        response = await turn_client.response(turn_id, timeout=120)
        record = await turn_client.record(turn_id)
    assert response.status is ResponseStatus.OK
    gaps = record.context.retrieval_gaps
    assert [(g.retrieval_type, g.reason) for g in gaps] == [
        (RetrievalType.MEMORIES, GapReason.TIMEOUT)
    ]
    assert len(record.context.retrievals) == 3
    assert metrics.RETRIEVAL_GAPS.labels("memories", "TIMEOUT")._value.get() == gaps_before + 1


def _now() -> datetime:
    return datetime.now(UTC)


async def _dead_letters(settings: Settings, count: int) -> list[DeadLetter]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        DEAD_LETTER.name(settings.topic_prefix),
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        async with asyncio.timeout(30):
            while len(letters) < count:
                message = await consumer.getone()
                letters.append(decode_as(message.value, DeadLetter))
    finally:
        await consumer.stop()
    return letters
