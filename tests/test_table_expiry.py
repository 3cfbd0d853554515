"""Idle sessions expire (``TURNSTREAM_SESSION_IDLE_TTL_S``): the worker that owns the
session's partition deletes its gate, session state and last response, with tombstones in
the changelogs; the next message of that channel identity starts a fresh session and is
answered; a session with a turn in flight is never expired."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from processors.turn.expiry import turn_pending
from schemas.codec import decode_as
from schemas.events.pipeline_state import SessionGate
from schemas.events.turn_response import ResponseStatus
from streams.pipeline.base import Pipeline
from streams.pipeline.sweeper import Sweeper, store_of
from streams.pipeline.table_ports import session_table_key
from streams.pipeline.topology import Topology
from streams.settings import PhaseSettings, Settings, TaskMode
from streams.topics import SESSION_GATE_CHANGELOG, SESSION_STATE_CHANGELOG, TopicSpec
from streams.turn_client import TurnClient
from tests.fake_openai import DelayReply, FakeOpenAi, JsonReply, fake_openai_server
from tests.pipeline_support import (
    TENANT,
    customer_says,
    pipeline_settings,
    prepare,
    running_worker,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MODEL_DELAY_S = 3.0
MODEL_REPLY = {"text": "Let me look into that for you.", "categories": [], "resolution": "RESOLVED"}


async def tombstoned(settings: Settings, spec: TopicSpec) -> set[bytes]:
    """The keys with a tombstone in the changelog topic (read from the start to its end)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        topic = spec.name(settings.topic_prefix)
        parts = [TopicPartition(topic, p) for p in range(spec.partition_count(settings.partitions))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        keys: set[bytes] = set()
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                keys |= {r.key for r in records if r.value is None and r.key is not None}
        return keys
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.2)


def topology_of(worker: object) -> Topology:
    topology = getattr(worker, "topology", None)
    assert isinstance(topology, Topology)
    return topology


async def test_an_idle_session_expires_with_tombstones_and_its_next_turn_starts_fresh(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(
        kafka_settings, tmp_path / "data", table_store="rocksdb", session_idle_ttl_s=3.0
    )
    await prepare(settings)
    who = f"idle-{uuid.uuid4().hex[:8]}"
    key = customer_says(who, "x").session_key.encode()
    async with running_worker(settings) as worker, TurnClient(settings, records=True) as client:
        topology = topology_of(worker)
        gates, sessions = store_of(topology.gates), store_of(topology.sessions)
        assert gates is not None and sessions is not None
        first = await client.send(customer_says(who, "where is my order A-10023?"))
        assert (await client.response(first, timeout=240)).status is ResponseStatus.OK
        session = (await client.record(first)).context.session
        assert session is not None
        state_key = session_table_key(TENANT, session.session_id)
        # the sweep timer (every second for a 3 s TTL) deletes the idle session
        await eventually(lambda: gates.home(key) is None and sessions.home(state_key) is None, 60)
        await topology.app.producer.flush()
        assert key in await tombstoned(settings, SESSION_GATE_CHANGELOG)
        assert state_key in await tombstoned(settings, SESSION_STATE_CHANGELOG)

        again = await client.send(customer_says(who, "hello again"))
        assert (await client.response(again, timeout=240)).status is ResponseStatus.OK
        fresh = (await client.record(again)).context.session
    assert fresh is not None
    assert fresh.session_id != session.session_id and fresh.turn_count == 0


@pytest.fixture
def slow_model() -> Iterator[FakeOpenAi]:
    with fake_openai_server() as server:
        server.always("reply", DelayReply(MODEL_DELAY_S, then=JsonReply(MODEL_REPLY)))
        yield server


async def test_a_session_with_a_turn_in_flight_is_never_expired(
    kafka_settings: Settings, tmp_path: Path, slow_model: FakeOpenAi
) -> None:
    """Sweeps that judge a month ahead run back to back while the session's second turn is
    in flight: none deletes it, and the turn continues the session; once answered, the
    next such sweep expires it.

    Generation goes to a scripted model that answers after :data:`MODEL_DELAY_S`, so the
    turn is in flight for seconds: a heuristic turn is over in ~0.1 s, often between two
    looks at the gate (the test then waited for a pending turn it had missed)."""
    base = pipeline_settings(kafka_settings, tmp_path / "data", table_store="rocksdb")
    slow = PhaseSettings(mode=TaskMode.LLM, model="test-model", timeout_s=10.0, retries=0)
    settings = base.model_copy(
        update={
            "llm_base_url": slow_model.url,
            "phases": base.phases.model_copy(update={"generation": slow}),
        }
    )
    await prepare(settings)
    who = f"busy-{uuid.uuid4().hex[:8]}"
    key = customer_says(who, "x").session_key.encode()
    later = timedelta(days=30)
    async with running_worker(settings) as worker, TurnClient(settings, records=True) as client:
        topology = topology_of(worker)
        sweeper = Sweeper(Pipeline(topology, worker.runtime))
        gates = store_of(topology.gates)
        assert gates is not None

        def pending() -> bool:
            raw = gates.get(key)
            return raw is not None and turn_pending(decode_as(raw, SessionGate))

        first = await client.send(customer_says(who, "where is my order A-10023?"))
        assert (await client.response(first, timeout=240)).status is ResponseStatus.OK
        second = await client.send(customer_says(who, "and my order A-10024?"))
        await eventually(pending, 120)
        swept_in_flight = expired = 0
        answered = asyncio.ensure_future(client.response(second, timeout=240))
        while not answered.done():
            in_flight = pending()  # no await between this and the sweep's decision
            swept = await sweeper.sweep_once(datetime.now(UTC) + later)
            expired += swept.sessions
            if in_flight and not swept.paused:  # a rebalance defers a sweep
                swept_in_flight += 1
                assert swept.sessions == 0
            await asyncio.sleep(0.05)
        assert (await answered).status is ResponseStatus.OK
        session = (await client.record(second)).context.session
        assert swept_in_flight > 0
        assert session is not None and session.turn_count == 1  # turn 1 was not forgotten
        async with asyncio.timeout(120):
            while expired == 0:
                expired += (await sweeper.sweep_once(datetime.now(UTC) + later)).sessions
                await asyncio.sleep(0.2)
        assert expired == 1 and gates.home(key) is None
