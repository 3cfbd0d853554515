"""Consumer lag: a group's committed offsets against its partitions' end offsets.

Shared by the worker, which publishes it as the ``turnstream_consumer_lag`` gauge every
``ops.lag_interval_s`` (:class:`LagMonitor`), and by ``turnstream status``. Lag is what
Kafka says, not what a worker believes: it rises while a group's consumers are stopped or
paused and records keep arriving, and falls once they commit again. Only partitions the
group has committed an offset for are reported (a partition it never consumed has no lag
to speak of yet).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from prometheus_client import Gauge

from streams.settings import Settings

logger = logging.getLogger(__name__)

Lag = dict[TopicPartition, int]


class LagReader:
    """An admin client (committed offsets) and a group-less consumer (end offsets)."""

    def __init__(self, settings: Settings) -> None:
        self._bootstrap = settings.bootstrap_servers
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        await self._admin.start()
        consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, bootstrap_servers=self._bootstrap
        )
        try:
            await consumer.start()
        except BaseException:
            await self._admin.close()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        await self._admin.close()

    @property
    def admin(self) -> AIOKafkaAdminClient:
        return self._admin

    async def lag(self, group: str) -> Lag:
        """End offset minus committed offset of each partition ``group`` committed."""
        committed = await self._admin.list_consumer_group_offsets(group)
        known = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        if not known:
            return {}
        if self._consumer is None:
            raise RuntimeError("LagReader not started")
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(list(known))
        return {tp: max(0, ends[tp] - offset) for tp, offset in known.items() if tp in ends}


class LagMonitor:
    """Reads the lag of ``groups`` every ``interval_s`` and sets ``gauge`` (labels group,
    topic, partition). A failed read is
    logged once per failure streak and retried at the next tick: lag is an observation,
    never a reason for a worker to stop."""

    def __init__(
        self, settings: Settings, groups: Iterable[str], interval_s: float, gauge: Gauge
    ) -> None:
        self._settings = settings
        self._gauge = gauge
        self.groups = sorted(set(groups))
        self._interval_s = interval_s
        self._reader: LagReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        reader = LagReader(self._settings)
        await reader.start()
        self._reader = reader
        self._task = asyncio.create_task(self._run(reader), name="consumer-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()

    async def _run(self, reader: LagReader) -> None:
        while True:
            await self.read_once(reader)
            await asyncio.sleep(self._interval_s)

    async def read_once(self, reader: LagReader) -> None:
        try:
            for group in self.groups:
                for tp, lag in (await reader.lag(group)).items():
                    self._gauge.labels(group, tp.topic, str(tp.partition)).set(lag)
        except (KafkaError, OSError) as exc:
            if not self._failing:
                logger.warning("consumer lag: reading offsets failed, retrying: %s", exc)
            self._failing = True
        else:
            self._failing = False
