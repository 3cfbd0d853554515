"""Helpers for the pipeline's integration tests: a worker on the session's broker, in this
process or in a subprocess, under a topic prefix of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from processors.pack import load_pack
from schemas.domain.turn_input import Channel, TurnInput
from streams import worker_process
from streams.pack_publisher import publish_pack
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.worker import Worker
from streams.worker_process import worker_env

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PACK = REPO / "packs" / "acme-shop" / "support"
TENANT, AGENT = "acme-shop", "support"


def pipeline_settings(base: Settings, data_dir: Path, **overrides: Any) -> Settings:
    """The session broker's settings with a fresh topic prefix and data dir."""
    values: dict[str, Any] = {
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}",
        "data_dir": data_dir,
        "packs_dir": REPO / "packs",
        "partitions": 4,
        "analytics": base.analytics.model_copy(update={"enabled": False, "query_port": 0}),
        "webhooks": base.webhooks.model_copy(update={"enabled": False}),
        "ops": base.ops.model_copy(update={"port": 0}),  # tests that want it pick a port
    }
    values.update(overrides)
    return base.model_copy(update=values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess the same settings (and no other
    ``TURNSTREAM_*`` variable of the test run)."""
    return worker_env(settings, inherit=False)


async def prepare(settings: Settings, pack_dir: Path = EXAMPLE_PACK) -> None:
    """Topics of the prefix, and the example pack published."""
    await ensure_topics(settings)
    await publish_pack(settings, load_pack(pack_dir))


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    worker = Worker(settings)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


class WorkerProcess(worker_process.WorkerProcess):
    """``turnstream worker`` as a child process (for SIGKILL tests), with the test's settings
    only, logging at INFO: a turn that stalls leaves its trail (rebalances, recoveries,
    turns driven again) in the log the test keeps."""

    def __init__(self, settings: Settings, log: Path) -> None:
        super().__init__(settings, log, inherit=False, log_level="INFO")


def customer_says(channel_id: str, message: str, customer_id: str | None = None) -> TurnInput:
    return TurnInput(
        tenant_id=TENANT,
        agent_id=AGENT,
        channel=Channel.WEBCHAT,
        channel_id=channel_id,
        customer_id=customer_id,
        message=message,
    )


async def settle(seconds: float) -> None:
    """Give late duplicates a chance to show up before counting."""
    await asyncio.sleep(seconds)
