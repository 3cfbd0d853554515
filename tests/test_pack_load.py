"""``pack load`` versions packs on the config topic; a running PackRegistry follows them.

The integration tests run the CLI in-process against the session's real broker, each on its
own topic prefix; the CLI reads its settings from the environment, as in production.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from processors.pack import PackValidationError
from schemas.codec import encode
from schemas.events.pack_published import PackPublished
from schemas.pack import AgentPack
from sinks.pack_files import load_pack
from streams.cli import main
from streams.kafka_clients import producer_kwargs
from streams.pack_publisher import publish_pack
from streams.pack_registry import (
    ConfigTopicReader,
    PackRegistry,
    PackUpdate,
    RejectedRecordError,
    snapshot_from_record,
)
from streams.settings import Settings, load_settings
from streams.topic_admin import ensure_topics
from streams.topics import CONFIG_PACKS, tenant_agent_key
from tests.test_pack_validate import BREAKAGES, EXAMPLE, copy_pack

TENANT, AGENT = "acme-shop", "support"
KEY = tenant_agent_key(TENANT, AGENT)
NEW_ACTION = "Apologise, then offer a call back within one working day."


@pytest.fixture
def settings(kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Topics of this test only (one partition each, to spare the shared broker), and the
    CLI pointed at them through the environment."""
    isolated = kafka_settings.model_copy(
        update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}", "partitions": 1}
    )
    monkeypatch.setenv("TURNSTREAM_KAFKA_BOOTSTRAP", isolated.bootstrap_servers)
    monkeypatch.setenv("TURNSTREAM_TOPIC_PREFIX", isolated.topic_prefix)
    monkeypatch.setenv("TURNSTREAM_PARTITIONS", "1")
    return isolated


async def load(pack_dir: Path) -> int:
    """``turnstream pack load``; the CLI runs its own event loop, so keep it off the test's."""
    return await asyncio.to_thread(main, ["pack", "load", str(pack_dir)])


async def config_end_offset(settings: Settings) -> int:
    """How many records the config topic has ever received."""
    reader = ConfigTopicReader(settings)
    await reader.start()
    try:
        return await reader.end_offset()
    finally:
        await reader.stop()


def edited_copy(root: Path) -> tuple[Path, str]:
    """A copy of the example pack with its first rule's action_text replaced; the rule id."""
    pack_dir = copy_pack(root)
    rules_file = pack_dir / "rules.yaml"
    data = yaml.safe_load(rules_file.read_text())
    rule = data["rules"][0]
    rule["action_text"] = NEW_ACTION
    rules_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return pack_dir, rule["id"]


def action_of(pack: AgentPack, rule_id: str) -> str:
    return next(rule.action_text for rule in pack.rules if rule.id == rule_id)


def with_agent_id(pack: AgentPack, agent_id: str) -> AgentPack:
    return pack.model_copy(update={"agent": pack.agent.model_copy(update={"agent_id": agent_id})})


def failing_checks(pack: AgentPack) -> AgentPack:
    """The pack with a relationship to a rule that does not exist: ``check_pack`` refuses it."""
    dangling = pack.relationships[0].model_copy(update={"target": "no_such_rule"})
    return pack.model_copy(update={"relationships": [*pack.relationships, dangling]})


def record_of(pack: AgentPack, version: int = 1, content_hash: str | None = None) -> bytes:
    return encode(
        PackPublished(
            tenant_id=pack.agent.tenant_id,
            agent_id=pack.agent.agent_id,
            version=version,
            content_hash=content_hash or pack.content_hash(),
            pack_json=pack.canonical_json(),
            published_at=datetime.now(UTC),
        )
    )


# -- records: what a worker accepts (no broker) ---------------------------------------------


def test_a_published_record_becomes_a_snapshot() -> None:
    pack = load_pack(EXAMPLE)
    snapshot = snapshot_from_record(KEY, record_of(pack, version=7))
    assert (snapshot.tenant, snapshot.agent, snapshot.version) == (TENANT, AGENT, 7)
    assert snapshot.content_hash == pack.content_hash()
    assert snapshot.pack.canonical_json() == pack.canonical_json()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (KEY, b"not avro at all", "undecodable"),
        (KEY, record_of(failing_checks(load_pack(EXAMPLE))), "unknown_rule"),
        (KEY, record_of(load_pack(EXAMPLE), content_hash="0" * 64), "content_hash"),
        (b"acme-shop:other", record_of(load_pack(EXAMPLE)), "does not match its record"),
        (None, record_of(load_pack(EXAMPLE)), "does not match its record"),
    ],
    ids=["garbage", "failing-checks", "wrong-hash", "wrong-key", "no-key"],
)
def test_a_record_workers_must_not_run_is_rejected_with_its_reason(
    key: bytes | None, value: bytes, reason: str
) -> None:
    with pytest.raises(RejectedRecordError, match=reason):
        snapshot_from_record(key, value)


async def test_wait_for_times_out_when_the_version_never_comes() -> None:
    registry = PackRegistry(load_settings())
    with pytest.raises(TimeoutError):
        await registry.wait_for(TENANT, AGENT, min_version=1, timeout=0.05)


# -- load and follow, on the real broker ----------------------------------------------------


@pytest.mark.integration
async def test_load_versions_a_pack_and_a_running_registry_follows_it(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await ensure_topics(settings)
    updates: list[PackUpdate] = []
    async with PackRegistry(settings, on_update=[updates.append]) as registry:
        assert registry.get(TENANT, AGENT) is None

        assert await load(EXAMPLE) == 0
        out = capsys.readouterr().out
        assert f"tenant {TENANT}, agent {AGENT}: version 1 published to " in out
        assert f"{len(load_pack(EXAMPLE).rules)} rules" in out  # the counts
        first = await registry.wait_for(TENANT, AGENT, min_version=1)
        assert first.version == 1
        assert f"content hash {first.content_hash}" in out

        assert await load(EXAMPLE) == 0
        assert "unchanged, still version 1; nothing published" in capsys.readouterr().out
        assert await config_end_offset(settings) == 1

        changed_dir, rule_id = edited_copy(tmp_path)
        assert await load(changed_dir) == 0
        assert "version 2 published" in capsys.readouterr().out
        second = await registry.wait_for(TENANT, AGENT, min_version=2)
        assert registry.get(TENANT, AGENT) is second
        assert action_of(second.pack, rule_id) == NEW_ACTION
        assert action_of(first.pack, rule_id) != NEW_ACTION  # a turn's snapshot never changes
        assert first.version == 1

    assert [(u.previous, u.current) for u in updates] == [(None, first), (first, second)]
    assert registry.get(TENANT, AGENT) is second  # still readable after stop


@pytest.mark.integration
async def test_an_invalid_pack_is_refused_with_every_error_and_nothing_is_published(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await ensure_topics(settings)
    broken = copy_pack(tmp_path)
    for breakage in BREAKAGES:
        breakage.apply(broken)

    assert await load(broken) == 1
    out = capsys.readouterr().out.splitlines()
    for breakage in BREAKAGES:
        assert any(
            line.startswith(f"{broken / breakage.file}:") and breakage.code in line for line in out
        ), breakage.name
    assert out[-1] == f"{broken}: not loaded, nothing published"

    with pytest.raises(PackValidationError, match="unknown_rule"):
        await publish_pack(settings, failing_checks(load_pack(EXAMPLE)))
    assert await config_end_offset(settings) == 0


@pytest.mark.integration
async def test_the_registry_skips_bad_records_and_keeps_serving(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert await load(EXAMPLE) == 0  # on a fresh prefix: creates the topics first
    pack = load_pack(EXAMPLE)
    other = with_agent_id(pack, "sales")
    topic = CONFIG_PACKS.name(settings.topic_prefix)
    caplog.set_level(logging.WARNING, logger="streams.pack_registry")

    def broken_subscriber(update: PackUpdate) -> None:
        raise RuntimeError("an on_update callback that fails")

    async with PackRegistry(settings) as registry:
        first = registry.get(TENANT, AGENT)  # start() returns once the topic is read
        assert first is not None
        assert first.version == 1
        registry.subscribe(broken_subscriber)

        producer = AIOKafkaProducer(**producer_kwargs(settings))
        await producer.start()
        try:
            for key, value in [
                (KEY, b"not avro at all"),
                (KEY, record_of(failing_checks(pack), version=2)),
                (KEY, record_of(pack, version=2, content_hash="0" * 64)),
                (b"acme-shop:other", record_of(pack, version=2)),
            ]:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()
        await publish_pack(settings, other)  # a valid record after the bad ones
        await registry.wait_for(TENANT, "sales", min_version=1)

        assert registry.get(TENANT, AGENT) is first
        logged = caplog.text
        for reason in ("undecodable", "unknown_rule", "content_hash", "does not match its record"):
            assert reason in logged

        # Versions never repeat one already on the topic, even one that workers refused.
        changed_dir, rule_id = edited_copy(tmp_path)
        assert (await publish_pack(settings, load_pack(changed_dir))).version == 3
        latest = await registry.wait_for(TENANT, AGENT, min_version=3)
        assert action_of(latest.pack, rule_id) == NEW_ACTION

    async with PackRegistry(settings) as restarted:  # a new worker reads the same state
        assert restarted.get(TENANT, AGENT) == latest
        sales = restarted.get(TENANT, "sales")
        assert sales is not None
        assert sales.version == 1


@pytest.mark.integration
async def test_a_tombstone_retires_an_agent(settings: Settings) -> None:
    await publish_pack(settings, load_pack(EXAMPLE))
    updates: list[PackUpdate] = []
    async with PackRegistry(settings, on_update=[updates.append]) as registry:
        first = registry.get(TENANT, AGENT)
        producer = AIOKafkaProducer(**producer_kwargs(settings))
        await producer.start()
        try:
            await producer.send_and_wait(CONFIG_PACKS.name(settings.topic_prefix), None, key=KEY)
        finally:
            await producer.stop()
        async with asyncio.timeout(10):
            while registry.get(TENANT, AGENT) is not None:
                await asyncio.sleep(0.05)
    assert [(u.previous, u.current) for u in updates] == [(None, first), (first, None)]
