"""The analytics consumer: completed turns, dead letters, webhook attempts and analytics
events into ClickHouse, in its own consumer group, never on the response path.

It is :class:`AnalyticsWriter` on the :class:`~streams.sink_consumer.SinkConsumer` loop:
records are decoded and turned into rows as they arrive and written in batches bounded by
size (``TURNSTREAM_ANALYTICS__BATCH_SIZE`` records) and time (``__FLUSH_INTERVAL_S`` after
the batch's first record). The write runs in a worker thread (chdb and the clickhouse-connect
client are synchronous). **Offsets are committed only after the batch is written**; when the
write fails (ClickHouse down, disk full, ...) the same batch is retried with exponential
backoff and jitter, nothing is committed and nothing is consumed meanwhile, so nothing is
lost and the process does not crash. Rows are idempotent (``sinks.analytics.tables``), so a
batch written twice (a retry after a partial write, a replay after a crash or a rebalance)
leaves one row per key after deduplication.

A record that cannot become rows (undecodable, invalid) is a dead letter with its reason,
written with the batch to the ``dead_letters`` table with its topic, partition and offset
(not to the dead-letter topic, which this consumer reads): a poison record never blocks the
stream.

No customer address is stored (``sinks.analytics.privacy``): ``turns.session_key`` is a
pseudonym keyed by ``TURNSTREAM_ANALYTICS__PSEUDONYM_KEY``, and texts are masked. With
``TURNSTREAM_ANALYTICS__STORE_TEXTS`` the values of the fields a pack marks ``sensitive`` are
masked in message and answer, so the consumer needs the packs: the worker's
:class:`~streams.pack_registry.PackRegistry` when it is given one (``packs``), else one of its
own. A turn whose pack it does not know has its message and answer left out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from schemas.codec import decode_as
from schemas.events.analytics import AnalyticsEvent
from schemas.events.completed_turn import CompletedTurn
from schemas.events.dead_letter import DeadLetter
from schemas.events.webhook import WebhookDelivery
from sinks.analytics import rows
from sinks.analytics.privacy import Pseudonyms
from sinks.analytics.query_server import QueryServer
from sinks.analytics.rows import RowBatch
from sinks.analytics.store import AnalyticsStore, EngineBusyError
from streams.pack_registry import PackLookup, PackRegistry
from streams.settings import Settings
from streams.sink_consumer import SinkConsumer, SinkPolicy
from streams.topics import (
    ANALYTICS_EVENTS,
    ANALYTICS_GROUP,
    DEAD_LETTER,
    TURN_COMPLETED,
    WEBHOOK_DELIVERIES,
)

logger = logging.getLogger(__name__)


def group_id(settings: Settings) -> str:
    return settings.analytics.group_id or ANALYTICS_GROUP.name(settings.topic_prefix)


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


class AnalyticsWriter:
    """Records -> ClickHouse rows; opens the store (and the SQL endpoint) unless given one."""

    def __init__(
        self,
        settings: Settings,
        builders: dict[str, Callable[[bytes], RowBatch]],
        store: AnalyticsStore | None,
        *,
        serve_queries: bool,
    ) -> None:
        self._settings = settings
        self._builders = builders
        self.store = store
        self._owns_store = store is None
        self._serve_queries = serve_queries
        self.query_server: QueryServer | None = None
        self.rows = 0

    @property
    def topics(self) -> list[str]:
        return list(self._builders)

    async def open(self) -> None:
        if self.store is not None:
            return
        store = await asyncio.to_thread(AnalyticsStore.open, self._settings)
        self.store = store
        port = self._settings.analytics.query_port
        if self._serve_queries and port:
            server = QueryServer(store, port)
            try:
                await asyncio.to_thread(server.start)
            except OSError as exc:
                logger.error(
                    "analytics: cannot serve SQL on port %d (%s); "
                    "set TURNSTREAM_ANALYTICS__QUERY_PORT",
                    port,
                    exc,
                )
            else:
                self.query_server = server

    def decode(self, topic: str, value: bytes) -> RowBatch:
        return self._builders[topic](value)

    async def write(self, items: Sequence[RowBatch], dead: Sequence[DeadLetter]) -> None:
        batch = rows.merge(items)
        for letter in dead:
            batch.extend(
                rows.poison_rows(
                    letter.source_topic,
                    letter.partition,
                    letter.offset,
                    letter.key,
                    letter.original,
                    letter.reason,
                    letter.detail,
                    letter.at,
                )
            )
        store = self.store
        assert store is not None  # the loop opens it before consuming
        await asyncio.to_thread(store.write, batch)
        self.rows += len(batch)

    async def close(self) -> None:
        if self.query_server is not None:
            await asyncio.to_thread(self.query_server.stop)
            self.query_server = None
        if self._owns_store and self.store is not None:
            store, self.store = self.store, None
            await asyncio.to_thread(store.close)


class AnalyticsConsumer(SinkConsumer[RowBatch]):
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
        cfg = settings.analytics
        self._own_packs: PackRegistry | None = None
        if packs is None and cfg.store_texts:
            packs = self._own_packs = PackRegistry(settings)
        pseudonyms = Pseudonyms.from_key(cfg.pseudonym_key)
        builders = _row_builders(settings, sensitive_fields(packs), pseudonyms)
        self._analytics = AnalyticsWriter(
            settings, builders, store, serve_queries=serve_queries and not settings.clickhouse_url
        )
        super().__init__(
            settings,
            name="analytics",
            group=group_id(settings),
            topics=self._analytics.topics,
            writer=self._analytics,
            policy=SinkPolicy(
                batch_size=cfg.batch_size,
                flush_interval_s=cfg.flush_interval_s,
                retry_initial_s=cfg.retry_initial_s,
                retry_max_s=cfg.retry_max_s,
            ),
        )

    @property
    def store(self) -> AnalyticsStore | None:
        return self._analytics.store

    @property
    def query_port(self) -> int | None:
        server = self._analytics.query_server
        return server.port if server is not None else None

    async def start(self) -> None:
        if not self.settings.analytics.pseudonym_key:
            # a server is shared by processes and outlives them: there it matters
            level = logging.WARNING if self.settings.clickhouse_url else logging.INFO
            logger.log(
                level,
                "analytics: TURNSTREAM_ANALYTICS__PSEUDONYM_KEY is not set: session keys are "
                "pseudonymized with a random key of this process, so they differ after a "
                "restart and between processes",
            )
        if self._own_packs is not None:
            await self._own_packs.start()
        try:
            try:
                await self._analytics.open()
            except EngineBusyError:
                raise
            except Exception as exc:  # a server down at start: retried by the run loop
                logger.warning("analytics: ClickHouse not available yet, retrying: %s", exc)
            await super().start()
        except BaseException:
            await self._analytics.close()
            if self._own_packs is not None:
                await self._own_packs.stop()
            raise

    async def stop(self) -> None:
        await super().stop()
        if self._own_packs is not None:
            await self._own_packs.stop()
