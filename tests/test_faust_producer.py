"""The pipeline's Faust producer writes a record once even when a broker's answer is lost
(streams/pipeline/faust_producer.py).

The fault, through the real broker: the first produce request reaches the broker and is
appended, then its answer is dropped and the client sees a broken connection, as when a node
goes away between appending and answering (a restart, a leader or controller SIGKILL).
aiokafka sends the batch again. Faust's own producer (at least once) then appends it twice,
which on the response topic is a customer answered twice; the pipeline's idempotent producer
is deduplicated by the broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.structs import TopicPartition

from streams.pipeline.topology import build_app
from streams.roles import Role
from streams.settings import Settings

pytestmark = pytest.mark.integration

NewTopic = Callable[..., Awaitable[str]]


def _lose_the_first_produce_answer(app: faust.App) -> list[int]:
    """Drop the broker's answer to the first produce request of ``app``'s producer, after the
    broker handled it; returns the list the number of produce requests sent is appended to."""
    client = app.producer._producer.client  # the aiokafka client of Faust's producer
    original = client.send
    sent: list[int] = []

    async def send(node_id: int, request: Any, **kwargs: Any) -> Any:
        response = await original(node_id, request, **kwargs)
        if isinstance(request, ProduceRequest):
            sent.append(node_id)
            if len(sent) == 1:
                raise KafkaConnectionError("test: the broker's answer was lost")
        return response

    client.send = send
    return sent


async def _records_in(settings: Settings, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            for messages in (await consumer.getmany(tp, timeout_ms=1000)).values():
                values.extend(m.value or b"" for m in messages)
        return values
    finally:
        await consumer.stop()


async def _send_once_with_a_lost_answer(app: faust.App, settings: Settings, topic: str) -> int:
    await app.producer.start()
    try:
        sent = _lose_the_first_produce_answer(app)
        await app.producer.send_and_wait(
            topic, b"session", b"the answer", partition=0, timestamp=None, headers=None
        )
        assert len(sent) == 2, "the lost answer made the producer send the batch again"
    finally:
        await app.producer.stop()
    records = await _records_in(settings, topic)
    assert set(records) == {b"the answer"}
    return len(records)


async def test_a_retried_produce_after_a_lost_broker_answer_is_written_once(
    kafka_settings: Settings, new_topic: NewTopic, tmp_path: Path
) -> None:
    topic = await new_topic(partitions=1)
    app = build_app(kafka_settings.model_copy(update={"data_dir": tmp_path}), Role.ALL)
    assert await _send_once_with_a_lost_answer(app, kafka_settings, topic) == 1


async def test_fausts_own_producer_writes_that_record_twice(
    kafka_settings: Settings, new_topic: NewTopic
) -> None:
    """The reason for the subclass, and proof that the fault above is really injected."""
    topic = await new_topic(partitions=1)
    app = faust.App(
        "faust-producer-test",
        broker=f"kafka://{kafka_settings.bootstrap_servers}",
        producer_acks=-1,
        producer_linger=0.0,
    )
    assert await _send_once_with_a_lost_answer(app, kafka_settings, topic) == 2
