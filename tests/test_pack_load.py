"""`pack load` versions packs on the config topic; a running registry follows them."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from processors.pack import load_pack
from streams.cli import main
from streams.kafka_clients import producer_kwargs
from streams.pack_config import publish_pack, read_latest
from streams.pack_registry import PackRegistry
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.topics import CONFIG_PACKS

EXAMPLE = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
TENANT, AGENT = "acme-shop", "support"

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Own topics per test, and the CLI pointed at them through the environment."""
    isolated = kafka_settings.model_copy(
        update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}", "partitions": 2}
    )
    monkeypatch.setenv("TURNSTREAM_KAFKA_BOOTSTRAP", isolated.bootstrap_servers)
    monkeypatch.setenv("TURNSTREAM_TOPIC_PREFIX", isolated.topic_prefix)
    monkeypatch.setenv("TURNSTREAM_PARTITIONS", "2")
    await ensure_topics(isolated)
    return isolated


def _edited_copy(tmp_path: Path, new_action: str) -> Path:
    """A copy of the example pack with the first one-line rule action_text replaced."""
    copy = tmp_path / "acme-shop" / "support"
    shutil.copytree(EXAMPLE, copy)
    rules = copy / "rules.yaml"
    edited, count = re.subn(
        r"(\n    action_text: )(?![>|])[^\n]*", rf"\g<1>{new_action}", rules.read_text(), count=1
    )
    assert count == 1
    rules.write_text(edited)
    return copy


async def test_running_registry_picks_up_a_new_version_without_restart(
    settings: Settings, tmp_path: Path
) -> None:
    registry = PackRegistry(settings)
    await registry.start()
    try:
        assert await main_async(["pack", "load", str(EXAMPLE)]) == 0
        first = await registry.wait_for(TENANT, AGENT, min_version=1)
        assert first.version == 1

        assert await main_async(["pack", "load", str(EXAMPLE)]) == 0
        assert (await read_latest(settings))[(TENANT, AGENT)].version == 1

        new_action = "Apologise, then offer a call back."
        changed_dir = _edited_copy(tmp_path, f'"{new_action}"')
        assert await main_async(["pack", "load", str(changed_dir)]) == 0
        second = await registry.wait_for(TENANT, AGENT, min_version=2)
        assert second.version == 2
        assert new_action in {rule.action_text for rule in second.pack.rules}
        assert new_action not in {rule.action_text for rule in first.pack.rules}
        assert registry.get(TENANT, AGENT) is second
    finally:
        await registry.stop()


async def test_invalid_pack_is_refused_and_nothing_is_published(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "acme-shop" / "support"
    shutil.copytree(EXAMPLE, broken)
    (broken / "rules.yaml").write_text("rules:\n  - id: [unclosed\n")
    assert await main_async(["pack", "load", str(broken)]) == 1
    assert "not published" in capsys.readouterr().out
    assert await read_latest(settings) == {}


async def test_registry_skips_a_garbage_record_and_keeps_serving(settings: Settings) -> None:
    good = await publish_pack(settings, load_pack(EXAMPLE))
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        await producer.send_and_wait(
            CONFIG_PACKS.name(settings.topic_prefix), b"\xc3\x01garbage", key=b"acme-shop:support"
        )
    finally:
        await producer.stop()
    registry = PackRegistry(settings)
    await registry.start()
    try:
        snapshot = await registry.wait_for(TENANT, AGENT, min_version=good.version)
        assert snapshot.content_hash == good.content_hash
    finally:
        await registry.stop()
    assert (await read_latest(settings))[(TENANT, AGENT)].version == good.version


async def main_async(argv: list[str]) -> int:
    """The CLI runs its own event loop (asyncio.run); keep it off the test's loop."""
    return await asyncio.to_thread(main, argv)
