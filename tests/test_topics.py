"""The topic catalog, and `topics create` against the real broker."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.topics import (
    ALL_TOPICS,
    CONFIG_PACKS,
    TURN_REQUESTED,
    Cleanup,
    KeyKind,
    session_key,
)


def test_every_topic_name_is_unique() -> None:
    suffixes = [spec.suffix for spec in ALL_TOPICS]
    assert len(suffixes) == len(set(suffixes))


def test_per_turn_topics_share_the_session_key_for_co_partitioning() -> None:
    per_turn = [spec for spec in ALL_TOPICS if spec.suffix.startswith(("turn.", "retrieval."))]
    assert per_turn
    assert {spec.key for spec in per_turn} == {KeyKind.SESSION}


def test_config_and_changelog_topics_are_compacted_and_kept() -> None:
    compacted = [spec for spec in ALL_TOPICS if spec.cleanup is Cleanup.COMPACT]
    assert CONFIG_PACKS in compacted
    assert all(spec.retention_ms is None for spec in compacted)
    assert CONFIG_PACKS.config() == {"cleanup.policy": "compact"}


def test_session_key_is_tenant_channel_and_channel_id() -> None:
    assert session_key("acme", "webchat", "c-42") == b"acme:webchat:c-42"


def _isolated(settings: Settings) -> Settings:
    return settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}", "partitions": 3})


@pytest.mark.integration
async def test_topics_create_is_idempotent(kafka_settings: Settings) -> None:
    settings = _isolated(kafka_settings)
    first = await ensure_topics(settings)
    assert sorted(first.created) == sorted(spec.name(settings.topic_prefix) for spec in ALL_TOPICS)
    second = await ensure_topics(settings)
    assert second.created == []
    assert second.mismatches == []
    assert len(second.unchanged) == len(ALL_TOPICS)


@pytest.mark.integration
async def test_topics_create_reports_an_existing_topic_that_differs(
    kafka_settings: Settings,
) -> None:
    settings = _isolated(kafka_settings)
    wrong = TURN_REQUESTED.name(settings.topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(wrong, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    report = await ensure_topics(settings)
    assert not report.ok
    assert wrong not in report.created
    assert any(f"{wrong}: 1 partitions, catalog says 3" in line for line in report.mismatches)
    assert any(f"{wrong}: cleanup.policy=compact" in line for line in report.mismatches)
