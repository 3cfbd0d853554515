"""A fix to faust-streaming's fetching: partitions Faust does not read are paused in aiokafka.

Faust "pauses" a partition it does not want to read (its tables' changelogs outside recovery,
a stream whose buffer is full) only in its own bookkeeping: it stops asking aiokafka for that
partition's records, but aiokafka keeps fetching them. The records then sit in aiokafka's
buffer, which hands them to nobody, and aiokafka sends no further fetch to that broker until
they are taken or its ``prefetch_backoff`` (100 ms) has passed. Every table write (the session
gate, the retrieval join, session state: 10 changelog records per turn) therefore stalled the
whole consumer for 100 ms whenever the next fetch brought one of them back: one turn at a time,
about one turn in six waited 100-200 ms at one or two hops (e2e p95 ~250 ms against a p50 of
~50 ms; ``bench/turns.py``, unloaded).

The fix keeps aiokafka's paused partitions equal to the assigned partitions Faust does not
read. Before each read of aiokafka's buffer (on the consumer's own thread, where aiokafka may
be called) every assigned partition that is not active is paused and its buffered records are
dropped (they were not consumed, so its position is unchanged and they are fetched again when
it resumes), and every paused partition that is active again is resumed.

Upstream: no faust-streaming issue describes it (searched); the behaviour is in
``AIOKafkaConsumerThread._fetch_records`` of faust-streaming 0.15.3, which passes its active
partitions to aiokafka's ``getmany`` without pausing the others.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from streams.pipeline.faust_versions import check_patched_libraries

_PATCHED = "_turnstream_fetch_fix"


def fix_idle_partition_fetches() -> None:
    """Install the fix once per process (every app build calls it)."""
    if getattr(AIOKafkaConsumerThread, _PATCHED, False):
        return
    check_patched_libraries()
    original = AIOKafkaConsumerThread._fetch_records

    async def _fetch_records(
        self: Any,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        if active_partitions is not None and not consumer._closed:
            pause_unread(consumer, active_partitions)
        return await original(
            self, consumer, active_partitions, timeout=timeout, max_records=max_records
        )

    AIOKafkaConsumerThread._fetch_records = _fetch_records  # type: ignore[method-assign]
    setattr(AIOKafkaConsumerThread, _PATCHED, True)


def pause_unread(consumer: Any, active: Container[Any]) -> None:
    """Pause in ``consumer`` (an ``AIOKafkaConsumer``) the assigned partitions not in
    ``active``, dropping what it buffered for them, and resume the paused ones that are.
    ``active`` is Faust's live set, changed by another thread: it is only tested, never
    iterated."""
    paused = consumer.paused()
    unread = [tp for tp in consumer.assignment() if tp not in active and tp not in paused]
    if unread:
        consumer.pause(*unread)
        buffered = consumer._fetcher._records
        for tp in unread:
            buffered.pop(tp, None)
    back = [tp for tp in paused if tp in active]
    if back:
        consumer.resume(*back)
