"""Replay's pure parts, one module at a time: tool answers from a recording, the field
diff, the word diff, the gate, the export's masking and its file round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processors.replay.diff import ChangeKind, compare
from processors.replay.html import render
from processors.replay.recording import RecordedTurn, conversations
from processors.replay.report import ReplayHeader, failing, parse_kinds, summarize, table
from processors.replay.run import ConversationResult, ReplayRun, TurnResult
from processors.replay.tools import NotRecordedError, RecordedTools, ReplayedToolError
from processors.replay.words import inline, word_diff
from schemas.domain.enforcement import EnforcementLane, EnforcementResult, Violation
from schemas.domain.tools import ToolCall
from schemas.domain.turn_context import TurnContext
from schemas.events.turn_requested import TurnRequested
from schemas.fields import json_text
from schemas.pack.tools import Tool
from schemas.samples import turn_record
from streams.replay_source import mask_turn, read_export, write_export


def _tool(tool_id: str, side_effect: str = "READ") -> Tool:
    return Tool.model_validate(
        {
            "id": tool_id,
            "side_effect": side_effect,
            "description": "a tool",
            "input_schema": {"type": "object", "properties": {"order": {"type": "string"}}},
            "output_schema": {"type": "object"},
            "implementation": {"python": "tools:lookup"},
        }
    )


def _context(**update: Any) -> TurnContext:
    return turn_record().context.model_copy(update=update)


def _recorded(message: str = "my mail is jane.doe@example.com") -> RecordedTurn:
    record = turn_record()
    context = record.context.model_copy(
        update={
            "input": record.context.input.model_copy(update={"message": message}),
            "response_text": "We wrote to jane.doe@example.com.",
        }
    )
    record = record.model_copy(update={"context": context})
    request = TurnRequested(
        turn_id=record.turn_id, input=context.input, sent_at=context.received_at
    )
    return RecordedTurn(request, record)


async def test_a_recorded_call_is_answered_by_name_and_canonical_input() -> None:
    call = ToolCall(
        tool="lookup_order",
        input='{"order":"A-1","page":2}',
        output=json_text({"status": "shipped"}),
        success=True,
        latency_ms=1.0,
        attempts=1,
    )
    tools = RecordedTools.of([call])
    assert await tools.call(_tool("lookup_order"), {"page": 2, "order": "A-1"}) == {
        "status": "shipped"
    }
    assert tools.missing == []


async def test_a_call_the_recording_lacks_is_refused_and_listed_not_made() -> None:
    tools = RecordedTools.of([])
    with pytest.raises(NotRecordedError):
        await tools.call(_tool("lookup_order"), {"order": "A-2"})
    assert tools.missing == [("lookup_order", '{"order":"A-2"}')]


class _Live:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(tool.id)
        return {"live": True}


async def test_with_a_live_executor_only_read_tools_the_recording_lacks_are_called() -> None:
    live = _Live()
    tools = RecordedTools.of([], live=live)
    assert await tools.call(_tool("lookup_order"), {"order": "A-3"}) == {"live": True}
    with pytest.raises(NotRecordedError):
        await tools.call(_tool("create_refund", "NON_IDEMPOTENT_WRITE"), {"order": "A-3"})
    assert live.calls == ["lookup_order"]
    assert tools.missing == [("create_refund", '{"order":"A-3"}')]


async def test_a_recorded_failure_fails_again() -> None:
    failed = ToolCall(
        tool="t", input="{}", success=False, error="timeout after 5 s", latency_ms=5.0, attempts=1
    )
    with pytest.raises(ReplayedToolError, match="timeout after 5 s"):
        await RecordedTools.of([failed]).call(_tool("t"), {})


def test_the_same_context_has_no_change() -> None:
    assert compare(_context(), _context()) == []


def test_each_decision_field_is_its_own_kind_of_change() -> None:
    before = _context()
    violation = Violation(rule_id="strict", lane=EnforcementLane.EXPRESSION, detail="no")
    after = _context(
        canonical_intent="other",
        applied_rules=[],
        tool_calls=before.tool_calls[1:],
        response_text="A different answer.",
        enforcement=[
            EnforcementResult(attempt=1, passed=False, violations=[violation], fallback_used=True)
        ],
    )
    kinds = {c.kind for c in compare(before, after)}
    assert {
        ChangeKind.INTENT,
        ChangeKind.RULE_REMOVED,
        ChangeKind.LOST_TOOL_CALL,
        ChangeKind.ANSWER,
        ChangeKind.NEW_VIOLATION,
        ChangeKind.RESOLVED_VIOLATION,
        ChangeKind.NEW_FALLBACK,
        ChangeKind.REMEDIATION,
    } <= kinds
    assert ChangeKind.NEW_TOOL_CALL not in kinds


def test_an_unrecorded_call_is_reported_as_such_not_as_a_new_call() -> None:
    before = _context(tool_calls=[])
    after = _context()
    key = ("orders.lookup", '{"order":"A-1009"}')
    changes = {c.kind: c for c in compare(before, after, [key])}
    assert changes[ChangeKind.UNRECORDED_TOOL_CALL].after == 'orders.lookup({"order":"A-1009"})'
    # the other call is new in this turn but was recorded: a new call, not an unrecorded one
    assert changes[ChangeKind.NEW_TOOL_CALL].after == 'refunds.eligibility({"order":"A-1009"})'


def test_the_word_diff_marks_removed_and_added_words() -> None:
    runs = word_diff("your order ships today", "your order ships tomorrow morning")
    assert inline(runs) == "your order ships [-today-] {+tomorrow morning+}"


def _run_with_change() -> ReplayRun:
    turn = _recorded()
    changes = tuple(compare(_context(), _context(canonical_intent="other")))
    return ReplayRun([ConversationResult("ses-1", [TurnResult(turn, turn.record, changes)])])


def test_the_gate_fails_only_on_the_kinds_asked_for() -> None:
    run = _run_with_change()
    assert failing(run, parse_kinds("intent")) == {"intent": 1}
    assert failing(run, parse_kinds("new_violation,lost_tool_call")) == {}
    with pytest.raises(ValueError, match="unknown change kind 'bogus'"):
        parse_kinds("bogus")


def test_the_table_and_the_page_show_the_summary_and_the_change() -> None:
    run = _run_with_change()
    header = ReplayHeader("export.jsonl", "packs/x", masked_texts=True)
    lines = table(run, header)
    assert "1 turns in 1 conversations: 1 turns changed in 1 conversations" in lines
    assert any("intent: refund_request -> other" in line for line in lines)
    page = render(run, header)
    assert "<table id='summary'>" in page and "ses-1" in page and "masked" in page
    assert summarize(run).by_kind == {"intent": 1}


def test_the_export_masks_texts_as_analytics_does() -> None:
    masked = mask_turn(_recorded(), None)
    assert masked.request.input.message == "my mail is [email]"
    assert masked.record.context.input.message == "my mail is [email]"
    assert masked.record.context.response_text == "We wrote to [email]."


def test_an_export_file_round_trips_and_lists_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    assert write_export([_recorded()], path, None, mask=False) == 1
    with path.open("a", encoding="utf-8") as out:
        out.write('{"request": 1}\n')
    read = read_export(path)
    assert read.masked is False
    assert [t.record for t in read.turns] == [_recorded().record]
    assert read.bad_lines and read.bad_lines[0].startswith(f"{path}:3:")
    assert conversations(read.turns)[0][0].conversation == turn_record().session_id
