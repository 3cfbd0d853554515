"""An expected failure of a ``turnstream`` command is one line on stderr, with a hint, and a
non-zero exit status; the traceback only with ``--debug``.

Each command runs as a user runs it, in a subprocess, with nothing of this test run's
``TURNSTREAM_*`` environment: Kafka and ClickHouse at free loopback ports where nothing
listens.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streams.local_kafka import free_ports
from streams.settings import Settings
from tests.pipeline_support import pipeline_settings, running_worker, settings_env

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PACK = REPO / "packs" / "acme-shop" / "support"


def turnstream(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TURNSTREAM_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=clean,
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def failure_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line of an expected failure, after checking its form."""
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("turnstream: ") and "; hint: " in line, line
    return line


@pytest.fixture(scope="module")
def kafka_down() -> dict[str, str]:
    (port,) = free_ports(1)
    return {"TURNSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}


@pytest.fixture(scope="module")
def clickhouse_down() -> dict[str, str]:
    (port,) = free_ports(1)
    return {"TURNSTREAM_CLICKHOUSE_URL": f"http://reader:s3cret@127.0.0.1:{port}/"}


def test_topics_create_with_the_broker_down(kafka_down: dict[str, str]) -> None:
    line = failure_line(turnstream("topics", "create", env=kafka_down))
    assert f"Kafka at {kafka_down['TURNSTREAM_KAFKA_BOOTSTRAP']} does not answer" in line
    assert "turnstream kafka up" in line


def test_send_with_the_broker_down(kafka_down: dict[str, str]) -> None:
    done = turnstream(
        "send", "hello", "--tenant", "t", "--agent", "a", "--channel-id", "c1", env=kafka_down
    )
    line = failure_line(done)
    assert "does not answer" in line and "TURNSTREAM_KAFKA_BOOTSTRAP" in line
    assert "Unclosed" not in done.stderr


def test_pack_load_with_the_broker_down(kafka_down: dict[str, str]) -> None:
    done = turnstream("pack", "load", str(EXAMPLE_PACK), env=kafka_down)
    assert "does not answer" in failure_line(done)
    assert "not loaded, nothing published" in done.stdout


@pytest.mark.parametrize("command", [["sql", "SELECT 1"], ["report"]])
def test_analytics_with_clickhouse_unreachable(
    command: list[str], clickhouse_down: dict[str, str]
) -> None:
    line = failure_line(turnstream(*command, env=clickhouse_down))
    assert "ClickHouse at http://127.0.0.1:" in line and "Connection refused" in line
    assert "s3cret" not in line, "the URL's credentials are never printed"
    assert "TURNSTREAM_CLICKHOUSE_URL" in line


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_send_to_an_agent_without_a_pack(kafka_settings: Settings, tmp_path: Path) -> None:
    """A real worker answers a turn for an agent it has no pack for: the CLI says so."""
    settings = pipeline_settings(kafka_settings, tmp_path)
    send = ("send", "hi", "--tenant", "acme-shop", "--agent", "nope", "--channel-id", "c1")
    async with running_worker(settings):
        done = await asyncio.to_thread(turnstream, *send, env=settings_env(settings))
    line = failure_line(done)
    assert "unknown agent" in line and "acme-shop/nope" in line
    assert "turnstream pack load" in line


def test_invalid_settings_name_the_variable() -> None:
    done = turnstream("topics", "list", env={"TURNSTREAM_PARTITIONS": "many"})
    line = failure_line(done)
    assert done.returncode == 2
    assert "TURNSTREAM_PARTITIONS" in line and "'many'" in line


def test_demo_with_an_invalid_example_pack_fails_before_any_broker(tmp_path: Path) -> None:
    packs = tmp_path / "packs"
    shutil.copytree(EXAMPLE_PACK, packs / "acme-shop" / "support")
    agent = packs / "acme-shop" / "support" / "agent.yaml"
    agent.write_text(agent.read_text() + "\nnot_a_field: 1\n")
    done = turnstream(
        "demo",
        env={"TURNSTREAM_PACKS_DIR": str(packs), "TURNSTREAM_DATA_DIR": str(tmp_path / "data")},
        cwd=tmp_path,
    )
    line = failure_line(done)
    assert "invalid agent pack" in line and "turnstream pack validate" in line
    assert not (tmp_path / "data" / "kafka").exists(), "a broker was started for a bad pack"


def test_debug_shows_the_traceback_and_still_the_line(kafka_down: dict[str, str]) -> None:
    done = turnstream("--debug", "topics", "create", env=kafka_down)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "KafkaConnectionError" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("turnstream: Kafka at ")


def test_version() -> None:
    done = turnstream("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("turnstream ") and done.stdout.split()[1][0].isdigit()
