"""Publish an agent pack as the next version of its ``tenant:agent`` on the config topic.

The version is the latest one on the topic plus one: the topic is compacted and has one
partition, so reading it to its end finds the latest record of every key. Kafka has no
compare-and-set, so two loads of the same agent at the same moment can pick the same
version; run ``pack load`` for an agent from one place (a deploy job). The registry then
keeps the later record, as compaction will, and logs the clash.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from processors.pack import PackValidationError, Severity, check_pack
from processors.pack.size import size_problems
from schemas.codec import CodecError, decode_as, encode
from schemas.events.pack_published import PackPublished
from schemas.fields import MAX_PACK_JSON_CHARS
from schemas.pack import AgentPack
from streams.kafka_clients import producer_kwargs
from streams.pack_registry import ConfigTopicMissingError, ConfigTopicReader
from streams.settings import Settings
from streams.topic_admin import TopicAdminError, ensure_topics
from streams.topics import CONFIG_PACKS, tenant_agent_key

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 30.0

MAX_RECORD_BYTES = 4 * MAX_PACK_JSON_CHARS + 64 * 1024
"""aiokafka checks a record's size before compression, so let the largest pack (UTF-8, up to
4 bytes a character) through; the broker then limits the gzipped batch (``message.max.bytes``,
1 MiB by default), which pack JSON, repetitive text, rarely approaches."""


class PublishError(RuntimeError):
    """The pack could not be published (broker unreachable, config topic wrong, ...)."""


@dataclass(frozen=True)
class PublishResult:
    """The agent's latest version after the call; ``published`` is False when the pack
    equalled it and nothing was written."""

    tenant: str
    agent: str
    version: int
    content_hash: str
    published: bool
    topic: str


async def latest_published(settings: Settings, tenant: str, agent: str) -> PackPublished | None:
    """The agent's latest record on the config topic, read to its end; None if it has none
    (or a tombstone retired it). Undecodable records are logged and skipped."""
    key = tenant_agent_key(tenant, agent)
    latest: PackPublished | None = None
    reader = ConfigTopicReader(settings)
    await reader.start()
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            async for records in reader.read_to(await reader.end_offset()):
                for record in records:
                    if record.key != key:
                        continue
                    if record.value is None:
                        latest = None
                        continue
                    try:
                        latest = decode_as(record.value, PackPublished)
                    except CodecError as exc:
                        logger.warning("skipped %s@%d: %s", reader.topic, record.offset, exc)
    except TimeoutError:
        raise TimeoutError(f"{reader.topic} not read to its end in {READ_TIMEOUT_S:g} s") from None
    finally:
        await reader.stop()
    return latest


async def publish_pack(settings: Settings, pack: AgentPack) -> PublishResult:
    """Publish ``pack`` as version latest + 1 unless its content equals the latest.

    Creates missing catalog topics first. Raises :class:`PackValidationError` for a pack
    that workers would reject (its checks, or more texts than ``settings.max_pack_texts``),
    :class:`PublishError` for any broker-side failure.
    """
    problems = check_pack(pack) + size_problems(pack, settings.max_pack_texts)
    if any(problem.severity is Severity.ERROR for problem in problems):
        raise PackValidationError(problems)
    tenant, agent = pack.agent.tenant_id, pack.agent.agent_id
    topic = CONFIG_PACKS.name(settings.topic_prefix)
    content_hash = pack.content_hash()
    try:
        await _ensure_config_topic(settings, topic)
        latest = await latest_published(settings, tenant, agent)
        if latest is not None and latest.content_hash == content_hash:
            return PublishResult(
                tenant, agent, latest.version, content_hash, published=False, topic=topic
            )
        version = 1 if latest is None else latest.version + 1
        event = PackPublished(
            tenant_id=tenant,
            agent_id=agent,
            version=version,
            content_hash=content_hash,
            pack_json=pack.canonical_json(),
            published_at=datetime.now(UTC),
        )
        producer = AIOKafkaProducer(
            compression_type="gzip", max_request_size=MAX_RECORD_BYTES, **producer_kwargs(settings)
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, encode(event), key=tenant_agent_key(tenant, agent))
        finally:
            await producer.stop()
    except (KafkaError, TopicAdminError, ConfigTopicMissingError, TimeoutError) as exc:
        raise PublishError(str(exc) or type(exc).__name__) from exc
    logger.info("published %s:%s version %d to %s", tenant, agent, version, topic)
    return PublishResult(tenant, agent, version, content_hash, published=True, topic=topic)


async def _ensure_config_topic(settings: Settings, topic: str) -> None:
    """Create missing topics; refuse a config topic that differs from the catalog (one that
    is not compacted would lose packs once its retention passes)."""
    report = await ensure_topics(settings)
    wrong = [line for line in report.mismatches if line.startswith(f"{topic}:")]
    if wrong:
        raise PublishError("; ".join(wrong))
