"""A worker killed with SIGKILL in the middle of a load, then restarted (twice): every turn
is answered exactly once and no session state is lost (it comes back from the changelogs), on
RocksDB tables (after a crash the local databases are discarded and the tables recover from
their changelogs: ``streams.pipeline.stores``) and on memory tables."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from schemas.events.turn_response import ResponseStatus
from streams.settings import Settings
from streams.turn_client import TurnClient
from tests.pipeline_support import (
    WorkerProcess,
    customer_says,
    pipeline_settings,
    prepare,
    settle,
)

pytestmark = pytest.mark.integration

SESSIONS = 12
TURNS = ["hi", "where is my order A-10024?", "and A-10023?", "can I change my address?", "bye"]
KILLS_AFTER = (15, 35)
"""Responses seen before each SIGKILL: two kills, each with turns in every stage."""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_a_killed_worker_restarts_and_every_turn_is_answered_once_with_its_state(
    kafka_settings: Settings, tmp_path: Path, store: str
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path / "data", table_store=store)
    await prepare(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    progress = asyncio.Condition()
    last_turns: dict[str, str] = {}
    killed_with: list[int] = []
    try:
        async with TurnClient(settings, records=True) as client:

            async def session(n: int) -> None:
                who = f"kill-{n}-{uuid.uuid4().hex[:6]}"
                for message in TURNS:
                    turn_id = await client.send(customer_says(who, message))
                    response = await client.response(turn_id, timeout=240)
                    assert response.status is ResponseStatus.OK, response.error
                    async with progress:
                        progress.notify_all()
                last_turns[who] = turn_id

            async def kill_and_restart() -> None:
                for threshold in KILLS_AFTER:
                    async with progress:
                        await progress.wait_for(
                            lambda n=threshold: len(client.response_counts) >= n  # type: ignore[misc]
                        )
                    worker.kill()
                    killed_with.append(len(client.response_counts))
                    await asyncio.sleep(1.0)
                    worker.start()

            await asyncio.gather(kill_and_restart(), *(session(n) for n in range(SESSIONS)))
            await settle(3.0)
            counts = client.response_counts
            assert len(killed_with) == 2 and killed_with[-1] < SESSIONS * len(TURNS)  # mid-load
            assert len(counts) == SESSIONS * len(TURNS)
            assert set(counts.values()) == {1}
            for turn_id in last_turns.values():
                record = await client.record(turn_id)
                session_state = record.context.session
                assert session_state is not None
                assert session_state.turn_count == len(TURNS) - 1
    finally:
        worker.stop()
