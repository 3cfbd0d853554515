"""Agent packs on the compacted config topic: publishing a new version, and reading them all.

The config topic has one partition and is keyed ``tenant:agent``, so reading it from the
beginning to its end offset yields every pack's newest version; versions are assigned here,
monotonic per tenant:agent. A record that fails to decode or whose pack fails the checks is
logged and skipped: the previous version of that pack stays in force.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processors.pack import Severity, check_pack
from schemas.codec import CodecError, decode_as, encode
from schemas.events.pack_published import PackPublished
from schemas.pack import AgentPack
from streams.kafka_clients import consumer_kwargs, producer_kwargs
from streams.settings import Settings
from streams.topics import CONFIG_PACKS, tenant_agent_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackSnapshot:
    """One immutable version of one agent's pack: a turn takes it once, at P1, and records
    ``version`` in its TurnRecord, so a reload mid-turn never mixes two versions."""

    tenant_id: str
    agent_id: str
    version: int
    content_hash: str
    pack: AgentPack


class PackRejected(ValueError):
    """A config record that is not a usable pack (bad bytes, bad JSON, failed checks)."""


def snapshot_of(event: PackPublished) -> PackSnapshot:
    """Rebuild and re-check a published pack; a worker never trusts the publisher blindly."""
    try:
        pack = AgentPack.model_validate_json(event.pack_json)
    except ValueError as exc:
        raise PackRejected(f"pack JSON does not match the pack schema: {exc}") from None
    errors = [err for err in check_pack(pack) if err.severity is Severity.ERROR]
    if errors:
        raise PackRejected("; ".join(str(err) for err in errors[:5]))
    if pack.content_hash() != event.content_hash:
        raise PackRejected("content hash does not match the pack")
    if (pack.agent.tenant_id, pack.agent.agent_id) != (event.tenant_id, event.agent_id):
        raise PackRejected("tenant/agent of the record and of the pack differ")
    return PackSnapshot(event.tenant_id, event.agent_id, event.version, event.content_hash, pack)


def decode_record(value: bytes | None, offset: int) -> PackSnapshot | None:
    """A snapshot, or None (logged) for a record that must be skipped."""
    if value is None:
        return None
    try:
        return snapshot_of(decode_as(value, PackPublished))
    except (CodecError, PackRejected) as exc:
        log.warning("config record at offset %d skipped: %s", offset, exc)
        return None


def config_partition(settings: Settings) -> TopicPartition:
    return TopicPartition(CONFIG_PACKS.name(settings.topic_prefix), 0)


async def config_records(
    consumer: AIOKafkaConsumer, partition: TopicPartition, *, until_end: bool
) -> AsyncIterator[PackSnapshot]:
    """Valid snapshots from the start of the topic; stop at the end offset if ``until_end``."""
    await consumer.seek_to_beginning(partition)
    end = (await consumer.end_offsets([partition]))[partition] if until_end else None
    while end is None or await consumer.position(partition) < end:
        batch = await consumer.getmany(partition, timeout_ms=1000)
        for record in batch.get(partition, []):
            snapshot = decode_record(record.value, record.offset)
            if snapshot is not None:
                yield snapshot


async def read_latest(settings: Settings) -> dict[tuple[str, str], PackSnapshot]:
    """Every pack's newest valid version, read from the config topic to its end."""
    partition = config_partition(settings)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **consumer_kwargs(settings))
    await consumer.start()
    try:
        consumer.assign([partition])
        latest: dict[tuple[str, str], PackSnapshot] = {}
        async for snapshot in config_records(consumer, partition, until_end=True):
            latest[(snapshot.tenant_id, snapshot.agent_id)] = snapshot
        return latest
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class PublishResult:
    tenant_id: str
    agent_id: str
    version: int
    content_hash: str
    published: bool  # False: the newest version already has this content


async def publish_pack(settings: Settings, pack: AgentPack) -> PublishResult:
    """Publish ``pack`` as the next version of its tenant:agent, unless it is unchanged.

    Versions come from reading the topic, so two concurrent publishers of the same agent can
    pick the same number; run `pack load` from one place (a deploy job) per agent.
    """
    tenant, agent = pack.agent.tenant_id, pack.agent.agent_id
    content_hash = pack.content_hash()
    current = (await read_latest(settings)).get((tenant, agent))
    if current is not None and current.content_hash == content_hash:
        return PublishResult(tenant, agent, current.version, content_hash, published=False)
    version = 1 if current is None else current.version + 1
    event = PackPublished(
        tenant_id=tenant,
        agent_id=agent,
        version=version,
        content_hash=content_hash,
        pack_json=pack.canonical_json(),
        published_at=datetime.now(UTC),
    )
    producer = AIOKafkaProducer(
        max_request_size=16 * 1024 * 1024, compression_type="gzip", **producer_kwargs(settings)
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            CONFIG_PACKS.name(settings.topic_prefix),
            encode(event),
            key=tenant_agent_key(tenant, agent),
            partition=0,
        )
    finally:
        await producer.stop()
    return PublishResult(tenant, agent, version, content_hash, published=True)
