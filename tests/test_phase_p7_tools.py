"""P7: which tools run, when, in what order, and how failures are recorded."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processors.phases.tools import (
    DueBinding,
    bindings_due,
    run_tools,
)
from schemas.domain.customer_data import VariableEntry, VariableScope, VariableSource, VariableType
from schemas.domain.outcome import OutcomeCategory
from schemas.domain.rules import AppliedRule, RuleVerdict
from schemas.domain.scenario import ScenarioAction, ScenarioDecision
from schemas.fields import json_text
from schemas.pack.agent_pack import AgentPack
from schemas.pack.common import ToolTiming
from schemas.pack.tools import Tool, ToolImplementation
from sinks.pack_files import load_pack
from sinks.python_tools import PythonToolExecutor
from streams.settings import ToolsPhaseSettings

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
SETTINGS = ToolsPhaseSettings()


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def var(value: Any, type_: VariableType = VariableType.STRING) -> VariableEntry:
    return VariableEntry(
        value=json_text(value),
        type=type_,
        scope=VariableScope.CASE,
        source=VariableSource.USER,
        confidence=1.0,
        last_updated_at=NOW,
    )


def due(*tool_ids: str, when: ToolTiming = ToolTiming.BEFORE) -> list[DueBinding]:
    return [DueBinding(tool_id, when, "test") for tool_id in tool_ids]


class FakeExecutor:
    """Scripted tools: records events, counts calls, can fail or hang."""

    def __init__(self, behaviour: dict[str, Any] | None = None) -> None:
        self.behaviour = behaviour or {}
        self.events: list[str] = []
        self.calls: dict[str, int] = {}

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls[tool.id] = self.calls.get(tool.id, 0) + 1
        self.events.append(f"start:{tool.id}")
        action = self.behaviour.get(tool.id)
        if callable(action):
            result = await action(tool, arguments)
        elif isinstance(action, Exception):
            raise action
        else:
            result = action or {}
        self.events.append(f"end:{tool.id}")
        return dict(result)


async def test_tool_runs_only_while_the_variables_it_provides_are_missing(
    pack: AgentPack,
) -> None:
    executor = PythonToolExecutor(PACK_DIR)
    customer = {"order_id": var("A-10023"), "customer_id": var("C-1001")}
    result = await run_tools(due("lookup_order"), customer, pack, executor, SETTINGS, now=NOW)
    assert [c.tool for c in result.calls] == ["lookup_order"]
    assert result.calls[0].success
    assert json.loads(result.variables["order_total"].value) == 649.0
    assert result.variables["order_total"].source is VariableSource.TOOL
    assert result.categories == []

    known = {
        **customer,
        "order_status": var("delivered"),
        "order_total": var(649.0, VariableType.NUMBER),
        "days_since_delivery": var(26, VariableType.NUMBER),
    }
    again = await run_tools(due("lookup_order"), known, pack, executor, SETTINGS, now=NOW)
    assert again.calls == []
    assert "lookup_order" in again.skipped


async def test_tool_without_its_required_inputs_is_skipped_not_failed(pack: AgentPack) -> None:
    executor = FakeExecutor()
    result = await run_tools(
        due("check_refund_eligibility"), {"order_id": var("A-1")}, pack, executor, SETTINGS, now=NOW
    )
    assert result.calls == [] and executor.calls == {}
    assert "refund_reason" in result.skipped["check_refund_eligibility"]
    assert result.categories == []


async def test_independent_tools_run_concurrently(pack: AgentPack) -> None:
    both_started = asyncio.Event()
    started: list[str] = []

    async def wait_for_the_other(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        started.append(tool.id)
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 5)  # sequential runs would never get here
        return {}

    executor = FakeExecutor(
        {"lookup_order": wait_for_the_other, "track_shipment": wait_for_the_other}
    )
    customer = {"order_id": var("A-10024"), "customer_id": var("C-1001")}
    result = await run_tools(
        due("lookup_order", "track_shipment"), customer, pack, executor, SETTINGS, now=NOW
    )
    assert all(c.success for c in result.calls)
    assert executor.events[:2] == ["start:lookup_order", "start:track_shipment"]


async def test_a_tool_that_needs_another_tools_output_runs_after_it(pack: AgentPack) -> None:
    find_order = Tool(
        id="find_latest_order",
        description="Finds the customer's latest order.",
        input_schema={"type": "object", "properties": {"customer_id": {"type": "string"}}},
        output_schema={"type": "object", "properties": {"order_id": {"type": "string"}}},
        implementation=ToolImplementation(python="x.y:z"),
    )
    extended = pack.model_copy(update={"tools": [*pack.tools, find_order]})
    executor = FakeExecutor(
        {"find_latest_order": {"order_id": "A-10024"}, "track_shipment": {"carrier": "FedEx"}}
    )
    result = await run_tools(
        due("track_shipment", "find_latest_order"),
        {"customer_id": var("C-1001")},
        extended,
        executor,
        SETTINGS,
        now=NOW,
    )
    assert executor.events == [
        "start:find_latest_order",
        "end:find_latest_order",
        "start:track_shipment",
        "end:track_shipment",
    ]
    assert json.loads(result.calls[1].input)["order_id"] == "A-10024"


async def test_timeout_is_recorded_as_a_failed_call_and_system_error(pack: AgentPack) -> None:
    async def hang(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}

    slow = [
        t.model_copy(update={"timeout_ms": 20, "retries": 0}) if t.id == "lookup_order" else t
        for t in pack.tools
    ]
    executor = FakeExecutor({"lookup_order": hang})
    customer = {"order_id": var("A-10023"), "customer_id": var("C-1001")}
    result = await run_tools(
        due("lookup_order"),
        customer,
        pack.model_copy(update={"tools": slow}),
        executor,
        SETTINGS,
        now=NOW,
    )
    (call,) = result.calls
    assert not call.success and call.error is not None and "timeout" in call.error
    assert result.categories == [OutcomeCategory.SYSTEM_ERROR]
    assert result.variables == {}


async def test_reads_are_retried_and_non_idempotent_writes_never(pack: AgentPack) -> None:
    executor = FakeExecutor(
        {"lookup_order": RuntimeError("db down"), "handoff_to_human": RuntimeError("503")}
    )
    customer = {"order_id": var("A-10023"), "customer_id": var("C-1001")}
    result = await run_tools(
        due("lookup_order", "handoff_to_human"), customer, pack, executor, SETTINGS, now=NOW
    )
    lookup_retries = next(t.retries for t in pack.tools if t.id == "lookup_order")
    assert lookup_retries == 2
    assert executor.calls == {"lookup_order": 3, "handoff_to_human": 1}
    attempts = {c.tool: c.attempts for c in result.calls}
    assert attempts == {"lookup_order": 3, "handoff_to_human": 1}


async def test_a_raising_tool_never_propagates(pack: AgentPack) -> None:
    executor = FakeExecutor({"lookup_customer": ValueError("boom")})
    result = await run_tools(
        due("lookup_customer"), {"customer_id": var("C-1001")}, pack, executor, SETTINGS, now=NOW
    )
    (call,) = result.calls
    assert not call.success and call.error == "ValueError: boom"
    assert OutcomeCategory.SYSTEM_ERROR in result.categories


async def test_a_retry_that_succeeds_is_a_success(pack: AgentPack) -> None:
    failures = iter([RuntimeError("flaky")])

    async def flaky(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        error = next(failures, None)
        if error:
            raise error
        return {"found": True, "customer_tier": "gold"}

    executor = FakeExecutor({"lookup_customer": flaky})
    result = await run_tools(
        due("lookup_customer"), {"customer_id": var("C-1001")}, pack, executor, SETTINGS, now=NOW
    )
    (call,) = result.calls
    assert call.success and call.attempts == 2
    assert result.categories == []


def test_bindings_come_from_applied_rules_and_entered_steps_at_their_moment(
    pack: AgentPack,
) -> None:
    applied = [
        AppliedRule(rule_id="look_up_order_first", score=0.9, verdict=RuleVerdict.APPLIES),
        AppliedRule(rule_id="human_on_request", score=0.8, verdict=RuleVerdict.APPLIES),
    ]
    decisions = [
        ScenarioDecision(
            scenario_id="refund",
            scenario_version=1,
            action=ScenarioAction.CONTINUE,
            from_step_id="ask_reason",
            entered_step_id="check_eligibility",
        )
    ]
    now_due = {(b.tool_id, b.when) for b in bindings_due(pack, applied, decisions)}
    assert now_due == {
        ("lookup_order", ToolTiming.BEFORE),
        ("lookup_customer", ToolTiming.BEFORE),
        ("check_refund_eligibility", ToolTiming.DURING),
    }
    after = bindings_due(pack, applied, decisions, {ToolTiming.AFTER})
    assert [(b.tool_id, b.bound_by) for b in after] == [
        ("handoff_to_human", "rule:human_on_request")
    ]
    assert bindings_due(pack, [], []) == []
