"""The operator surface of a worker on the real broker: ``/health``, ``/ready`` (503 while
starting, 200 once ready), ``/metrics`` during real turns (turn counts, phase histograms,
consumer lag that rises while the worker's consumer is paused and falls after), ``turnstream
status`` against the live cluster, and one OpenTelemetry trace per turn (in-memory
exporter) with a span per phase and parent/child links across the Kafka hops."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from schemas.events.turn_response import ResponseStatus
from streams import tracing
from streams.roles import Role
from streams.settings import Settings
from streams.topics import TURN_REQUESTED
from streams.turn_client import TurnClient
from streams.worker import Worker
from tests.pipeline_support import (
    AGENT,
    REPO,
    TENANT,
    customer_says,
    pipeline_settings,
    prepare,
    settings_env,
)

pytestmark = pytest.mark.integration

REFUND = "Hi, I'd like a refund of 900 dollars for order A-10023, it arrived broken."
START_TIMEOUT_S = 180.0
LAG_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Started:
    """The running worker, what its endpoint answered while it started, and the spans."""

    worker: Worker
    base: str
    seen_while_starting: list[tuple[str, int, dict[str, object]]] = field(default_factory=list)
    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)


@pytest.fixture(scope="module")
async def settings(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = pipeline_settings(kafka_settings, tmp_path_factory.mktemp("ops"))
    return base.model_copy(
        update={"ops": base.ops.model_copy(update={"port": free_port(), "lag_interval_s": 0.5})}
    )


@pytest.fixture(scope="module")
async def started(settings: Settings) -> AsyncIterator[Started]:
    """A worker started in the background while its endpoint is polled, with tracing on
    (in-memory exporter) for the whole module."""
    await prepare(settings)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    worker = Worker(settings)
    state = Started(worker, f"http://127.0.0.1:{settings.ops.port}", spans=exporter)
    starting = asyncio.create_task(worker.start())
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            async with asyncio.timeout(START_TIMEOUT_S):
                while True:
                    done = starting.done()
                    for path in ("/health", "/ready"):
                        try:
                            answer = await http.get(state.base + path)
                        except httpx.TransportError:
                            continue
                        state.seen_while_starting.append((path, answer.status_code, answer.json()))
                    if done and state.seen_while_starting[-1][1] == 200:
                        break
                    await asyncio.sleep(0.2)
        await starting
        yield state
    finally:
        if not starting.done():
            starting.cancel()
        await worker.stop()
        tracing.disable()
        provider.shutdown()


async def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) -> value."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.get(base + "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v for (n, found), v in samples.items() if n == name and set(labels.items()) <= set(found)
    )


def visitor() -> str:
    return f"ops-{uuid.uuid4().hex[:10]}"


async def test_ready_is_503_with_a_reason_until_the_worker_is_ready_and_health_is_200(
    started: Started,
) -> None:
    seen = started.seen_while_starting
    ready = [(code, body) for path, code, body in seen if path == "/ready"]
    assert ready[0][0] == 503, "the endpoint serves from the start of the worker's start"
    assert ready[0][1]["ready"] is False and ready[0][1]["reasons"], ready[0]
    assert ready[-1][0] == 200 and ready[-1][1]["ready"] is True
    first_ok = next(i for i, (code, _) in enumerate(ready) if code == 200)
    assert all(code == 503 for code, _ in ready[:first_ok])
    assert {code for path, code, _ in seen if path == "/health"} == {200}
    async with httpx.AsyncClient(timeout=5.0) as http:
        now = (await http.get(started.base + "/ready")).json()
    assert now["packs"] == {f"{TENANT}/{AGENT}": 1}
    assert now["assigned_partitions"] > 0


async def test_metrics_count_turns_and_phase_times_of_real_turns(
    started: Started, settings: Settings
) -> None:
    before = await scrape(started.base)
    async with TurnClient(settings) as client:
        who = visitor()
        for message in (REFUND, "Yes please, go ahead."):
            turn_id = await client.send(customer_says(who, message, customer_id="C-1001"))
            assert (await client.response(turn_id, timeout=120)).status is ResponseStatus.OK
    after = await scrape(started.base)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("turnstream_turns_total", tenant=TENANT) == 2
    for phase in ("identification", "sensor", "retrieval.embedding", "generation", "enforcement"):
        assert grew("turnstream_phase_duration_seconds_count", phase=phase) == 2, phase
        assert grew("turnstream_phase_duration_seconds_sum", phase=phase) > 0, phase
    assert grew("turnstream_turn_duration_seconds_count") == 2
    assert grew("turnstream_tool_calls_total", result="success") >= 1  # the refund tool
    assert grew("turnstream_enforcement_verdicts_total") >= 2
    assert grew("turnstream_stage_duration_seconds_count", stage="decide") == 2
    assert value(after, "turnstream_turns_in_flight") == 0


async def test_consumer_lag_rises_while_the_consumer_is_paused_and_falls_after(
    started: Started, settings: Settings
) -> None:
    group = f"{settings.topic_prefix}.pipeline"
    topic = TURN_REQUESTED.name(settings.topic_prefix)
    who = visitor()
    async with TurnClient(settings) as client:
        warm = await client.send(customer_says(who, "hello"))  # the partition gets an offset
        await client.response(warm, timeout=60)
        await asyncio.sleep(2.0)  # committed (every second) and read (every 0.5 s)
        lag_before = value(
            await scrape(started.base), "turnstream_consumer_lag", group=group, topic=topic
        )
        assert lag_before == 0

        app = started.worker.topology.app  # type: ignore[union-attr]
        paused = {tp for tp in app.consumer.assignment() if tp.topic == topic}
        app.consumer.pause_partitions(paused)
        try:
            sent = [await client.send(customer_says(who, f"message {n}")) for n in range(5)]
            async with asyncio.timeout(LAG_TIMEOUT_S):
                while True:
                    lag = value(
                        await scrape(started.base),
                        "turnstream_consumer_lag",
                        group=group,
                        topic=topic,
                    )
                    if lag >= 5:
                        break
                    await asyncio.sleep(0.25)
            assert not any(t in client.responses() for t in sent), "paused: nothing was answered"
        finally:
            app.consumer.resume_partitions(paused)
        for turn_id in sent:
            await client.response(turn_id, timeout=120)
        async with asyncio.timeout(LAG_TIMEOUT_S):
            while value(
                await scrape(started.base), "turnstream_consumer_lag", group=group, topic=topic
            ):
                await asyncio.sleep(0.25)


async def test_status_lists_topics_groups_with_lag_and_the_loaded_pack_version(
    started: Started, settings: Settings
) -> None:
    async with TurnClient(settings) as client:  # the group commits offsets
        assert (await client.ask(customer_says(visitor(), "hi"), timeout=120)).text
    await asyncio.sleep(1.5)
    env = {**os.environ, **settings_env(settings)}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "streams.cli", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    lines = out.splitlines()
    requested = TURN_REQUESTED.name(settings.topic_prefix)
    assert any(line.split() == [requested, str(settings.partitions)] for line in lines), out
    group = f"{settings.topic_prefix}.pipeline"
    row = next(line for line in lines if line.split()[:1] == [group])
    _name, state, members, lag, topic = row.split()
    assert (state, members) == ("Stable", "1") and int(lag) >= 0, row
    assert topic.startswith(f"{settings.topic_prefix}."), row
    lag_rows = [line.split() for line in lines[lines.index(row) :]]
    assert any(cells[-2:][1] == requested and cells[-2].isdigit() for cells in lag_rows), out
    pack = next(line for line in lines if line.split()[:1] == [f"{TENANT}/{AGENT}"])
    assert pack.split()[1] == "v1", pack
    assert "Traceback" not in done.stderr


def _trace_of(spans: list[ReadableSpan], turn_id: str) -> list[ReadableSpan]:
    tagged = {s.context.trace_id for s in spans if (s.attributes or {}).get("turn_id") == turn_id}
    assert len(tagged) == 1, f"turn {turn_id} is in {len(tagged)} traces"
    (trace_id,) = tagged
    return [s for s in spans if s.context.trace_id == trace_id]


async def test_one_trace_per_turn_with_every_phase_and_links_across_hops(
    started: Started, settings: Settings
) -> None:
    async with TurnClient(settings) as client:
        who = visitor()
        first = await client.send(customer_says(who, REFUND, customer_id="C-1001"))
        await client.response(first, timeout=120)
        second = await client.send(
            customer_says(who, "Yes please, go ahead.", customer_id="C-1001")
        )
        await client.response(second, timeout=120)
    phases = {
        "identification", "sensor", "customer_data", "retrieval.embedding", "retrieval.rules",
        "retrieval.scenarios", "retrieval.memories", "retrieval.intents", "rule_selection",
        "scenarios", "tools", "planning", "generation", "enforcement", "persistence",
    }  # fmt: skip
    stages = {"session", "retrieval-rules", "retrieval-scenarios", "retrieval-memories",
              "retrieval-intents", "join", "decide", "generate", "enforce"}  # fmt: skip
    async with asyncio.timeout(30):  # the completion's span ends after the response is out
        while "persistence" not in {
            s.name for s in _trace_of(started.spans.get_finished_spans(), second)
        }:
            await asyncio.sleep(0.1)
    trace = _trace_of(started.spans.get_finished_spans(), second)
    names = [s.name for s in trace]
    assert phases <= set(names), phases - set(names)
    assert stages <= set(names), stages - set(names)
    by_id = {s.context.span_id: s for s in trace}
    roots = [s for s in trace if s.parent is None]
    assert [r.name for r in roots] == ["session"], "one root: the admission"
    for span in trace:
        if span.parent is not None:
            assert span.parent.span_id in by_id, f"{span.name}'s parent is outside the trace"

    def stage_of(span: ReadableSpan) -> str:
        while span.name not in stages:
            assert span.parent is not None
            span = by_id[span.parent.span_id]
        return span.name

    def parent_stage(name: str) -> set[str]:
        return {stage_of(by_id[s.parent.span_id]) for s in trace if s.name == name and s.parent}

    assert parent_stage("decide") == {"join"}  # across the turn.retrieved hop
    assert parent_stage("generate") == {"decide"}
    assert parent_stage("enforce") == {"generate"}
    assert parent_stage("retrieval-rules") == {"session"}
    assert stage_of(next(s for s in trace if s.name == "persistence")) == "session"
    assert stage_of(next(s for s in trace if s.name == "rule_selection")) == "decide"
    assert sum(1 for s in trace if s.name == "session" and s.parent is not None) == 1  # P11
    other = _trace_of(started.spans.get_finished_spans(), first)
    assert other[0].context.trace_id != trace[0].context.trace_id


async def test_a_split_role_without_tables_becomes_ready_too(
    started: Started, settings: Settings, tmp_path: Path
) -> None:
    """The compose healthchecks wait on every role's /ready: the answer role has a Faust
    app but no table, and must still report its tables as recovered."""
    answer = settings.model_copy(
        update={"data_dir": tmp_path, "ops": settings.ops.model_copy(update={"port": free_port()})}
    )
    worker = Worker(answer, Role.ANSWER)
    await worker.start()
    try:
        async with httpx.AsyncClient(timeout=5.0) as http, asyncio.timeout(60):
            while (
                found := await http.get(f"http://127.0.0.1:{answer.ops.port}/ready")
            ).status_code != 200:
                await asyncio.sleep(0.2)
        body = found.json()
        assert body["role"] == "answer" and body["assigned_partitions"] > 0, body
    finally:
        await worker.stop()
