"""Backpressure: a burst ten times above what the pipeline sustains waits in Kafka, not in the
worker. The worker drains it at its own pace, its memory stays bounded, and every turn of the
burst is answered exactly once.

The sustained rate is measured first in the same test (closed loop on this machine, which is
what "sustained" means here), so the burst is 10x whatever this machine does today."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest

from schemas.events.turn_response import ResponseStatus
from streams.settings import Settings
from streams.turn_client import TurnClient
from streams.worker_process import rss_bytes
from tests.pipeline_support import WorkerProcess, customer_says, pipeline_settings, prepare, settle

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

MEASURE_SESSIONS = 8
MEASURE_S = 12.0
BURST_FACTOR = 10
BURST_S = 4.0
RSS_GROWTH_LIMIT = 300 * 2**20
"""The worker may grow by this much while the burst waits in Kafka: its fetch buffers and the
turns in flight (at most ``worker_concurrency`` per agent), not the backlog itself, which on
this test's scale would be thousands of turns."""
MESSAGES = ("where is my order A-10024?", "can I return a jacket?", "do you ship to Canada?")


@pytest.mark.timeout(900)
async def test_a_burst_ten_times_the_sustained_rate_is_drained_with_bounded_memory(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path / "data")
    await prepare(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    rss: list[int] = []

    async def sample_rss() -> None:
        while True:
            rss.append(await asyncio.to_thread(rss_bytes, worker.pid))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample_rss())
    try:
        async with TurnClient(settings) as client:
            run = uuid.uuid4().hex[:6]
            loop = asyncio.get_running_loop()
            await client.ask(customer_says(f"warm-{run}", "hi"), timeout=240)

            async def closed(n: int, until: float) -> int:
                answered = 0
                while loop.time() < until:
                    turn_id = await client.send(customer_says(f"m-{run}-{n}", MESSAGES[n % 3]))
                    response = await client.response(turn_id, timeout=120)
                    assert response.status is ResponseStatus.OK, response.error
                    answered += 1
                return answered

            t0 = loop.time()
            done = await asyncio.gather(
                *(closed(n, t0 + MEASURE_S) for n in range(MEASURE_SESSIONS))
            )
            sustained = sum(done) / (loop.time() - t0)
            before = max(rss[-8:])

            rate = BURST_FACTOR * sustained
            count = max(1, round(rate * BURST_S))
            burst: list[str] = []
            mark = len(rss)
            start = loop.time()
            for i in range(count):  # one new session per turn: all admitted at once
                await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
                burst.append(await client.send(customer_says(f"b-{run}-{i}", MESSAGES[i % 3])))
            sent_s = loop.time() - start
            answered_when_sent = sum(1 for t in burst if t in client.responses())
            for turn_id in burst:
                response = await client.response(turn_id, timeout=600)
                assert response.status is ResponseStatus.OK, response.error
            drained_s = loop.time() - start
            await settle(2.0)
            peak = max(rss[mark:])
            figures = {
                "sustained_turns_per_s": round(sustained, 1),
                "burst_turns": count,
                "burst_rate_per_s": round(count / sent_s, 1),
                "answered_when_burst_sent": answered_when_sent,
                "drained_s": round(drained_s, 1),
                "rss_before_mib": round(before / 2**20),
                "rss_peak_mib": round(peak / 2**20),
            }
            logger.info("burst figures: %s", figures)

            assert count / sent_s >= 0.9 * rate, figures  # the burst really was 10x
            assert answered_when_sent < count / 2, figures  # and it did not keep up: a backlog
            counts = client.response_counts
            assert all(counts[t] == 1 for t in burst), figures  # nothing lost, nothing doubled
            assert peak - before <= RSS_GROWTH_LIMIT, figures
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        worker.stop()
