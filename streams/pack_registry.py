"""The agent packs a worker runs with: the config topic, read whole and followed live.

``CONFIG_PACKS`` is compacted and has one partition, so reading it from the beginning to its
end yields the newest record of every ``tenant:agent``. :class:`PackRegistry` does that
without a consumer group (every worker needs every pack, not a share of them) and keeps
following the topic, so a newly loaded version takes effect without a restart.

**The last valid record of a key wins**, as compaction will eventually make it: a running
worker then converges on what a freshly started one reads. A record that cannot be decoded,
whose hash or key does not match its pack, or whose pack fails ``check_pack`` is logged and
skipped, and the key's previous version stays active. A tombstone (a null value) retires the
key's pack, as compaction will.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from pydantic import ValidationError

from processors.pack import Severity, check_pack
from processors.pack.size import size_problems
from schemas.codec import CodecError, decode_as
from schemas.events.pack_published import PackPublished
from schemas.pack import AgentPack
from streams.kafka_backoff import wait_out_outage
from streams.kafka_clients import consumer_kwargs
from streams.settings import Settings
from streams.topics import CONFIG_PACKS, tenant_agent_key

logger = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 1000
RETRY_AFTER_S = 1.0
START_TIMEOUT_S = 60.0


class ConfigTopicMissingError(RuntimeError):
    """The config topic does not exist (the broker never auto-creates topics)."""


class RejectedRecordError(ValueError):
    """A config record that cannot become a pack; the message says why."""


@dataclass(frozen=True)
class PackSnapshot:
    """One loaded version of one agent's pack. The registry never changes a snapshot, it
    swaps in a new one: a turn takes its snapshot once (P1) and sees one version throughout,
    recording ``version``. Treat ``pack`` as read-only."""

    tenant: str
    agent: str
    version: int
    content_hash: str
    pack: AgentPack


class PackLookup(Protocol):
    """What the sinks need of the registry: the current pack of a tenant's agent."""

    def get(self, tenant: str, agent: str) -> PackSnapshot | None: ...


@dataclass(frozen=True)
class PackUpdate:
    """What an ``on_update`` callback gets: the version replaced (None for a new agent) and
    the one now active (None when a tombstone retired the agent)."""

    tenant: str
    agent: str
    previous: PackSnapshot | None
    current: PackSnapshot | None


UpdateCallback = Callable[[PackUpdate], Awaitable[None] | None]
"""Called, in topic order, after the new snapshot is active; may be sync or async. An async
callback holds back later updates until it returns: run long work (re-embedding) elsewhere."""


def snapshot_from_record(
    key: bytes | None, value: bytes, max_texts: int | None = None
) -> PackSnapshot:
    """The snapshot a ``PackPublished`` record carries; raises :class:`RejectedRecordError`
    when workers must not run it (``max_texts``: the operator's ``max_pack_texts``)."""
    try:
        record = decode_as(value, PackPublished)
    except CodecError as exc:
        raise RejectedRecordError(f"undecodable: {exc}") from None
    want_key = tenant_agent_key(record.tenant_id, record.agent_id)
    if key != want_key:
        raise RejectedRecordError(f"key {key!r} does not match its record ({want_key!r})")
    try:
        pack = AgentPack.model_validate_json(record.pack_json)
    except ValidationError as exc:
        raise RejectedRecordError(f"pack_json is not a valid pack: {exc}") from None
    if (pack.agent.tenant_id, pack.agent.agent_id) != (record.tenant_id, record.agent_id):
        raise RejectedRecordError(
            f"pack is for {pack.agent.tenant_id}:{pack.agent.agent_id}, "
            f"record for {record.tenant_id}:{record.agent_id}"
        )
    if pack.content_hash() != record.content_hash:
        raise RejectedRecordError("content_hash does not match the pack")
    problems = check_pack(pack) + ([] if max_texts is None else size_problems(pack, max_texts))
    errors = [str(p) for p in problems if p.severity is Severity.ERROR]
    if errors:
        raise RejectedRecordError("pack fails its checks: " + "; ".join(errors))
    return PackSnapshot(
        record.tenant_id, record.agent_id, record.version, record.content_hash, pack
    )


class ConfigTopicReader:
    """A group-less consumer on the config topic's only partition, from its beginning.

    Shared by the registry (which keeps reading) and ``pack load`` (which reads to the end
    once to find the latest version).
    """

    def __init__(self, settings: Settings) -> None:
        self.topic = CONFIG_PACKS.name(settings.topic_prefix)
        self.partition = TopicPartition(self.topic, 0)
        self._consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **consumer_kwargs(settings),
        )

    async def start(self) -> None:
        """Connect and seek to the beginning; raises :class:`ConfigTopicMissingError`."""
        try:
            await self._consumer.start()
            if self.topic not in await self._consumer.topics():
                raise ConfigTopicMissingError(
                    f"{self.topic} does not exist: run `turnstream topics create`"
                )
            self._consumer.assign([self.partition])
            await self._consumer.seek_to_beginning(self.partition)
        except BaseException:
            await self._consumer.stop()
            raise

    async def stop(self) -> None:
        await self._consumer.stop()

    async def end_offset(self) -> int:
        """The offset the next record will get: reading up to it reads the topic whole."""
        offsets: dict[TopicPartition, int] = await self._consumer.end_offsets([self.partition])
        return offsets[self.partition]

    async def position(self) -> int:
        position: int = await self._consumer.position(self.partition)
        return position

    async def batch(self) -> list[Any]:
        """The next records (``ConsumerRecord``), or none after a poll timeout."""
        batches = await self._consumer.getmany(self.partition, timeout_ms=POLL_TIMEOUT_MS)
        records: list[Any] = batches.get(self.partition, [])
        return records

    async def read_to(self, end: int) -> AsyncIterator[list[Any]]:
        """Batches until the position reaches ``end`` (see :meth:`end_offset`)."""
        while await self.position() < end:
            yield await self.batch()


class PackRegistry:
    """The latest valid pack per ``tenant:agent``, kept current from the config topic.

    ``await start()`` returns once every record present at start has been read, so a worker
    begins with all packs; afterwards a background task applies new records as they arrive.
    Use as ``async with PackRegistry(settings) as registry: ...``.
    """

    def __init__(self, settings: Settings, *, on_update: Iterable[UpdateCallback] = ()) -> None:
        self._settings = settings
        self._callbacks: list[UpdateCallback] = list(on_update)
        self._snapshots: dict[bytes, PackSnapshot] = {}
        self._changed = asyncio.Event()
        self._reader: ConfigTopicReader | None = None
        self._task: asyncio.Task[None] | None = None
        self.wait_out_outages = False
        """A worker's registry: :meth:`start` waits out a cluster that does not answer
        (``kafka_wait_s``, ``streams.kafka_backoff``) instead of failing at once."""

    def get(self, tenant: str, agent: str) -> PackSnapshot | None:
        """The active version of an agent's pack, or None if none was loaded."""
        return self._snapshots.get(tenant_agent_key(tenant, agent))

    def snapshots(self) -> list[PackSnapshot]:
        """Every active pack (what a worker indexes before it takes turns)."""
        return list(self._snapshots.values())

    def subscribe(self, callback: UpdateCallback) -> None:
        """Call ``callback`` on every later change of any agent's pack."""
        self._callbacks.append(callback)

    async def wait_for(
        self, tenant: str, agent: str, min_version: int = 1, timeout: float = 10.0
    ) -> PackSnapshot:
        """The agent's snapshot once its version is at least ``min_version``; raises
        ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                snapshot = self.get(tenant, agent)
                if snapshot is not None and snapshot.version >= min_version:
                    return snapshot
                await changed.wait()

    async def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Read the topic to its current end, then keep following it in the background."""
        if self._reader is not None:
            raise RuntimeError("PackRegistry already started")
        if self.wait_out_outages:
            await wait_out_outage(self._settings, "reading the packs", lambda: self._start(timeout))
        else:
            await self._start(timeout)

    async def _start(self, timeout: float) -> None:
        reader = ConfigTopicReader(self._settings)
        await reader.start()
        self._reader = reader
        try:
            async with asyncio.timeout(timeout):
                async for records in reader.read_to(await reader.end_offset()):
                    await self._apply_batch(records)
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._follow(reader), name=f"pack-registry {reader.topic}")
        logger.info("pack registry on %s: %d packs loaded", reader.topic, len(self._snapshots))

    async def stop(self) -> None:
        """Stop following the topic; the snapshots stay readable."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()

    async def __aenter__(self) -> PackRegistry:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _follow(self, reader: ConfigTopicReader) -> None:
        """Apply records forever. A failed poll is logged and retried: a registry that died
        quietly would leave its worker on old packs with nothing to show for it."""
        while True:
            try:
                records = await reader.batch()
            except KafkaError as exc:
                logger.warning("pack registry: reading %s failed, retrying: %s", reader.topic, exc)
            except Exception:
                logger.exception("pack registry: reading %s failed, retrying", reader.topic)
            else:
                await self._apply_batch(records)
                continue
            await asyncio.sleep(RETRY_AFTER_S)

    async def _apply_batch(self, records: list[Any]) -> None:
        """Apply the last valid record of each key in the batch: older ones in the same batch
        would be replaced at once, so they are neither validated nor announced."""
        latest: dict[bytes | None, PackSnapshot | None] = {}
        for record in reversed(records):
            if record.key in latest:
                continue
            where = f"{record.topic}@{record.offset} key={record.key!r}"
            if record.value is None:
                latest[record.key] = None
                continue
            try:
                latest[record.key] = snapshot_from_record(
                    record.key, record.value, self._settings.max_pack_texts
                )
            except RejectedRecordError as exc:
                logger.warning("pack registry: skipped %s: %s", where, exc)
            except Exception:
                logger.exception("pack registry: skipped %s: unexpected error", where)
        for key, snapshot in reversed(latest.items()):
            if key is not None:
                await self._apply(key, snapshot)

    async def _apply(self, key: bytes, current: PackSnapshot | None) -> None:
        previous = self._snapshots.get(key)
        if current is None:
            if previous is None:
                return
            del self._snapshots[key]
            logger.info("pack registry: %r retired (tombstone)", key)
            update = PackUpdate(previous.tenant, previous.agent, previous, None)
        else:
            if previous is not None and current.version <= previous.version:
                logger.warning(
                    "pack registry: %r version %d follows version %d (concurrent loads?)",
                    key,
                    current.version,
                    previous.version,
                )
            self._snapshots[key] = current
            logger.info(
                "pack registry: %r version %d active (%s)",
                key,
                current.version,
                current.content_hash[:12],
            )
            update = PackUpdate(current.tenant, current.agent, previous, current)
        self._changed.set()
        self._changed = asyncio.Event()
        for callback in list(self._callbacks):
            try:
                result = callback(update)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("pack registry: on_update callback %r failed", callback)
