"""``turnstream sql`` answers while ``turnstream worker`` runs on the same embedded
ClickHouse data: the turns the worker just answered are there, each once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from sinks.analytics.query_server import Endpoint
from streams.settings import Settings
from streams.turn_client import TurnClient
from tests.pipeline_support import (
    WorkerProcess,
    customer_says,
    pipeline_settings,
    prepare,
    settings_env,
)
from tests.test_analytics_cli import count_turns, free_port, run_cli

pytestmark = pytest.mark.integration

TURNS = 6


@pytest.mark.timeout(400)
async def test_sql_reads_the_turns_a_running_worker_writes(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    base = pipeline_settings(kafka_settings, tmp_path / "data")
    port = free_port()
    settings = base.model_copy(
        update={
            "analytics": base.analytics.model_copy(
                update={"enabled": True, "query_port": port, "flush_interval_s": 0.2}
            )
        }
    )
    await prepare(settings)
    env = settings_env(settings)
    env["TURNSTREAM_ANALYTICS__FLUSH_INTERVAL_S"] = "0.2"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        endpoint = Endpoint(port)
        async with asyncio.timeout(180):
            while await asyncio.to_thread(endpoint.health) is None:
                await asyncio.sleep(0.5)
        async with TurnClient(settings) as client:
            who = f"sql-{uuid.uuid4().hex[:6]}"
            for n in range(TURNS):
                await client.ask(customer_says(who, f"where is my order A-10024? ({n})"), 180)
        async with asyncio.timeout(120):
            while await count_turns(env) != TURNS:
                await asyncio.sleep(0.5)
        rc, out, err = await run_cli(env, "report", "--tenant", "acme-shop")
        assert rc == 0, err
        assert "Phase latency" in out and "acme-shop" in out
    finally:
        worker.stop()
