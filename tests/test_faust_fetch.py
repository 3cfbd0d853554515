"""Partitions Faust does not read are paused in aiokafka too (streams/pipeline/faust_fetch.py),
so their buffered records never hold back the fetches of the partitions it does read."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from streams.pipeline.faust_fetch import fix_idle_partition_fetches, pause_unread

REQUESTED = [TopicPartition("p.turn.requested", i) for i in range(2)]
CHANGELOG = [TopicPartition("p.table.session-gate.changelog", i) for i in range(2)]


class FakeFetcher:
    def __init__(self) -> None:
        self._records: dict[TopicPartition, str] = {}


class FakeConsumer:
    """The four calls of ``AIOKafkaConsumer`` that ``pause_unread`` makes, and its buffer."""

    def __init__(self, assigned: list[TopicPartition]) -> None:
        self._assigned = set(assigned)
        self._paused: set[TopicPartition] = set()
        self._fetcher = FakeFetcher()
        self._closed = False

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)


def test_assigned_partitions_faust_does_not_read_are_paused_and_their_buffer_dropped() -> None:
    consumer = FakeConsumer(REQUESTED + CHANGELOG)
    consumer._fetcher._records = {CHANGELOG[0]: "gate records", REQUESTED[0]: "a request"}
    active = {TP(tp.topic, tp.partition) for tp in REQUESTED}  # Faust's own tuple type
    pause_unread(consumer, active)
    assert consumer.paused() == set(CHANGELOG)
    assert consumer._fetcher._records == {REQUESTED[0]: "a request"}


def test_a_paused_partition_faust_reads_again_is_resumed() -> None:
    consumer = FakeConsumer(REQUESTED + CHANGELOG)
    pause_unread(consumer, set(REQUESTED))
    pause_unread(consumer, set(REQUESTED + CHANGELOG[:1]))  # recovery reads a changelog
    assert consumer.paused() == {CHANGELOG[1]}


def test_nothing_changes_while_faust_reads_the_same_partitions() -> None:
    consumer = FakeConsumer(REQUESTED + CHANGELOG)
    pause_unread(consumer, set(REQUESTED))
    consumer._fetcher._records = {REQUESTED[1]: "a request"}
    pause_unread(consumer, set(REQUESTED))
    assert consumer.paused() == set(CHANGELOG)
    assert consumer._fetcher._records == {REQUESTED[1]: "a request"}


async def test_the_patched_consumer_thread_pauses_unread_partitions_before_each_read() -> None:
    fix_idle_partition_fetches()
    consumer = FakeConsumer(REQUESTED + CHANGELOG)
    thread = SimpleNamespace(consumer=SimpleNamespace(flow_active=False))  # reads nothing
    assert await AIOKafkaConsumerThread._fetch_records(thread, consumer, set(REQUESTED)) == {}
    assert consumer.paused() == set(CHANGELOG)
