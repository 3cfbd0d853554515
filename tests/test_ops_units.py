"""The operator surface's parts, one module at a time: tracing's propagation and its off
state, the phase watcher of ``timed``, the metrics' label bounds and the LLM wrapper, the
HTTP endpoint with a given readiness, and the compose healthchecks on ``/ready``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from processors.llm import LlmError, LlmResult
from processors.turn.timing import timed
from schemas.domain.phase import Phase
from schemas.domain.turn_input import Channel
from schemas.domain.usage import TokenUsage
from schemas.events.turn_response import ResponseStatus, TurnResponse
from streams import metrics, tracing
from streams.ops_server import OpsServer, Readiness
from streams.settings import PhaseSettings, Settings
from tests.test_compose import environment, load_compose, worker_role


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()


# --- tracing ---------------------------------------------------------------------------------


def test_tracing_off_adds_no_header_and_phases_run_unwatched() -> None:
    assert not tracing.enabled()
    assert tracing.headers() is None
    parent = [("traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01")]
    with tracing.stage_span("stage", parent):
        assert tracing.headers() is None
    timings: dict[str, float] = {}
    with timed(timings, "sensor", time.perf_counter):
        pass
    assert set(timings) == {"sensor"}


def test_a_record_sent_in_a_stage_makes_that_stage_the_parent_of_the_next(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.stage_span("first", None):  # no traceparent: a new trace
        timings: dict[str, float] = {}
        with timed(timings, "sensor", time.perf_counter):
            pass
        sent = tracing.headers()
    assert sent is not None and [k for k, _ in sent] == ["traceparent"]
    with tracing.stage_span("second", sent), tracing.phase_span("persistence"):
        pass
    by_name = {s.name: s for s in spans.get_finished_spans()}
    first, second = by_name["first"], by_name["second"]
    assert first.parent is None
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    assert {s.context.trace_id for s in by_name.values()} == {first.context.trace_id}
    assert by_name["sensor"].parent.span_id == first.context.span_id  # type: ignore[union-attr]
    assert by_name["persistence"].parent.span_id == second.context.span_id  # type: ignore[union-attr]


def test_new_trace_starts_a_root_inside_another_turns_span(spans: InMemorySpanExporter) -> None:
    with tracing.stage_span("session", None), tracing.new_trace("session", turn_id="t-2"):
        tracing.tag(note="inner")
    inner, outer = spans.get_finished_spans()
    assert inner.parent is None and inner.context.trace_id != outer.context.trace_id
    assert inner.attributes == {"turn_id": "t-2", "note": "inner"}


def test_a_failed_stage_is_marked_on_its_span(spans: InMemorySpanExporter) -> None:
    with tracing.stage_span("decide", None):
        tracing.failed(ValueError("bad"))
    (span,) = spans.get_finished_spans()
    assert not span.status.is_ok and "ValueError: bad" in (span.status.description or "")


def test_a_malformed_traceparent_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    with tracing.stage_span("session", [("traceparent", b"garbage"), ("turn_id", b"x")]):
        pass
    (span,) = spans.get_finished_spans()
    assert span.parent is None


# --- metrics ---------------------------------------------------------------------------------


def test_tenant_labels_stop_growing_at_the_limit() -> None:
    labels = metrics.TenantLabels(2)
    assert [labels(t) for t in ("a", "b", "c", "a", "d", "b")] == [
        "a",
        "b",
        "other",
        "a",
        "other",
        "b",
    ]


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_response_counts_its_turn_and_its_phase_times() -> None:
    tenant = f"unit-{time.monotonic_ns()}"
    before = _sample("turnstream_phase_duration_seconds_count", phase="sensor")
    response = TurnResponse(
        turn_id="t-1",
        tenant_id=tenant,
        agent_id="a",
        channel=Channel.WEBCHAT,
        channel_id="c",
        status=ResponseStatus.OK,
        text="hello",
        timings_ms={"sensor": 12.0, "generation": 3.0},
        responded_at=datetime.now(UTC),
    )
    metrics.observe_response(response, datetime.now(UTC) - timedelta(seconds=1))
    assert _sample("turnstream_turns_total", outcome="answered", tenant=tenant) == 1
    assert _sample("turnstream_phase_duration_seconds_count", phase="sensor") == before + 1


class _Task:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    async def complete_json(
        self,
        *,
        phase: Phase,
        system: str,
        user: str,
        schema_name: str,
        schema: Mapping[str, Any],
        settings: PhaseSettings | None = None,
    ) -> LlmResult:
        usage = [TokenUsage(phase=phase, model="m", prompt_tokens=7, completion_tokens=3)]
        if self.fail:
            raise LlmError("no", usage)
        return LlmResult({"ok": True}, usage, 1)


async def test_llm_calls_are_counted_by_task_and_result_with_their_tokens() -> None:
    task = Phase.SENSOR.value
    ok_before = _sample("turnstream_llm_calls_total", task=task, result="ok")
    err_before = _sample("turnstream_llm_calls_total", task=task, result="error")
    tokens_before = _sample("turnstream_llm_tokens_total", task=task, kind="prompt")
    ask = {"phase": Phase.SENSOR, "system": "s", "user": "u", "schema_name": "x", "schema": {}}
    wrapped = metrics.metered({Phase.SENSOR: _Task(False), Phase.GENERATION: _Task(True)})
    assert (await wrapped[Phase.SENSOR].complete_json(**ask)).data == {"ok": True}
    with pytest.raises(LlmError):
        await wrapped[Phase.GENERATION].complete_json(**ask)  # asked as the sensor task
    assert _sample("turnstream_llm_calls_total", task=task, result="ok") == ok_before + 1
    assert _sample("turnstream_llm_calls_total", task=task, result="error") == err_before + 1
    assert _sample("turnstream_llm_tokens_total", task=task, kind="prompt") == tokens_before + 14


# --- the endpoint ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_ready_answers_503_with_reasons_then_200_and_metrics_are_prometheus_text() -> None:
    state = Readiness(["tables recovering"], {"role": "all"})
    server = OpsServer("127.0.0.1", _free_port(), lambda: state)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient() as http:
            not_yet = await http.get(base + "/ready")
            assert not_yet.status_code == 503
            assert not_yet.json() == {
                "ready": False,
                "reasons": ["tables recovering"],
                "role": "all",
            }
            state = Readiness([], {"role": "all"})
            assert (await http.get(base + "/ready")).status_code == 200
            assert (await http.get(base + "/health")).json() == {"status": "alive"}
            scraped = await http.get(base + "/metrics")
            assert "# TYPE turnstream_turns_total counter" in scraped.text
    finally:
        await server.stop()


async def test_a_taken_port_leaves_the_worker_running_without_the_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = OpsServer("127.0.0.1", taken.getsockname()[1], Readiness)
        await server.start()
        assert not server.serving
        assert "ops endpoint not served" in caplog.text
        await server.stop()
    off = OpsServer("127.0.0.1", 0, Readiness)
    await off.start()
    assert not off.serving


# --- compose ---------------------------------------------------------------------------------


def test_every_worker_service_is_healthy_only_when_its_ready_endpoint_says_so() -> None:
    compose = load_compose()
    workers = {n: s for n, s in compose["services"].items() if worker_role(s) is not None}
    assert workers
    for name, svc in workers.items():
        check = " ".join(svc["healthcheck"]["test"])
        port = environment(svc)["TURNSTREAM_OPS__PORT"]
        assert f"http://127.0.0.1:{port}/ready" in check, name
        assert environment(svc)["TURNSTREAM_OPS__HOST"] == "0.0.0.0", name
    assert "healthcheck" not in compose["services"]["init"], "init is a one-shot"


def test_status_with_no_broker_is_one_line_with_a_hint() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNSTREAM_")}
    env["TURNSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{_free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "hint:" in lines[0] and "Kafka" in lines[0], done.stderr


def test_configured_endpoint_receives_the_spans_over_otlp_http(clean_otel_env: None) -> None:
    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = Settings(
            otel={"endpoint": f"http://127.0.0.1:{server.server_port}", "service_name": "unit"}
        )
        assert tracing.configure(settings)
        with tracing.stage_span("decide", None), tracing.phase_span("planning"):
            pass
        tracing.disable()  # flushes the batch
    finally:
        server.shutdown()
        server.server_close()
    assert received, "nothing was exported"
    path, content_type, body = received[0]
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "unit"
    names = {span.name for scope in resource.scope_spans for span in scope.spans}
    assert names == {"decide", "planning"}


def test_no_endpoint_configured_leaves_tracing_off(clean_otel_env: None) -> None:
    assert not tracing.configure(Settings())
    assert not tracing.enabled()


@pytest.fixture
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name in [k for k in os.environ if k.startswith("TURNSTREAM_OTEL__")]:
        monkeypatch.delenv(name)
