"""P7 tools: run the tools this turn needs, and only those, without ever raising.

Which tools: those bound to an applied rule or to the step a scenario entered this turn
(:func:`bindings_due`), at the moment asked for (BEFORE and DURING run before the answer is
planned; AFTER bindings are run by the caller once the answer is final), and only while a
customer field the tool provides is still missing: a tool whose declared outputs are all
known already has nothing to add. A tool whose outputs name no customer field always runs.

Order: a tool whose required input another due tool provides runs after it; tools without
such a dependency run together (``asyncio.gather``), layer by layer, BEFORE bindings first.
A tool whose required inputs nobody can supply is skipped (not an error: the scenario has
not collected them yet).

Failure: each call has the tool's ``timeout_ms`` (capped by the phase's ``timeout_s``);
READ and IDEMPOTENT_WRITE tools are retried up to ``tool.retries`` times,
NON_IDEMPOTENT_WRITE tools never; a call that still fails is a ``ToolCall(success=False)``
and puts SYSTEM_ERROR in the result's categories. A call the operator's tool policy refuses
(``processors.tool_policy``) fails at once, without retries.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from processors.tool_policy import ToolRefusedError
from schemas.domain.customer_data import (
    MAX_HISTORY,
    VariableChange,
    VariableEntry,
    VariableSource,
    VariableType,
)
from schemas.domain.outcome import OutcomeCategory
from schemas.domain.rules import AppliedRule
from schemas.domain.scenario import ScenarioAction, ScenarioDecision
from schemas.domain.tools import ToolCall
from schemas.fields import json_text
from schemas.pack.agent_pack import AgentPack
from schemas.pack.common import ToolTiming
from schemas.pack.fields import CustomerDataField
from schemas.pack.tools import SideEffect, Tool
from schemas.settings import PhaseSettings

__all__ = [
    "DueBinding",
    "PackToolExecutor",
    "ToolExecutor",
    "ToolsResult",
    "bindings_due",
    "customer_values",
    "run_tools",
]

_STAGE_ORDER = {ToolTiming.BEFORE: 0, ToolTiming.DURING: 1, ToolTiming.AFTER: 2}
PRE_RESPONSE: frozenset[ToolTiming] = frozenset({ToolTiming.BEFORE, ToolTiming.DURING})


class ToolExecutor(Protocol):
    """Calls one tool with its arguments and returns its JSON object output."""

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DueBinding:
    """A tool to consider now, and what bound it (``rule:<id>`` or ``step:<scenario>.<step>``)."""

    tool_id: str
    when: ToolTiming
    bound_by: str


@dataclass(frozen=True)
class ToolsResult:
    """The calls made (in completion order per layer), the customer variables they set
    (source TOOL), the categories to add to the outcome, and the tools skipped with why."""

    calls: list[ToolCall]
    variables: dict[str, VariableEntry]
    categories: list[OutcomeCategory]
    skipped: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


def customer_values(variables: Mapping[str, VariableEntry]) -> dict[str, Any]:
    """Decoded values of customer variables: what expressions, templates and tools read."""
    return {key: json.loads(entry.value) for key, entry in variables.items()}


def bindings_due(
    pack: AgentPack,
    applied_rules: Sequence[AppliedRule],
    decisions: Sequence[ScenarioDecision],
    moments: Collection[ToolTiming] = PRE_RESPONSE,
) -> list[DueBinding]:
    """Bindings of applied rules and of the steps scenarios entered (START/CONTINUE) this turn,
    at ``moments``; a tool bound twice is due once, at its earliest moment."""
    rules = {rule.id: rule for rule in pack.rules}
    steps = {(s.id, step.id): step for s in pack.scenarios for step in s.steps}
    found: list[DueBinding] = []
    for applied in applied_rules:
        rule = rules.get(applied.rule_id)
        if rule is not None and rule.enabled:
            found += [DueBinding(b.tool_id, b.when, f"rule:{rule.id}") for b in rule.tool_bindings]
    for decision in decisions:
        if decision.action not in (ScenarioAction.START, ScenarioAction.CONTINUE):
            continue
        step = steps.get((decision.scenario_id, decision.entered_step_id or ""))
        if step is not None:
            origin = f"step:{decision.scenario_id}.{step.id}"
            found += [DueBinding(b.tool_id, b.when, origin) for b in step.tool_bindings]
    earliest: dict[str, DueBinding] = {}
    for binding in found:
        if binding.when not in moments:
            continue
        known = earliest.get(binding.tool_id)
        if known is None or _STAGE_ORDER[binding.when] < _STAGE_ORDER[known.when]:
            earliest[binding.tool_id] = binding
    return list(earliest.values())


async def run_tools(
    due: Sequence[DueBinding],
    customer: Mapping[str, VariableEntry],
    pack: AgentPack,
    executor: ToolExecutor,
    settings: PhaseSettings,
    *,
    now: datetime,
    clock: Callable[[], float] = time.perf_counter,
) -> ToolsResult:
    """Run the due tools (see the module docstring); never raises."""
    tools = {tool.id: tool for tool in pack.tools}
    fields = {f.key: f for f in pack.fields}
    known: dict[str, Any] = customer_values(customer)
    variables: dict[str, VariableEntry] = {}
    calls: list[ToolCall] = []
    skipped: dict[str, str] = {}
    outputs: dict[str, Any] = {}
    pending: list[Tool] = []
    for binding in sorted(due, key=lambda b: _STAGE_ORDER[b.when]):
        tool = tools.get(binding.tool_id)
        if tool is None:
            skipped[binding.tool_id] = "not in the pack"
        elif tool.id not in {t.id for t in pending}:
            pending.append(tool)
    provides = {t.id: set(t.outputs) for t in pending}

    while pending:
        for tool in list(pending):
            if not _still_needed(tool, fields, known):
                skipped[tool.id] = "the variables it provides are known"
                pending.remove(tool)
        ready = [t for t in pending if _ready(t, known, pending, provides)] or [
            t for t in pending if all(known.get(n) is not None for n in t.required_inputs)
        ]  # a cycle of optional inputs: run what can run
        if not ready:
            for tool in pending:
                missing = [name for name in tool.required_inputs if known.get(name) is None]
                skipped[tool.id] = f"missing inputs: {', '.join(missing)}"
            break
        layer = await asyncio.gather(
            *(_call(tool, _arguments(tool, known), executor, settings, clock) for tool in ready)
        )
        for tool, (call, output) in zip(ready, layer, strict=True):
            pending.remove(tool)
            calls.append(call)
            if output is None:
                continue
            outputs[tool.id] = output
            for name, value in output.items():
                if name in tool.outputs and value is not None:
                    known[name] = value
                    entry = _entry(fields.get(name), value, customer.get(name), now)
                    if entry is not None:
                        variables[name] = entry
    categories = [OutcomeCategory.SYSTEM_ERROR] if any(not c.success for c in calls) else []
    return ToolsResult(calls, variables, categories, skipped, outputs)


def _still_needed(
    tool: Tool, fields: Mapping[str, CustomerDataField], known: Mapping[str, Any]
) -> bool:
    provided = [name for name in tool.outputs if name in fields]
    return not provided or any(known.get(name) is None for name in provided)


def _ready(
    tool: Tool, known: Mapping[str, Any], pending: Sequence[Tool], provides: Mapping[str, set[str]]
) -> bool:
    """Every required input is known, and no other pending tool is about to provide an input
    this one takes (so a dependent tool waits for its provider)."""
    if any(known.get(name) is None for name in tool.required_inputs):
        return False
    wanted = {n for n in _input_names(tool) if known.get(n) is None}
    return not any(wanted & provides[other.id] for other in pending if other.id != tool.id)


def _input_names(tool: Tool) -> list[str]:
    properties = tool.input_schema.get("properties", {})
    return list(properties) if isinstance(properties, dict) else []


def _arguments(tool: Tool, known: Mapping[str, Any]) -> dict[str, Any]:
    """Input properties named like known variables (customer fields or earlier outputs)."""
    return {name: known[name] for name in _input_names(tool) if known.get(name) is not None}


async def _call(
    tool: Tool,
    arguments: dict[str, Any],
    executor: ToolExecutor,
    settings: PhaseSettings,
    clock: Callable[[], float],
) -> tuple[ToolCall, dict[str, Any] | None]:
    timeout_s = min(tool.timeout_ms / 1000, settings.timeout_s)
    retries = 0 if tool.side_effect is SideEffect.NON_IDEMPOTENT_WRITE else tool.retries
    started = clock()
    error = "not called"
    attempt = 0

    def record(output: str | None, failure: str | None, attempts: int) -> ToolCall:
        return ToolCall(
            tool=tool.id,
            input=json_text(arguments),
            output=output,
            success=failure is None,
            error=failure,
            latency_ms=max(0.0, (clock() - started) * 1000),
            attempts=attempts,
        )

    for attempt in range(1, retries + 2):
        try:
            output = await asyncio.wait_for(executor.call(tool, dict(arguments)), timeout_s)
            if not isinstance(output, dict):
                raise TypeError(f"returned {type(output).__name__}, not an object")
            encoded = json_text(output)
        except TimeoutError:
            error = f"timeout after {timeout_s:g} s"
        except asyncio.CancelledError:
            raise
        except ToolRefusedError as exc:  # the operator's policy: trying again changes nothing
            error = f"refused: {exc}"[:1000]
            break
        except Exception as exc:  # a tool is foreign code: any failure is data, not a crash
            error = f"{type(exc).__name__}: {exc}"[:1000]
        else:
            return record(encoded, None, attempt), output
    return record(None, error, attempt), None


_JSON_CHECKS: dict[VariableType, Callable[[Any], bool]] = {
    VariableType.STRING: lambda v: isinstance(v, str),
    VariableType.NUMBER: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    VariableType.BOOLEAN: lambda v: isinstance(v, bool),
    VariableType.DATETIME: lambda v: isinstance(v, str),
    VariableType.JSON: lambda v: True,
}


def _entry(
    spec: CustomerDataField | None, value: Any, previous: VariableEntry | None, now: datetime
) -> VariableEntry | None:
    """The customer variable a tool output sets; outputs that are not fields, or whose value
    does not fit the field's type, stay tool outputs only."""
    if spec is None or not _JSON_CHECKS[spec.type](value):
        return None
    history: list[VariableChange] = []
    if previous is not None:
        if previous.value == json_text(value):
            return None
        change = VariableChange(
            value=previous.value, source=previous.source, at=previous.last_updated_at
        )
        history = [*previous.history, change][-MAX_HISTORY:]
    return VariableEntry(
        value=json_text(value),
        type=spec.type,
        scope=spec.scope,
        source=VariableSource.TOOL,
        confidence=1.0,
        last_updated_at=now,
        history=history,
    )


# -- executors --------------------------------------------------------------------------------


@dataclass
class PackToolExecutor:
    """Routes each tool to the Python or the HTTP executor by its implementation."""

    python: ToolExecutor
    """The Python tools' executor (``sinks.python_tools.PythonToolExecutor``: the operator's
    allowed modules only)."""
    http: ToolExecutor | None = None
    """The HTTP tools' executor (``sinks.http_tools.HttpToolExecutor``: behind the SSRF guard)."""

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        if tool.implementation.python is not None:
            return await self.python.call(tool, arguments)
        if self.http is None:
            raise RuntimeError(f"tool {tool.id} needs HTTP and no HTTP client was given")
        return await self.http.call(tool, arguments)
