"""The sink-consumer loop (streams.sink_consumer) with a fake writer on a real broker.

Batching by size and by time, commit only after the write, retry with backoff while the
writer fails, poison records as dead letters with their reason (handed to the writer or
published to a dead-letter topic), and no commit past a record that was not written.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas.codec import CodecError, CodecErrorReason, decode_as
from schemas.events.dead_letter import DeadLetter
from streams.kafka_clients import consumer_kwargs, producer_kwargs
from streams.settings import Settings
from streams.sink_consumer import PoisonRecord, SinkConsumer, SinkPolicy, poison_reason
from tests.conftest import NewTopicFactory

pytestmark = pytest.mark.integration

WAIT_S = 30.0


@dataclass
class FakeWriter:
    """Items are the record texts; ``poison`` texts are poison; writes fail while ``down``."""

    down: bool = False
    batches: list[list[str]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    opened: int = 0
    closed: int = 0

    async def open(self) -> None:
        self.opened += 1

    def decode(self, topic: str, value: bytes) -> str | None:
        text = value.decode()
        if text == "poison":
            raise PoisonRecord("fake.poison", "a poison record")
        if text == "skip":
            return None
        if text == "garbage":
            raise ValueError("not a record")
        return text

    async def write(self, items: Sequence[str], dead: Sequence[DeadLetter]) -> None:
        self.attempts.append(time.monotonic())
        if self.down:
            raise OSError("store down (injected)")
        self.batches.append(list(items))
        self.dead.extend(dead)

    async def close(self) -> None:
        self.closed += 1

    @property
    def written(self) -> list[str]:
        return [item for batch in self.batches for item in batch]


async def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def produce(settings: Settings, topic: str, values: Sequence[str]) -> None:
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value.encode(), key=b"k")
    finally:
        await producer.stop()


async def committed(settings: Settings, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(group_id=group, **consumer_kwargs(settings))
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(topic, 0))
        return offset
    finally:
        await consumer.stop()


@dataclass
class Sink:
    settings: Settings
    topic: str
    group: str
    writer: FakeWriter
    consumer: SinkConsumer[str]


@pytest.fixture
async def make_sink(
    kafka_settings: Settings, new_topic: NewTopicFactory
) -> AsyncIterator[Callable[..., Sink]]:
    topic = await new_topic(1)
    started: list[SinkConsumer[str]] = []

    def make(
        policy: SinkPolicy,
        writer: FakeWriter | None = None,
        group: str | None = None,
        dead_letter_topic: str | None = None,
    ) -> Sink:
        writer = writer or FakeWriter()
        group = group or f"g-{uuid.uuid4().hex[:10]}"
        consumer = SinkConsumer(
            kafka_settings,
            name="fake",
            group=group,
            topics=[topic],
            writer=writer,
            policy=policy,
            dead_letter_topic=dead_letter_topic,
        )
        started.append(consumer)
        return Sink(kafka_settings, topic, group, writer, consumer)

    try:
        yield make
    finally:
        for consumer in started:
            await consumer.stop()


def test_backoff_doubles_from_the_initial_delay_up_to_the_ceiling_with_jitter() -> None:
    policy = SinkPolicy(batch_size=1, flush_interval_s=1.0, retry_initial_s=0.1, retry_max_s=1.0)
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (12, 1.0)]:
        delays = [policy.backoff(failures) for _ in range(200)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays), failures
        assert max(delays) - min(delays) > 0  # jittered, so replicas do not retry in step


def test_poison_reasons_are_codes_named_after_the_sink() -> None:
    assert poison_reason(PoisonRecord("x.bad", "why"), "memory-ingestion") == "x.bad"
    assert poison_reason(ValueError("no"), "memory-ingestion") == "memory_ingestion.invalid"
    assert poison_reason(RuntimeError("bug"), "analytics") == "analytics.decode_failed"
    assert (
        poison_reason(CodecError(CodecErrorReason.TRUNCATED, "short"), "analytics")
        == "codec.truncated"
    )


async def test_a_full_batch_is_written_at_once_and_committed_after_the_write(
    make_sink: Callable[..., Sink],
) -> None:
    sink = make_sink(SinkPolicy(batch_size=5, flush_interval_s=60.0))
    await produce(sink.settings, sink.topic, [f"r{i}" for i in range(12)])
    await sink.consumer.start()
    await wait_until(lambda: len(sink.writer.batches) == 2, "two full batches")
    assert sink.writer.batches == [[f"r{i}" for i in range(5)], [f"r{i}" for i in range(5, 10)]]
    await wait_until(lambda: sink.consumer.stats.commits == 2, "the second commit")
    assert await committed(sink.settings, sink.group, sink.topic) == 10
    await asyncio.sleep(0.5)
    assert len(sink.writer.batches) == 2  # the 2 left wait for the interval, not written
    await sink.consumer.stop()  # ... or the stop, which writes them and commits
    assert sink.writer.batches[-1] == ["r10", "r11"]
    assert await committed(sink.settings, sink.group, sink.topic) == 12
    assert sink.writer.opened == 1 and sink.writer.closed == 1


async def test_a_partial_batch_is_written_after_the_flush_interval(
    make_sink: Callable[..., Sink],
) -> None:
    sink = make_sink(SinkPolicy(batch_size=1000, flush_interval_s=0.5))
    await sink.consumer.start()
    await asyncio.sleep(1.0)
    await produce(sink.settings, sink.topic, ["a", "b", "skip", "c"])
    await wait_until(lambda: sink.writer.batches != [], "the timed flush")  # 996 short of full
    assert sink.writer.batches == [["a", "b", "c"]]  # "skip" decodes to nothing to write
    await wait_until(lambda: sink.consumer.stats.commits == 1, "the commit")
    assert await committed(sink.settings, sink.group, sink.topic) == 4


async def test_a_failing_write_is_retried_with_backoff_and_nothing_is_committed_meanwhile(
    make_sink: Callable[..., Sink],
) -> None:
    policy = SinkPolicy(batch_size=3, flush_interval_s=0.2, retry_initial_s=0.05, retry_max_s=0.8)
    sink = make_sink(policy, FakeWriter(down=True))
    await produce(sink.settings, sink.topic, ["a", "b", "c", "d"])
    await sink.consumer.start()
    await wait_until(lambda: len(sink.writer.attempts) >= 5, "five failed writes")
    assert sink.consumer.stats.commits == 0 and sink.consumer.stats.committed == {}
    assert await committed(sink.settings, sink.group, sink.topic) is None
    gaps = [b - a for a, b in zip(sink.writer.attempts, sink.writer.attempts[1:], strict=False)]
    assert gaps[3] > gaps[0]  # >= 0.2 s after the 4th failure, <= 0.05 s (+ overhead) after the 1st
    assert sink.consumer.stats.records == 3  # nothing consumed while the batch is unwritten

    sink.writer.down = False
    await wait_until(lambda: sink.writer.written == ["a", "b", "c", "d"], "every record written")
    await wait_until(lambda: sink.consumer.stats.committed != {}, "a commit")
    await sink.consumer.stop()
    assert await committed(sink.settings, sink.group, sink.topic) == 4
    assert sink.consumer.stats.write_failures >= 5


async def test_an_unwritten_batch_is_not_committed_at_stop_and_is_read_again(
    make_sink: Callable[..., Sink],
) -> None:
    first = make_sink(SinkPolicy(batch_size=2, flush_interval_s=0.2), FakeWriter(down=True))
    await produce(first.settings, first.topic, ["a", "b", "c"])
    await first.consumer.start()
    await wait_until(lambda: len(first.writer.attempts) >= 2, "failed writes")
    await first.consumer.stop()
    assert first.writer.batches == []
    assert await committed(first.settings, first.group, first.topic) is None

    again = make_sink(SinkPolicy(batch_size=2, flush_interval_s=0.2), group=first.group)
    await again.consumer.start()
    await wait_until(lambda: again.writer.written == ["a", "b", "c"], "the re-read")
    await again.consumer.stop()
    assert await committed(again.settings, again.group, again.topic) == 3


async def test_a_poison_record_becomes_a_dead_letter_with_its_reason_and_the_stream_goes_on(
    make_sink: Callable[..., Sink],
) -> None:
    sink = make_sink(SinkPolicy(batch_size=10, flush_interval_s=0.2))
    await produce(sink.settings, sink.topic, ["a", "poison", "b", "garbage", "c"])
    await sink.consumer.start()
    await wait_until(lambda: sink.writer.written == ["a", "b", "c"], "the good records")
    await wait_until(lambda: len(sink.writer.dead) == 2, "two dead letters")
    await wait_until(lambda: sink.consumer.stats.commits >= 1, "the commit")
    poison, garbage = sink.writer.dead
    assert (poison.reason, poison.offset, poison.original) == ("fake.poison", 1, b"poison")
    assert (garbage.reason, garbage.offset) == ("fake.invalid", 3)
    assert poison.source_topic == sink.topic and poison.key == b"k"
    assert "a poison record" in poison.detail and "not a record" in garbage.detail
    assert sink.consumer.stats.poison == 2
    assert await committed(sink.settings, sink.group, sink.topic) == 5


async def test_with_a_dead_letter_topic_poison_records_are_published_there_before_the_commit(
    make_sink: Callable[..., Sink], new_topic: NewTopicFactory
) -> None:
    dead_topic = await new_topic(1)
    sink = make_sink(SinkPolicy(batch_size=10, flush_interval_s=0.2), dead_letter_topic=dead_topic)
    await produce(sink.settings, sink.topic, ["a", "poison"])
    await sink.consumer.start()
    await wait_until(lambda: sink.consumer.stats.commits >= 1, "the commit")
    assert sink.writer.written == ["a"] and sink.writer.dead == []

    reader = AIOKafkaConsumer(
        dead_topic, auto_offset_reset="earliest", **consumer_kwargs(sink.settings)
    )
    await reader.start()
    try:
        record = await asyncio.wait_for(reader.getone(), WAIT_S)
    finally:
        await reader.stop()
    letter = decode_as(record.value, DeadLetter)
    assert (letter.source_topic, letter.offset, letter.reason) == (sink.topic, 1, "fake.poison")
    assert letter.original == b"poison"
