"""Helpers for the pipeline's integration tests: a worker on the session's broker, in this
process or in a subprocess, under a topic prefix of its own. The set-up is the benches'
(``bench.harness.pipeline``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.harness import pipeline as harness
from bench.harness.pipeline import AGENT, EXAMPLE_PACK, REPO, TENANT, prepare
from schemas.codec import decode_as
from schemas.domain.turn_input import Channel, TurnInput
from schemas.events.dead_letter import DeadLetter
from streams import worker_process
from streams.kafka_clients import consumer_kwargs
from streams.settings import Settings
from streams.topics import DEAD_LETTER
from streams.worker import Worker
from streams.worker_process import worker_env

__all__ = [
    "AGENT",
    "EXAMPLE_PACK",
    "REPO",
    "TENANT",
    "WorkerProcess",
    "customer_says",
    "pipeline_settings",
    "prepare",
    "running_worker",
    "settings_env",
    "settle",
]


def pipeline_settings(base: Settings, data_dir: Path, **overrides: Any) -> Settings:
    """The session broker's settings with a fresh topic prefix and data dir (the benches'
    :func:`bench.harness.pipeline.pipeline_settings`: 4 partitions, analytics off, no ops
    port unless a test picks one)."""
    settings = harness.pipeline_settings(
        base, "t", partitions=4, analytics=False, data_dir=data_dir
    )
    values: dict[str, Any] = {"ops": base.ops.model_copy(update={"port": 0})}
    values.update(overrides)
    return settings.model_copy(update=values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess the same settings (and no other
    ``TURNSTREAM_*`` variable of the test run)."""
    return worker_env(settings, inherit=False)


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


class Redrives(logging.Handler):
    """The watchdog's and the session agent's lines for a turn driven again."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "driving turn" in text or "stalled since" in text:
            self.lines.append(text)


@contextmanager
def watching_redrives() -> Iterator[Redrives]:
    """Collect every re-drive of a turn that the session agent logs while inside."""
    handler = Redrives()
    watched = logging.getLogger("streams.pipeline.session_agent")
    watched.addHandler(handler)
    watched.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        watched.removeHandler(handler)


async def dead_letter_of(settings: Settings, key: bytes, timeout: float = 60.0) -> DeadLetter:
    """The dead letter of the record keyed ``key`` (a letter keeps its record's key), read
    from the start of the dead-letter topic; ``TimeoutError`` after ``timeout`` s."""
    consumer = AIOKafkaConsumer(
        DEAD_LETTER.name(settings.topic_prefix),
        auto_offset_reset="earliest",
        **consumer_kwargs(settings),
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await consumer.getone()
                letter = decode_as(message.value, DeadLetter)
                if letter.key == key:
                    return letter
    finally:
        await consumer.stop()
