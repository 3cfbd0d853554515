"""One consume -> decode -> batch -> write -> commit loop for every sink (analytics, memory).

A sink is a :class:`SinkWriter`: it opens its store, decodes one record value into an item
and writes a batch of items. This module does the rest, the same way for every sink:

* its own consumer group (named in :mod:`streams.topics`), auto-commit off;
* batches bounded by size (``SinkPolicy.batch_size`` records) and by time
  (``flush_interval_s`` after the batch's first record);
* **offsets committed only after the batch is written**: a failed write (store down, disk
  full, ...) is retried with exponential backoff and jitter, nothing is committed and
  nothing more is consumed meanwhile, so nothing is lost; at stop an unwritten batch is left
  uncommitted and is consumed again by the next owner. Writers must be idempotent (a batch
  may be written twice: a retry after a partial write, a replay after a crash);
* one poison policy: a record that cannot be decoded becomes a
  :class:`~schemas.events.dead_letter.DeadLetter` with its reason, written with the batch
  (to the dead-letter topic when ``dead_letter_topic`` is set, else handed to the writer,
  which keeps it in its own store), and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from pydantic import ValidationError

from processors.backoff import Backoff
from schemas.codec import CodecError
from schemas.events.dead_letter import DeadLetter
from streams.kafka_clients import consumer_kwargs, producer_kwargs
from streams.pipeline.rejects import (
    KEPT_BY_DEFAULT,
    RawRecord,
    deliver,
    letter_for,
    original_bound,
)
from streams.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
STOP_WAIT_S = 60.0


class PoisonRecord(Exception):
    """Raised by :meth:`SinkWriter.decode` for a record that can never be written."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class SinkWriter(Protocol[T]):
    """What a sink implements; everything else is :class:`SinkConsumer`'s."""

    async def open(self) -> None:
        """Open the store; raising makes the consumer retry with backoff before consuming."""

    def decode(self, topic: str, value: bytes) -> T | None:
        """One record value as an item (None: nothing to write). Raise ``CodecError``,
        ``ValidationError``, ``ValueError`` or :class:`PoisonRecord` for a poison record."""

    async def write(self, items: Sequence[T], dead: Sequence[DeadLetter]) -> None:
        """Write a batch, idempotently; ``dead`` is empty when dead letters go to a topic."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SinkPolicy:
    batch_size: int
    flush_interval_s: float
    retry_initial_s: float = 1.0
    retry_max_s: float = 30.0

    def backoff(self, failures: int) -> float:
        """Exponential backoff with jitter: half to all of ``initial * 2**(failures-1)``,
        capped at ``retry_max_s``."""
        return Backoff(self.retry_initial_s, self.retry_max_s, 0.5, 1.0).delay(failures)


@dataclass
class SinkStats:
    """Counters for logs, tests and the benches."""

    records: int = 0
    items: int = 0
    batches: int = 0
    write_failures: int = 0
    poison: int = 0
    commits: int = 0
    commit_failures: int = 0
    last_error: str | None = None
    committed: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass
class _Batch(Generic[T]):
    items: list[T] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    records: int = 0
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    started: float | None = None


def poison_reason(exc: Exception, sink: str) -> str:
    """The dead letter's reason code (``Code``: lower case, digits, ``_`` and ``.``)."""
    sink = sink.lower().replace("-", "_")
    if isinstance(exc, PoisonRecord):
        return exc.reason
    if isinstance(exc, CodecError):
        return f"codec.{exc.reason}"
    if isinstance(exc, ValidationError | ValueError | KeyError):
        return f"{sink}.invalid"
    return f"{sink}.decode_failed"


def dead_letter_of(
    record: Any, reason: str, detail: str, keep: int = KEPT_BY_DEFAULT
) -> DeadLetter:
    """The dead letter of a consumed aiokafka record, dated by the record's timestamp, with
    at most ``keep`` bytes of its value (:func:`~streams.pipeline.rejects.letter_for`)."""
    at = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp else None
    raw = RawRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers={},
    )
    return letter_for(raw, reason, detail, at, keep=keep)


class SinkConsumer(Generic[T]):
    """``await start()`` / ``await stop()``: runs ``writer`` on ``topics`` in ``group``."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        group: str,
        topics: Sequence[str],
        writer: SinkWriter[T],
        policy: SinkPolicy,
        dead_letter_topic: str | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.group = group
        self.writer = writer
        self._topics = tuple(topics)
        self._policy = policy
        self._dead_topic = dead_letter_topic
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.stats = SinkStats()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} consumer already started")
        self._stopping.clear()
        consumer = AIOKafkaConsumer(
            *self._topics,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._policy.batch_size,
            **consumer_kwargs(self.settings),
        )
        await consumer.start()
        if self._dead_topic is not None:
            producer = AIOKafkaProducer(
                max_request_size=self.settings.producer_max_request_size,
                **producer_kwargs(self.settings),
            )
            try:
                await producer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._producer = producer
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name=f"{self.name}-consumer")
        logger.info("%s consumer started (group %s)", self.name, self.group)

    async def stop(self) -> None:
        """Stop after the batch in hand: written once more if it can be, never committed
        unwritten."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=STOP_WAIT_S)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            except Exception:
                logger.exception("%s consumer ended with an error", self.name)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        await self.writer.close()

    async def _pause(self, seconds: float) -> None:
        """Sleep, or return early when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _open(self) -> bool:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.writer.open()
                return True
            except Exception as exc:
                failures += 1
                self.stats.last_error = str(exc)
                delay = self._policy.backoff(failures)
                logger.warning(
                    "%s: opening the store failed (retry in %.1f s): %s", self.name, delay, exc
                )
                await self._pause(delay)
        return False

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        if not await self._open():
            return
        policy = self._policy
        batch: _Batch[T] = _Batch()
        while not self._stopping.is_set():
            if batch.started is None:
                wait_s = policy.flush_interval_s
            else:
                wait_s = max(0.0, batch.started + policy.flush_interval_s - time.monotonic())
            try:
                fetched = await consumer.getmany(
                    timeout_ms=int(wait_s * 1000),
                    max_records=max(1, policy.batch_size - batch.records),
                )
            except KafkaError as exc:
                logger.warning("%s: fetch failed, retrying: %s", self.name, exc)
                await self._pause(1.0)
                continue
            for tp, records in fetched.items():
                for record in records:
                    self._add(batch, tp, record)
            due = batch.started is not None and (
                time.monotonic() >= batch.started + policy.flush_interval_s
            )
            if batch.records and (batch.records >= policy.batch_size or due):
                await self._flush(consumer, batch, retry=True)
                batch = _Batch()
        if batch.records:
            await self._flush(consumer, batch, retry=False)

    def _add(self, batch: _Batch[T], tp: TopicPartition, record: Any) -> None:
        if batch.started is None:
            batch.started = time.monotonic()
        batch.records += 1
        batch.offsets[tp] = record.offset
        self.stats.records += 1
        if record.value is None:
            return
        try:
            item = self.writer.decode(record.topic, record.value)
        except Exception as exc:
            reason = poison_reason(exc, self.name)
            if reason.endswith(".decode_failed"):
                logger.exception(
                    "%s: decoding %s@%d failed", self.name, record.topic, record.offset
                )
            self.stats.poison += 1
            logger.warning(
                "%s: %s[%d]@%d is a dead letter (%s): %s",
                self.name,
                record.topic,
                record.partition,
                record.offset,
                reason,
                exc,
            )
            keep = original_bound(self.settings.producer_max_request_size)
            batch.dead.append(dead_letter_of(record, reason, str(exc), keep))
            return
        if item is not None:
            batch.items.append(item)

    async def _write(self, batch: _Batch[T]) -> None:
        dead = batch.dead
        producer, topic = self._producer, self._dead_topic
        if producer is not None and topic is not None:

            async def send(key: bytes | None, value: bytes) -> None:
                await producer.send_and_wait(topic, value, key=key)

            for letter in dead:
                await deliver(letter, send)  # retried, or a minimal letter: never too large
            dead = []
        await self.writer.write(batch.items, dead)

    async def _flush(self, consumer: AIOKafkaConsumer, batch: _Batch[T], *, retry: bool) -> None:
        """Write the batch (retrying until it is written or the consumer stops), then commit."""
        failures = 0
        while True:
            try:
                await self._write(batch)
                break
            except Exception as exc:
                failures += 1
                self.stats.write_failures += 1
                self.stats.last_error = str(exc)
                if not retry or self._stopping.is_set():
                    logger.warning(
                        "%s: batch of %d records not written at stop (%s); "
                        "not committed, it will be consumed again",
                        self.name,
                        batch.records,
                        exc,
                    )
                    return
                delay = self._policy.backoff(failures)
                logger.warning(
                    "%s: writing %d records failed (attempt %d, retry in %.1f s): %s",
                    self.name,
                    batch.records,
                    failures,
                    delay,
                    exc,
                )
                await self._pause(delay)
        self.stats.batches += 1
        self.stats.items += len(batch.items)
        await self._commit(consumer, batch.offsets)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        assigned = consumer.assignment()
        todo = {tp: offset + 1 for tp, offset in offsets.items() if tp in assigned}
        if not todo:
            return
        try:
            await consumer.commit(todo)
        except KafkaError as exc:  # a rebalance: the new owner re-reads, writes are idempotent
            self.stats.commit_failures += 1
            logger.warning("%s: commit failed, records will be re-read: %s", self.name, exc)
            return
        self.stats.commits += 1
        self.stats.committed.update(todo)
