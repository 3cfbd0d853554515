"""Outages without storms (issue 20 item 6): a worker waits out a broker that is down when it
starts, that goes away in the middle of its start, or while it runs, and comes back; while
the broker is away its clients back off (``streams.kafka_backoff``) and the log says so a
few times, not thousands (``streams.log_setup.RepeatedRecords``). Test brokers listen on
ports outside the ephemeral range (``streams.local_kafka.free_ports``).

The broker tests stop and start a broker, so each runs its own (never the session's)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from schemas.events.turn_response import ResponseStatus
from streams.kafka_backoff import JITTER, is_outage, jittered_backoff
from streams.local_kafka import LocalKafka, _ephemeral_range, free_ports, private_broker_settings
from streams.log_setup import RepeatedRecords
from streams.settings import Settings
from streams.turn_client import TurnClient
from tests.pipeline_support import WorkerProcess, customer_says, pipeline_settings, prepare

OUTAGE_S = 20.0
MAX_PROBLEM_LINES = 30
"""WARNING / ERROR lines a worker may log in one outage of :data:`OUTAGE_S`: measured 10-14
(the worker's own retry lines, and each kind of aiokafka record once per ``log_repeat_s``);
before the backoff and the filter, 4,375 ERROR lines in 30 s."""
_LEVEL = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")


# -- units ------------------------------------------------------------------------------------


def test_the_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    low = jittered_backoff(0.1, 5.0).delays(rng=lambda: 0.0)
    assert [round(next(low), 3) for _ in range(8)] == [
        round(d * (1 - JITTER), 3) for d in (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0)
    ]
    high = jittered_backoff(0.1, 5.0).delays(rng=lambda: 1.0)
    assert [next(high) for _ in range(10)][-1] == pytest.approx(5.0 * (1 + JITTER))
    spread = {round(jittered_backoff(1.0, 1.0).delay(1), 6) for _ in range(50)}
    assert len(spread) > 40 and all(0.8 <= d <= 1.2 for d in spread)  # not in step


def test_a_broker_that_does_not_answer_is_an_outage_and_a_refusal_is_not() -> None:
    from aiokafka.errors import (
        KafkaConnectionError,
        KafkaError,
        NodeNotReadyError,
        TopicAuthorizationFailedError,
    )

    assert is_outage(KafkaConnectionError("Unable to bootstrap"))
    assert is_outage(NodeNotReadyError("not ready"))
    assert is_outage(KafkaError("Unable to get cluster metadata over all known brokers"))
    assert is_outage(TimeoutError())
    wrapped = RuntimeError("could not publish")
    wrapped.__cause__ = KafkaConnectionError()
    assert is_outage(wrapped)
    assert not is_outage(TopicAuthorizationFailedError())
    assert not is_outage(ValueError("bad config"))


def _record(msg: str, *args: object, name: str = "aiokafka", level: int = logging.ERROR) -> Any:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeated_client_errors_pass_once_per_interval_with_a_count() -> None:
    now = [0.0]
    repeated = RepeatedRecords(30.0, clock=lambda: now[0])
    passed = []
    for second in range(90):  # ten failed reconnects a second for 90 s
        now[0] = float(second)
        for _ in range(10):
            record = _record("Unable connect to node with id %s: %s", 1, "refused")
            if repeated.filter(record):
                passed.append(record.getMessage())
    assert len(passed) == 3
    assert passed[0] == "Unable connect to node with id 1: refused"
    assert (
        passed[1]
        == "Unable connect to node with id 1: refused (299 more like this in the last 30 s)"
    )
    # other templates, loggers and levels are not held back by that one
    assert repeated.filter(_record("Failed fetch messages from %s", 1))
    assert repeated.filter(
        _record("Unable connect to node with id %s: %s", 1, "x", level=logging.INFO)
    )
    assert repeated.filter(
        _record("Unable connect to node with id %s: %s", 1, "x", name="streams.x")
    )
    assert repeated.filter(
        _record("Unable connect to node with id %s: %s", 1, "x", level=logging.CRITICAL)
    )
    assert RepeatedRecords(0).filter(_record("a")) and RepeatedRecords(0).filter(_record("a"))


def test_test_ports_are_outside_the_ephemeral_range_distinct_and_bindable() -> None:
    low, high = _ephemeral_range()
    ports = free_ports(6) + free_ports(6)
    assert len(set(ports)) == len(ports)  # leased: a second call hands out others
    assert all(not low <= port <= high for port in ports)
    import socket

    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


# -- a real broker, a real worker process -----------------------------------------------------


def _problem_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if _LEVEL.match(line) or line.startswith("Traceback")]


class Outage:
    """A private broker that the test stops and starts, and the worker's log around it."""

    def __init__(self, tmp_path: Path) -> None:
        # a broker restarted on a loaded 2-core machine took over 60 s to serve again
        settings = private_broker_settings(tmp_path / "kafka", kafka_start_timeout_s=240.0)
        self.broker = LocalKafka(settings)
        self.settings = pipeline_settings(settings, tmp_path / "data")
        self.log = tmp_path / "worker.log"
        self.worker: WorkerProcess | None = None

    def start_worker(self) -> WorkerProcess:
        self.worker = WorkerProcess(self.settings, self.log)
        self.worker.start()
        return self.worker

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    async def wait_for_line(self, text: str, worker: WorkerProcess, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines()):
            assert worker.alive(), f"the worker exited ({worker.exit_code()}); see {self.log}"
            assert time.monotonic() < deadline, f"no {text!r} in {self.log}"
            await asyncio.sleep(0.2)

    async def down(self) -> int:
        """Stop the broker; the log's length before (the clients' first errors come while
        it shuts down)."""
        since = len(self.lines())
        await asyncio.to_thread(self.broker.down)
        return since

    async def up(self, since: int) -> list[str]:
        """Start the broker again; the WARNING / ERROR lines logged while it was down."""
        during = self.lines()[since:]
        await asyncio.to_thread(self.broker.up)
        return _problem_lines(during)


async def _answered(settings: Settings, who: str) -> None:
    async with TurnClient(settings) as client:
        turn_id = await client.send(customer_says(who, "where is my order A-10024?"))
        response = await client.response(turn_id, timeout=300)
        assert response.status is ResponseStatus.OK, response.error


@pytest.fixture
async def outage(tmp_path: Path) -> AsyncIterator[Outage]:
    """A private broker, up, with the topics and the example pack; at the end the worker (if
    one was started) and the broker stop."""
    outage = Outage(tmp_path)
    await asyncio.to_thread(outage.broker.up)
    try:
        await prepare(outage.settings)
        yield outage
    finally:
        if outage.worker is not None:
            outage.worker.stop()
        await asyncio.to_thread(outage.broker.down)


@pytest.mark.integration
@pytest.mark.timeout(900)
async def test_a_worker_started_while_the_broker_is_down_comes_up_when_it_starts(
    outage: Outage,
) -> None:
    settings = outage.settings
    since = await outage.down()
    worker = outage.start_worker()
    await outage.wait_for_line("unreachable while checking the topics", worker, 240)
    await asyncio.sleep(OUTAGE_S)
    assert worker.alive()
    problems = await outage.up(since)
    await _answered(settings, "down-at-start")
    assert worker.alive()
    assert len(problems) <= MAX_PROBLEM_LINES, "\n".join(problems)
    assert not any(line.startswith("Traceback") for line in outage.lines())
    retry = [line for line in problems if "unreachable while checking the topics" in line]
    assert retry and all(re.search(r"retrying in \d+\.\d s$", line) for line in retry)


@pytest.mark.integration
@pytest.mark.timeout(1200)
async def test_a_broker_lost_mid_start_and_while_running_is_waited_out_quietly(
    outage: Outage,
) -> None:
    settings = outage.settings
    worker = outage.start_worker()
    # mid-start: the topics were checked, the model loads; the packs are read next
    await outage.wait_for_line("loading the embedding model", worker, 240)
    since = await outage.down()
    await outage.wait_for_line("unreachable while reading the packs", worker, 300)
    await asyncio.sleep(OUTAGE_S)
    assert worker.alive()
    at_start = await outage.up(since)
    await _answered(settings, "lost-at-start")

    # while running
    since = await outage.down()
    await asyncio.sleep(OUTAGE_S)
    assert worker.alive()
    running = await outage.up(since)
    await _answered(settings, "lost-while-running")
    assert worker.alive()
    print(f"problem lines: {len(at_start)} in the start outage, {len(running)} while running")
    for problems in (at_start, running):
        assert len(problems) <= MAX_PROBLEM_LINES, "\n".join(problems)
    assert not any(line.startswith("Traceback") for line in outage.lines())
