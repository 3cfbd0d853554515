"""Every Prometheus metric of a turnstream process, and the few functions that feed them.

Processors know nothing of this module: turns are counted where the pipeline writes their
response (:func:`observe_response`) and from the finished turn's record
(:func:`observe_record`: tools, enforcement), stages where the Faust agents run them, LLM
calls behind the LLM port (:class:`MeteredLlm`), dead letters and webhook deliveries where
they are produced. docs/operations.md lists the metrics with their labels.

**Label cardinality is bounded.** Every label takes values from a closed set written in the
code (phases, stages, outcomes, verdicts, lanes, delivery statuses, dead-letter reasons)
except ``tenant``, which comes from the records: the first ``ops.tenant_labels`` tenants
seen by the process get their own value, every later one counts as ``other``. The lag
gauge's ``group``/``topic``/``partition`` come from the catalog and the partition count.
Tool names are pack content and are not a label.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from processors.llm import LlmError, LlmResult, LlmTask
from schemas.domain.phase import Phase
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import ResponseStatus, TurnResponse
from streams.pipeline.rocks_memory import usage_bytes as table_store_usage_bytes
from streams.settings import PhaseSettings

OTHER_TENANT = "other"
PHASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)

TURNS = Counter(
    "turnstream_turns",
    "Turns answered, by outcome (the resolution of an answer, or error) and tenant",
    ["outcome", "tenant"],
)
TURN_DURATION = Histogram(
    "turnstream_turn_duration_seconds",
    "From the turn's admission to its response being written",
    buckets=TURN_BUCKETS,
)
PHASE_DURATION = Histogram(
    "turnstream_phase_duration_seconds",
    "Time per phase of answered turns (the keys of timings_ms: a phase or phase.step)",
    ["phase"],
    buckets=PHASE_BUCKETS,
)
TURNS_IN_FLIGHT = Gauge(
    "turnstream_turns_in_flight", "Turns admitted and not yet answered (context role)"
)
STAGE_DURATION = Histogram(
    "turnstream_stage_duration_seconds",
    "Time a pipeline agent spent on one record",
    ["stage"],
    buckets=PHASE_BUCKETS,
)
STAGE_IN_PROGRESS = Gauge(
    "turnstream_stage_records_in_progress", "Records a pipeline agent is working on", ["stage"]
)
STAGE_FAILURES = Counter(
    "turnstream_stage_failures", "Records a pipeline agent failed on (dead-lettered)", ["stage"]
)
CONSUMER_LAG = Gauge(
    "turnstream_consumer_lag",
    "End offset minus committed offset, per consumer group and partition",
    ["group", "topic", "partition"],
)
TABLE_STORE_MEMORY = Gauge(
    "turnstream_table_store_memory_bytes",
    "RocksDB memory of the worker's tables now (the shared block cache: blocks and memtables)",
)
TABLE_STORE_MEMORY.set_function(table_store_usage_bytes)
DEAD_LETTERS = Counter("turnstream_dead_letters", "Records dead-lettered, by reason", ["reason"])
ENFORCEMENT_VERDICTS = Counter(
    "turnstream_enforcement_verdicts",
    "P10 checks of answered turns: passed or violated per attempt; fallback when a template "
    "replaced the answer",
    ["verdict"],
)
ENFORCEMENT_VIOLATIONS = Counter(
    "turnstream_enforcement_violations", "Broken hard constraints, by enforcement lane", ["lane"]
)
RETRIEVAL_GAPS = Counter(
    "turnstream_retrieval_gaps",
    "Retrieval types a turn went on without, by type and reason (timeout: taken up but not "
    "done in time, or never taken up; failed: the search raised)",
    ["type", "reason"],
)
LLM_CALLS = Counter(
    "turnstream_llm_calls", "LLM task calls, by task (phase) and result", ["task", "result"]
)
LLM_TOKENS = Counter(
    "turnstream_llm_tokens", "LLM tokens, by task and kind (prompt, completion)", ["task", "kind"]
)
LLM_DURATION = Histogram(
    "turnstream_llm_call_duration_seconds",
    "One LLM task call, retries included",
    ["task"],
    buckets=TURN_BUCKETS,
)
TOOL_CALLS = Counter(
    "turnstream_tool_calls",
    "Tool calls of answered turns, by result (success, failure)",
    ["result"],
)
TOOL_DURATION = Histogram(
    "turnstream_tool_call_duration_seconds",
    "One tool call of an answered turn",
    buckets=PHASE_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "turnstream_webhook_deliveries",
    "Webhook delivery attempts, by result (the delivery status)",
    ["result"],
)


class TenantLabels:
    """The ``tenant`` label value: the tenant itself for the first ``limit`` tenants seen,
    :data:`OTHER_TENANT` for the rest (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, tenant: str) -> str:
        if tenant in self._seen:
            return tenant
        if len(self._seen) >= self.limit:
            return OTHER_TENANT
        self._seen.add(tenant)
        return tenant


tenant_label = TenantLabels(100)
"""The process's tenant labels; the worker sets ``limit`` from ``ops.tenant_labels``."""


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Counter | Gauge | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: the lookup costs microseconds and a turn makes
    a dozen (bounded: every label's values are, see the module docstring)."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def outcome_of(response: TurnResponse) -> str:
    if response.status is ResponseStatus.ERROR:
        return "error"
    if response.outcome is None:
        return "answered"
    return response.outcome.resolution.value.lower()


def observe_response(response: TurnResponse, received_at: Any = None) -> None:
    """A turn's response was written: count it, and its phases' times."""
    child(TURNS, outcome_of(response), tenant_label(response.tenant_id)).inc()
    for phase, ms in response.timings_ms.items():
        child(PHASE_DURATION, phase).observe(ms / 1000.0)
    if received_at is not None:
        TURN_DURATION.observe(max(0.0, (response.responded_at - received_at).total_seconds()))


def observe_record(record: TurnRecord) -> None:
    """What a finished turn's record tells: its tool calls and enforcement checks."""
    context = record.context
    for call in context.tool_calls:
        child(TOOL_CALLS, "success" if call.success else "failure").inc()
        TOOL_DURATION.observe(call.latency_ms / 1000.0)
    for check in context.enforcement:
        child(ENFORCEMENT_VERDICTS, "passed" if check.passed else "violated").inc()
        if check.fallback_used:
            child(ENFORCEMENT_VERDICTS, "fallback").inc()
        for violation in check.violations:
            child(ENFORCEMENT_VIOLATIONS, violation.lane.value.lower()).inc()


class MeteredLlm:
    """An :class:`~processors.llm.LlmTask` that counts the calls, tokens and time of the
    task it wraps, labelled by the phase asking."""

    def __init__(self, inner: LlmTask) -> None:
        self.inner = inner

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
        task = phase.value
        began = time.perf_counter()
        try:
            result = await self.inner.complete_json(
                phase=phase,
                system=system,
                user=user,
                schema_name=schema_name,
                schema=schema,
                settings=settings,
            )
        except LlmError as exc:
            child(LLM_CALLS, task, "error").inc()
            _count_tokens(task, exc.usage)
            raise
        finally:
            child(LLM_DURATION, task).observe(time.perf_counter() - began)
        child(LLM_CALLS, task, "ok").inc()
        _count_tokens(task, result.usage)
        return result


def metered(tasks: Mapping[Phase, LlmTask]) -> dict[Phase, LlmTask]:
    """The same tasks, each behind one :class:`MeteredLlm` (phases sharing a client share
    its wrapper)."""
    wrapped: dict[int, LlmTask] = {}
    return {phase: wrapped.setdefault(id(task), MeteredLlm(task)) for phase, task in tasks.items()}


def _count_tokens(task: str, usage: list[Any]) -> None:
    for used in usage:
        child(LLM_TOKENS, task, "prompt").inc(used.prompt_tokens)
        child(LLM_TOKENS, task, "completion").inc(used.completion_tokens)
