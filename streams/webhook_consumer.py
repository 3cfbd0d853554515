"""The webhook consumer: completed turns -> signed deliveries to the agents' subscriptions.

Its own consumer group on ``turn.completed``, never on the response path. For each completed
turn it looks up the agent's pack in the :class:`~streams.pack_registry.PackRegistry`, raises
the turn's events (``sinks.webhooks.events``) and hands one job per matching enabled
subscription to the per-subscription :class:`~sinks.webhooks.delivery.Dispatcher`, then
keeps consuming: deliveries run concurrently and a slow endpoint only fills its own lane.

Every attempt is produced to ``webhooks.deliveries`` (keyed by delivery id; the analytics
consumer logs it in ClickHouse) and an exhausted delivery also to ``webhooks.dead-letter``.
**An offset is committed once every delivery of its record and of every earlier record of
its partition is finished**, so a crash retries unfinished deliveries; they keep their
delivery id, by which receivers deduplicate, and within one process a delivery id that was
already delivered is not delivered again.

A turn's subscriptions come from the pack of the turn's own tenant and agent, and each is
signed with a secret of that tenant only (``WEBHOOK_SECRET__<TENANT>__<NAME>``, see
``sinks.webhooks.secrets``); a secret the tenant does not have exhausts the delivery at once,
with the reason, on ``webhooks.dead-letter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from schemas.codec import CodecError, decode_as, encode
from schemas.events.completed_turn import CompletedTurn
from schemas.events.webhook import WebhookDelivery
from sinks.outbound_http import guarded_session
from sinks.webhooks.delivery import Deliverer, DeliveryJob, Dispatcher, RetryPolicy, SecretLookup
from sinks.webhooks.events import events_from_turn
from streams import metrics
from streams.kafka_clients import consumer_kwargs, producer_kwargs
from streams.pack_registry import PackLookup
from streams.settings import Settings
from streams.topics import TURN_COMPLETED, WEBHOOK_DEAD_LETTER, WEBHOOK_DELIVERIES, WEBHOOKS_GROUP

logger = logging.getLogger(__name__)

COMMIT_EVERY_S = 1.0


def group_id(settings: Settings) -> str:
    return settings.webhooks.group_id or WEBHOOKS_GROUP.name(settings.topic_prefix)


class OffsetTracker:
    """What may be committed per partition: the lowest offset with unfinished deliveries, or
    the offset after the last record seen when none is unfinished."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, dict[int, int]] = {}
        self._next: dict[TopicPartition, int] = {}

    def begin(self, tp: TopicPartition, offset: int, jobs: int) -> None:
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)
        if jobs:
            self._pending.setdefault(tp, {})[offset] = jobs

    def done(self, tp: TopicPartition, offset: int) -> None:
        pending = self._pending.get(tp, {})
        left = pending.get(offset, 0) - 1
        if left > 0:
            pending[offset] = left
        else:
            pending.pop(offset, None)

    def pending(self) -> int:
        return sum(len(offsets) for offsets in self._pending.values())

    def committable(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp, nxt in self._next.items():
            pending = self._pending.get(tp)
            out[tp] = min(pending) if pending else nxt
        return out


class WebhookConsumer:
    """``await start()`` / ``await stop()``; ``packs`` is the worker's PackRegistry (anything
    with its ``get``), ``secrets`` reads a variable by name (the process environment by
    default); it is asked only for tenant-scoped names (``sinks.webhooks.secrets``)."""

    def __init__(
        self,
        settings: Settings,
        packs: PackLookup,
        *,
        secrets: SecretLookup | None = None,
    ) -> None:
        self._settings = settings
        self._cfg = settings.webhooks
        self._packs = packs
        self._secrets = secrets
        prefix = settings.topic_prefix
        self._topic = TURN_COMPLETED.name(prefix)
        self._log_topic = WEBHOOK_DELIVERIES.name(prefix)
        self._dead_topic = WEBHOOK_DEAD_LETTER.name(prefix)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._dispatcher: Dispatcher | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._tracker = OffsetTracker()
        self._committed: dict[TopicPartition, int] = {}
        self.skipped_records = 0

    @property
    def dispatcher(self) -> Dispatcher | None:
        return self._dispatcher

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("WebhookConsumer already started")
        self._stopping.clear()
        producer = AIOKafkaProducer(**producer_kwargs(self._settings))
        await producer.start()
        self._producer = producer
        self._session = guarded_session(
            allow_private=self._cfg.allow_private_targets,
            limit=0,  # the lanes bound concurrency: a host shared by tenants is no bottleneck
        )
        extra: dict[str, Any] = {} if self._secrets is None else {"secrets": self._secrets}
        deliverer = Deliverer(
            self._session,
            RetryPolicy.from_settings(self._cfg),
            allow_private=self._cfg.allow_private_targets,
            on_attempt=self._log_attempt,
            on_exhausted=self._dead_letter,
            **extra,
        )
        self._dispatcher = Dispatcher(
            deliverer,
            concurrency=self._cfg.concurrency_per_subscription,
            max_pending=self._cfg.max_pending_per_subscription,
        )
        consumer = AIOKafkaConsumer(
            self._topic,
            group_id=group_id(self._settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **consumer_kwargs(self._settings),
        )
        try:
            await consumer.start()
        except BaseException:
            await self._close_outputs()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name="webhook-consumer")
        logger.info("webhook consumer started (group %s)", group_id(self._settings))

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._dispatcher is not None:
            await self._dispatcher.close()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError):
                await self._commit(consumer)
            await consumer.stop()
        await self._close_outputs()

    async def _close_outputs(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _send(self, topic: str, record: WebhookDelivery) -> None:
        producer = self._producer
        if producer is None:
            return
        try:
            await producer.send_and_wait(topic, encode(record), key=record.delivery_id.encode())
        except (KafkaError, CodecError) as exc:
            logger.warning(
                "webhooks: could not log attempt %d of %s to %s: %s",
                record.attempt,
                record.delivery_id,
                topic,
                exc,
            )

    async def _log_attempt(self, record: WebhookDelivery) -> None:
        metrics.WEBHOOK_DELIVERIES.labels(record.status.value.lower()).inc()
        await self._send(self._log_topic, record)

    async def _dead_letter(self, record: WebhookDelivery) -> None:
        logger.warning(
            "webhooks: delivery %s to %s exhausted after %d attempts: %s",
            record.delivery_id,
            record.url,
            record.attempt,
            record.error,
        )
        await self._send(self._dead_topic, record)

    def _jobs(self, value: bytes | None) -> list[DeliveryJob]:
        if value is None:
            return []
        try:
            completed = decode_as(value, CompletedTurn)
        except CodecError as exc:
            self.skipped_records += 1
            logger.warning("webhooks: undecodable completed turn skipped: %s", exc)
            return []
        record = completed.record
        snapshot = self._packs.get(record.tenant_id, record.agent_id)
        if snapshot is None or not snapshot.pack.webhooks:
            return []
        jobs = []
        for event in events_from_turn(completed):
            for sub in snapshot.pack.webhooks:
                if sub.enabled and event.event_type in sub.events:
                    jobs.append(DeliveryJob.of(sub, event))
        return jobs

    def _done_callback(self, tp: TopicPartition, offset: int) -> Callable[[], None]:
        return lambda: self._tracker.done(tp, offset)

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None
        loop = asyncio.get_running_loop()
        last_commit = loop.time()
        while not self._stopping.is_set():
            try:
                fetched = await consumer.getmany(timeout_ms=int(COMMIT_EVERY_S * 1000))
            except KafkaError as exc:
                logger.warning("webhooks: fetch failed, retrying: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for tp, records in fetched.items():
                for record in records:
                    jobs = self._jobs(record.value)
                    self._tracker.begin(tp, record.offset, len(jobs))
                    for job in jobs:
                        dispatcher.submit(job, self._done_callback(tp, record.offset))
            if loop.time() - last_commit >= COMMIT_EVERY_S:
                last_commit = loop.time()
                try:
                    await self._commit(consumer)
                except KafkaError as exc:
                    logger.warning("webhooks: commit failed: %s", exc)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        todo = {
            tp: offset
            for tp, offset in self._tracker.committable().items()
            if tp in assigned and self._committed.get(tp) != offset
        }
        if todo:
            await consumer.commit(todo)
            self._committed.update(todo)
