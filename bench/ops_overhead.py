"""What the operator surface costs per pipeline record, in this process (no broker).

    python bench/ops_overhead.py [--records 200000] [--json PATH]

Times the per-record work a pipeline agent adds (``Pipeline.guard``: the stage span, the
stage metrics; ``Pipeline.send``: the trace headers) and, once per turn, the response's
metrics, with tracing off (the default) and on (SDK provider, in-memory exporter, as an
upper bound without the network). Figures are microseconds per record or turn.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemas.domain.turn_input import Channel
from schemas.events.turn_response import ResponseStatus, TurnResponse
from streams import metrics, tracing

PHASES = ("identification", "sensor", "customer_data", "retrieval.embedding", "rule_selection",
          "scenarios", "planning", "generation", "enforcement")  # fmt: skip


def per_record_us(records: int) -> float:
    """The guard's and send's additions around one record, as the agents run them."""
    in_progress = metrics.STAGE_IN_PROGRESS.labels("bench")
    duration = metrics.STAGE_DURATION.labels("bench")
    headers = [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    began = time.perf_counter()
    for _ in range(records):
        start = time.perf_counter()
        in_progress.inc()
        with tracing.stage_span("bench", headers, topic="t", partition=0):
            tracing.headers()
            in_progress.dec()
            duration.observe(time.perf_counter() - start)
    return (time.perf_counter() - began) / records * 1e6


def per_turn_us(turns: int) -> float:
    response = TurnResponse(
        turn_id="t", tenant_id="bench", agent_id="a", channel=Channel.WEBCHAT, channel_id="c",
        status=ResponseStatus.OK, text="x", timings_ms=dict.fromkeys(PHASES, 1.0),
        responded_at=datetime.now(UTC),
    )  # fmt: skip
    admitted = datetime.now(UTC)
    began = time.perf_counter()
    for _ in range(turns):
        metrics.observe_response(response, admitted)
    return (time.perf_counter() - began) / turns * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = {"record_us_tracing_off": per_record_us(args.records)}
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    figures["record_us_tracing_on_in_memory"] = per_record_us(args.records // 10)
    tracing.disable()
    figures["turn_response_metrics_us"] = per_turn_us(args.records // 10)
    for name, value in figures.items():
        print(f"{name:34} {value:8.2f} us")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
