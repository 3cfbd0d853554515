"""The analytics consumer: completed turns, dead letters, webhook attempts and analytics
events into ClickHouse, in its own consumer group, never on the response path.

Records are decoded and turned into rows as they arrive and written in batches bounded by
size (``TURNSTREAM_ANALYTICS__BATCH_SIZE`` records) and time (``__FLUSH_INTERVAL_S`` after
the batch's first record). The write runs in a worker thread (chdb and the clickhouse-connect
client are synchronous). **Offsets are committed only after the batch is written**; when the
write fails (ClickHouse down, disk full, ...) the same batch is retried with exponential
backoff and jitter, nothing is committed and nothing is consumed meanwhile, so nothing is
lost and the process does not crash. Rows are idempotent (``sinks.analytics.tables``), so a
batch written twice (a retry after a partial write, a replay after a crash or a rebalance)
leaves one row per key after deduplication.

A record that cannot become rows (undecodable, invalid) is logged and written to the
``dead_letters`` table with its topic, partition and offset: a poison record never blocks
the stream.

No customer address is stored (``sinks.analytics.privacy``): ``turns.session_key`` is a
pseudonym keyed by ``TURNSTREAM_ANALYTICS__PSEUDONYM_KEY``, and texts are masked. With
``TURNSTREAM_ANALYTICS__STORE_TEXTS`` the values of the fields a pack marks ``sensitive`` are
masked in message and answer, so the consumer needs the packs: the worker's
:class:`~streams.pack_registry.PackRegistry` when it is given one (``packs``), else one of its
own. A turn whose pack it does not know has its message and answer left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from pydantic import BaseModel, ValidationError

from schemas.codec import CodecError, decode_as
from schemas.events.analytics import AnalyticsEvent
from schemas.events.completed_turn import CompletedTurn
from schemas.events.dead_letter import DeadLetter
from schemas.events.webhook import WebhookDelivery
from sinks.analytics import rows
from sinks.analytics.privacy import Pseudonyms
from sinks.analytics.query_server import QueryServer
from sinks.analytics.rows import RowBatch
from sinks.analytics.store import AnalyticsStore, EngineBusyError
from streams.kafka_clients import consumer_kwargs
from streams.pack_registry import PackRegistry, PackSnapshot
from streams.settings import Settings
from streams.topics import ANALYTICS_EVENTS, DEAD_LETTER, TURN_COMPLETED, WEBHOOK_DELIVERIES

logger = logging.getLogger(__name__)

StoreFactory = Callable[[], AnalyticsStore]


@dataclass
class AnalyticsStats:
    """Counters for logs, tests and the bench."""

    records: int = 0
    rows: int = 0
    batches: int = 0
    write_failures: int = 0
    poison: int = 0
    commits: int = 0
    commit_failures: int = 0
    last_error: str | None = None
    committed: dict[TopicPartition, int] = field(default_factory=dict)


def group_id(settings: Settings) -> str:
    return settings.analytics.group_id or f"{settings.topic_prefix}.analytics"


class PackLookup(Protocol):
    def get(self, tenant: str, agent: str) -> PackSnapshot | None: ...


SensitiveFields = Callable[[str, str], frozenset[str] | None]
"""The keys of the sensitive fields of a tenant's agent; None when its pack is not known."""


def sensitive_fields(packs: PackLookup | None) -> SensitiveFields:
    def lookup(tenant: str, agent: str) -> frozenset[str] | None:
        snapshot = packs.get(tenant, agent) if packs is not None else None
        if snapshot is None:
            return None
        return frozenset(f.key for f in snapshot.pack.fields if f.sensitive)

    return lookup


def _row_builders(
    settings: Settings, sensitive: SensitiveFields, pseudonyms: Pseudonyms
) -> dict[str, Callable[[bytes], RowBatch]]:
    store_texts = settings.analytics.store_texts

    def build(
        model: type[BaseModel], make: Callable[[Any], RowBatch]
    ) -> Callable[[bytes], RowBatch]:
        return lambda value: make(decode_as(value, model))

    def turn(event: CompletedTurn) -> RowBatch:
        record = event.record
        return rows.completed_turn_rows(
            event,
            store_texts=store_texts,
            sensitive_fields=sensitive(record.tenant_id, record.agent_id),
            pseudonyms=pseudonyms,
        )

    prefix = settings.topic_prefix
    return {
        TURN_COMPLETED.name(prefix): build(CompletedTurn, turn),
        DEAD_LETTER.name(prefix): build(DeadLetter, rows.dead_letter_rows),
        WEBHOOK_DELIVERIES.name(prefix): build(WebhookDelivery, rows.webhook_delivery_rows),
        ANALYTICS_EVENTS.name(prefix): build(AnalyticsEvent, rows.analytics_event_rows),
    }


class _Batch:
    def __init__(self) -> None:
        self.rows = RowBatch()
        self.records = 0
        self.offsets: dict[TopicPartition, int] = {}
        self.started: float | None = None

    def __bool__(self) -> bool:
        return self.records > 0


class AnalyticsConsumer:
    """``await start()`` / ``await stop()``. ``store`` injects an :class:`AnalyticsStore`
    (tests use one whose client fails); by default the consumer opens its own from the
    settings and, for the embedded engine, serves read-only SQL on the query port. ``packs``
    (anything with the PackRegistry's ``get``) tells which fields are sensitive; without it
    and with ``store_texts`` on, the consumer follows the packs itself."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: AnalyticsStore | None = None,
        serve_queries: bool = True,
        packs: PackLookup | None = None,
    ) -> None:
        self._settings = settings
        self._cfg = settings.analytics
        self._store = store
        self._owns_store = store is None
        self._serve_queries = serve_queries and not settings.clickhouse_url
        self._own_packs: PackRegistry | None = None
        if packs is None and self._cfg.store_texts:
            packs = self._own_packs = PackRegistry(settings)
        pseudonyms = Pseudonyms.from_key(self._cfg.pseudonym_key)
        self._builders = _row_builders(settings, sensitive_fields(packs), pseudonyms)
        self._consumer: AIOKafkaConsumer | None = None
        self._query_server: QueryServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.stats = AnalyticsStats()

    @property
    def store(self) -> AnalyticsStore | None:
        return self._store

    @property
    def query_port(self) -> int | None:
        return self._query_server.port if self._query_server is not None else None

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("AnalyticsConsumer already started")
        self._stopping.clear()
        if not self._cfg.pseudonym_key:
            # a server is shared by processes and outlives them: there it matters
            level = logging.WARNING if self._settings.clickhouse_url else logging.INFO
            logger.log(
                level,
                "analytics: TURNSTREAM_ANALYTICS__PSEUDONYM_KEY is not set: session keys are "
                "pseudonymized with a random key of this process, so they differ after a "
                "restart and between processes",
            )
        if self._own_packs is not None:
            await self._own_packs.start()
        try:
            if self._store is None:
                try:
                    await self._open_store()
                except EngineBusyError:
                    raise
                except Exception as exc:  # a server down at start: retried by the run loop
                    logger.warning("analytics: ClickHouse not available yet, retrying: %s", exc)
            consumer = AIOKafkaConsumer(
                *self._builders,
                group_id=group_id(self._settings),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self._cfg.batch_size,
                **consumer_kwargs(self._settings),
            )
            await consumer.start()
        except BaseException:
            if self._own_packs is not None:
                await self._own_packs.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name="analytics-consumer")
        logger.info("analytics consumer started (group %s)", group_id(self._settings))

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=60)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            except Exception:
                logger.exception("analytics consumer ended with an error")
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        if self._query_server is not None:
            await asyncio.to_thread(self._query_server.stop)
            self._query_server = None
        if self._owns_store and self._store is not None:
            store, self._store = self._store, None
            await asyncio.to_thread(store.close)
        if self._own_packs is not None:
            await self._own_packs.stop()

    async def _open_store(self) -> None:
        store = await asyncio.to_thread(AnalyticsStore.open, self._settings)
        self._store = store
        if self._serve_queries and self._cfg.query_port:
            server = QueryServer(store, self._cfg.query_port)
            try:
                await asyncio.to_thread(server.start)
            except OSError as exc:
                logger.error(
                    "analytics: cannot serve SQL on port %d (%s); "
                    "set TURNSTREAM_ANALYTICS__QUERY_PORT",
                    self._cfg.query_port,
                    exc,
                )
            else:
                self._query_server = server

    # -- the loop ------------------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._cfg.retry_max_s, self._cfg.retry_initial_s * 2.0 ** (failures - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def _pause(self, seconds: float) -> None:
        """Sleep, or return early when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _ensure_store(self) -> AnalyticsStore | None:
        failures = 0
        while self._store is None and not self._stopping.is_set():
            try:
                await self._open_store()
            except Exception as exc:
                failures += 1
                self.stats.last_error = str(exc)
                delay = self._backoff(failures)
                logger.warning(
                    "analytics: opening ClickHouse failed (retry in %.1f s): %s", delay, exc
                )
                await self._pause(delay)
        return self._store

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        if await self._ensure_store() is None:
            return
        batch = _Batch()
        interval = self._cfg.flush_interval_s
        while not self._stopping.is_set():
            if batch.started is None:
                wait_s = interval
            else:
                wait_s = max(0.0, batch.started + interval - time.monotonic())
            try:
                fetched = await consumer.getmany(
                    timeout_ms=int(wait_s * 1000),
                    max_records=max(1, self._cfg.batch_size - batch.records),
                )
            except KafkaError as exc:
                logger.warning("analytics: fetch failed, retrying: %s", exc)
                await self._pause(1.0)
                continue
            for tp, records in fetched.items():
                for record in records:
                    self._add(batch, tp, record)
            due = batch.started is not None and time.monotonic() >= batch.started + interval
            if batch and (batch.records >= self._cfg.batch_size or due):
                await self._flush(consumer, batch, retry=True)
                batch = _Batch()
        if batch:
            await self._flush(consumer, batch, retry=False)

    def _add(self, batch: _Batch, tp: TopicPartition, record: Any) -> None:
        if batch.started is None:
            batch.started = time.monotonic()
        batch.records += 1
        batch.offsets[tp] = record.offset
        self.stats.records += 1
        if record.value is None:
            return
        try:
            batch.rows.extend(self._builders[record.topic](record.value))
        except (CodecError, ValidationError, ValueError, KeyError) as exc:
            reason = f"codec.{exc.reason}" if isinstance(exc, CodecError) else "analytics.invalid"
            self._poison(batch, record, reason, exc)
        except Exception as exc:
            logger.exception(
                "analytics: building rows failed for %s@%d", record.topic, record.offset
            )
            self._poison(batch, record, "analytics.row_builder_failed", exc)

    def _poison(self, batch: _Batch, record: Any, reason: str, exc: Exception) -> None:
        self.stats.poison += 1
        logger.warning(
            "analytics: %s[%d]@%d skipped (%s): %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            exc,
        )
        at = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp else None
        batch.rows.extend(
            rows.poison_rows(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                reason,
                str(exc),
                at or datetime.now(UTC),
            )
        )

    async def _flush(self, consumer: AIOKafkaConsumer, batch: _Batch, *, retry: bool) -> None:
        """Write the batch (retrying until it is written or the consumer stops), then commit."""
        store = self._store
        assert store is not None
        failures = 0
        while True:
            try:
                await asyncio.to_thread(store.write, batch.rows)
                break
            except Exception as exc:
                failures += 1
                self.stats.write_failures += 1
                self.stats.last_error = str(exc)
                if not retry or self._stopping.is_set():
                    logger.warning(
                        "analytics: batch of %d records not written at stop (%s); "
                        "not committed, it will be consumed again",
                        batch.records,
                        exc,
                    )
                    return
                delay = self._backoff(failures)
                logger.warning(
                    "analytics: writing %d rows failed (attempt %d, retry in %.1f s): %s",
                    len(batch.rows),
                    failures,
                    delay,
                    exc,
                )
                await self._pause(delay)
        self.stats.batches += 1
        self.stats.rows += len(batch.rows)
        await self._commit(consumer, batch.offsets)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        assigned = consumer.assignment()
        todo = {tp: offset + 1 for tp, offset in offsets.items() if tp in assigned}
        if not todo:
            return
        try:
            await consumer.commit(todo)
        except KafkaError as exc:  # a rebalance: the new owner re-reads, rows deduplicate
            self.stats.commit_failures += 1
            logger.warning("analytics: commit failed, records will be re-read: %s", exc)
            return
        self.stats.commits += 1
        self.stats.committed.update(todo)
