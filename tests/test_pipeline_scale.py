"""Three worker processes share the pipeline over 12 partitions; one is stopped and another
started in the middle of a load. The group rebalances, every turn is answered exactly once
and each session's turns run in order, each seeing the one before."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from schemas.events.turn_response import ResponseStatus
from streams.settings import Settings
from streams.turn_client import TurnClient
from tests.pipeline_support import WorkerProcess, customer_says, pipeline_settings, prepare, settle

pytestmark = pytest.mark.integration

SESSIONS = 18
TURNS = ["hi", "where is my order A-10024?", "and A-10023?", "thanks", "change my address?", "bye"]
SWAP_AFTER = 30


@pytest.mark.timeout(900)
async def test_workers_join_and_leave_mid_load_and_every_turn_is_answered_once_in_order(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path / "shared", partitions=12)
    await prepare(settings)

    def worker(n: int) -> WorkerProcess:  # Qdrant local mode: one data dir per process
        own = settings.model_copy(update={"data_dir": tmp_path / f"w{n}"})
        return WorkerProcess(own, tmp_path / f"w{n}.log")

    workers = [worker(n) for n in range(3)]
    for w in workers:
        w.start()
    arrivals: list[float] = []
    sent: dict[str, list[str]] = {}
    swapped: list[float] = []
    progress = asyncio.Condition()
    try:
        async with TurnClient(settings, records=True) as client:

            async def session(n: int) -> None:
                who = f"scale-{n}-{uuid.uuid4().hex[:6]}"
                sent[who] = []
                for message in TURNS:
                    turn_id = await client.send(customer_says(who, message))
                    sent[who].append(turn_id)
                    response = await client.response(turn_id, timeout=300)
                    assert response.status is ResponseStatus.OK, response.error
                    arrivals.append(time.monotonic())
                    async with progress:
                        progress.notify_all()

            async def swap() -> None:
                async with progress:
                    await progress.wait_for(lambda: len(arrivals) >= SWAP_AFTER)
                swapped.append(time.monotonic())
                workers[0].stop()  # SIGTERM: a graceful leave
                fresh = worker(3)
                workers.append(fresh)
                fresh.start()

            await asyncio.gather(swap(), *(session(n) for n in range(SESSIONS)))
            await settle(3.0)
            assert swapped and len(arrivals) == SESSIONS * len(TURNS)
            assert set(client.response_counts.values()) == {1}
            assert len(client.response_counts) == SESSIONS * len(TURNS)
            for turns in sent.values():
                for k, turn_id in enumerate(turns):
                    record = await client.record(turn_id)
                    state = record.context.session
                    assert state is not None and state.turn_count == k
                    assert state.last_turn_id == (turns[k - 1] if k else None)
        after = sorted(t for t in arrivals if t >= swapped[0])
        gaps = [b - a for a, b in zip([swapped[0], *after], after, strict=False)]
        print(f"longest pause in answers after the swap: {max(gaps, default=0.0):.2f} s")
    finally:
        for w in workers:
            w.stop()
