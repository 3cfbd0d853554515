"""``turnstream sql`` and ``report`` while another process owns the embedded data.

The owner is ``python -m streams.analytics_services`` (what ``turnstream worker`` runs for
analytics), on its own data dir; the CLI runs as separate processes, as an analyst would run
it: through the owner's endpoint while it runs, on the data dir itself once it has stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import pytest

from sinks.analytics.query_server import Endpoint
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from tests.test_analytics_helpers import publish_completed, varied_turns

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
TURNS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", *args,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def count_turns(env: dict[str, str]) -> int | None:
    rc, out, _ = await run_cli(
        env, "sql", "SELECT count() AS n FROM turns FINAL", "--format", "json"
    )
    return int(json.loads(out)[0]["n"]) if rc == 0 else None


async def test_sql_and_report_while_the_owner_runs_and_after(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(
        update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}", "partitions": 1}
    )
    await ensure_topics(settings)
    port = free_port()
    env = {
        **os.environ,
        "TURNSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "TURNSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "TURNSTREAM_PARTITIONS": "1",
        "TURNSTREAM_DATA_DIR": str(tmp_path),
        "TURNSTREAM_ANALYTICS__QUERY_PORT": str(port),
        "TURNSTREAM_ANALYTICS__FLUSH_INTERVAL_S": "0.2",
        "TURNSTREAM_WEBHOOKS__ENABLED": "false",
    }
    env.pop("TURNSTREAM_CONFIG", None)
    log = (tmp_path / "owner.log").open("wb")
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.analytics_services",
        env=env, cwd=ROOT, stdout=log, stderr=log,
    )  # fmt: skip
    endpoint = Endpoint(port)
    try:
        async with asyncio.timeout(120):
            while await asyncio.to_thread(endpoint.health) is None:
                assert owner.returncode is None, (tmp_path / "owner.log").read_text()
                await asyncio.sleep(0.2)

        await publish_completed(settings, varied_turns(TURNS, tenant="acme", prefix="cli"))

        async with asyncio.timeout(120):
            while await count_turns(env) != TURNS:
                await asyncio.sleep(0.3)

        rc, out, err = await run_cli(env, "sql", "DROP TABLE turns")
        assert rc == 1 and "refused" in err
        rc, out, err = await run_cli(env, "report", "--tenant", "acme")
        assert rc == 0, err
        assert "Phase latency" in out and "[v_tool_stats]" in out
        assert "acme" in out and "(no rows)" in out  # no webhook deliveries yet
        rc, out, _ = await run_cli(env, "sql", "SELECT tool, calls FROM v_tool_stats")
        assert rc == 0 and "lookup" in out and "(1 row)" in out
    finally:
        if owner.returncode is None:
            owner.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(owner.wait(), timeout=60)
        log.close()
    assert code == 0, (tmp_path / "owner.log").read_text()

    # the owner is gone: the CLI opens the data dir itself and finds the same rows
    assert await asyncio.to_thread(endpoint.health) is None
    assert await count_turns(env) == TURNS
