"""Every event schema through the real broker: what goes in comes out equal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.codec import CodecError, CodecErrorReason, decode, encode
from schemas.registry import EVENT_MODELS
from schemas.samples import sample_events
from streams.kafka_clients import consumer_kwargs, producer_kwargs
from streams.settings import Settings
from streams.topics import ALL_TOPICS

NewTopic = Callable[..., Awaitable[str]]


def test_every_catalog_topic_names_a_registered_value_schema() -> None:
    ours = [spec for spec in ALL_TOPICS if not spec.faust_internal]
    unknown = {spec.value_schema for spec in ours} - set(EVENT_MODELS)
    assert unknown == set()


def test_samples_cover_every_registered_schema() -> None:
    covered = {type(event) for event in sample_events()}
    assert covered == set(EVENT_MODELS.values())


@pytest.mark.integration
async def test_every_event_schema_round_trips_through_the_broker(
    kafka_settings: Settings, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=1)
    events = sample_events()
    garbage = [b"", b"\xc3\x01" + b"\x00" * 8 + b"body", b"not avro at all"]
    producer = AIOKafkaProducer(**producer_kwargs(kafka_settings))
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, encode(event), key=b"k")
        for raw in garbage:
            await producer.send_and_wait(topic, raw, key=b"k")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, auto_offset_reset="earliest", **consumer_kwargs(kafka_settings)
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        while len(received) < len(events) + len(garbage):
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "the broker returned nothing within 5 s"
            received.extend(record.value or b"" for records in batch.values() for record in records)
    finally:
        await consumer.stop()

    assert [decode(raw) for raw in received[: len(events)]] == events
    reasons = []
    for raw in received[len(events) :]:
        with pytest.raises(CodecError) as err:
            decode(raw)
        reasons.append(err.value.reason)
    assert reasons == [
        CodecErrorReason.TRUNCATED,
        CodecErrorReason.UNKNOWN_FINGERPRINT,
        CodecErrorReason.BAD_MARKER,
    ]
