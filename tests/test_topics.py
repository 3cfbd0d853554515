"""The topic catalog, and `topics create` against the real broker."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.settings import Settings
from streams.topic_admin import (
    TopicReport,
    ensure_topics,
    under_replicated,
    wanted_replication,
)
from streams.topics import (
    ALL_TOPICS,
    CONFIG_PACKS,
    TURN_REQUESTED,
    Cleanup,
    KeyKind,
    session_key,
)
from tests.pipeline_support import settings_env
from tests.test_analytics_cli import run_cli


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


def test_a_topic_below_the_catalogs_or_the_clusters_replication_is_under_replicated() -> None:
    assert wanted_replication(1, 1) == 1  # one broker: one replica is all there can be
    assert wanted_replication(1, 3) == 3  # grown to 3 brokers, TURNSTREAM_REPLICATION_FACTOR unset
    assert wanted_replication(1, 5) == 3  # RF 3 on a larger cluster is enough
    assert wanted_replication(2, 1) == 2  # the catalog asks for more than the brokers hold
    replicas = {"t.b": 1, "t.a": 1, "t.c": 3}
    assert under_replicated(replicas, 1, 3) == {"t.a": 1, "t.b": 1}
    assert under_replicated(replicas, 1, 1) == {}
    assert under_replicated(replicas, 3, 3) == {"t.a": 1, "t.b": 1}


def test_the_replication_warning_is_one_line_naming_the_topics_and_both_numbers() -> None:
    assert TopicReport(replication_factor=1, brokers=3).replication_warning is None
    report = TopicReport(under_replicated={"t.a": 1, "t.b": 2}, replication_factor=1, brokers=3)
    line = report.replication_warning
    assert line is not None and "\n" not in line
    assert "t.a (RF 1), t.b (RF 2)" in line
    assert "TURNSTREAM_REPLICATION_FACTOR=1" in line and "3 broker(s)" in line
    assert report.ok  # a warning, not a mismatch: `topics create` still exits 0


@pytest.mark.integration
async def test_topics_below_the_catalogs_replication_are_named_by_topics_create(
    kafka_settings: Settings,
) -> None:
    settings = _isolated(kafka_settings)
    created = await ensure_topics(settings)  # at RF 1 on the one test broker: as wanted
    assert created.under_replicated == {} and created.replication_warning is None
    assert created.brokers == 1
    raised = settings.model_copy(update={"replication_factor": 2})
    report = await ensure_topics(raised)
    names = sorted(spec.name(settings.topic_prefix) for spec in ALL_TOPICS)
    assert report.under_replicated == dict.fromkeys(names, 1)
    assert report.ok and report.created == []

    rc, out, err = await run_cli(settings_env(raised), "topics", "create")
    assert rc == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "Traceback" not in out + err
    assert f"{names[0]} (RF 1)" in warnings[0]
    assert "TURNSTREAM_REPLICATION_FACTOR=2, 1 broker(s)" in warnings[0]
