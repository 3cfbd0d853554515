"""Tools during a replay: answered from the recording, never called.

A call is matched by tool id and canonical input (JSON with sorted keys): first among the
calls the same turn recorded, then among those of its conversation, then among all recorded
calls (a candidate pack may call a tool a turn earlier or later than the recording did). A
recorded failure fails again (with the recorded error). A call nothing recorded is refused
(no retry, ``ToolCall(success=False)``) and listed in :attr:`RecordedTools.missing`, so the
report shows it instead of a tool having been called for real, unless a ``live`` executor
is given: then a READ tool the recording lacks is called through it (``--call-read-tools``);
writes never are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from processors.phases.tools import ToolExecutor
from processors.tool_policy import ToolRefusedError
from schemas.domain.tools import ToolCall
from schemas.pack.tools import SideEffect, Tool

CallKey = tuple[str, str]


def canonical_input(arguments: Any) -> str:
    """The input as compact JSON with sorted keys: equal inputs give equal strings."""
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def call_key(call: ToolCall) -> CallKey:
    return call.tool, canonical_input(json.loads(call.input))


class NotRecordedError(ToolRefusedError):
    """The replayed turn called a tool with an input the recording lacks."""


class ReplayedToolError(RuntimeError):
    """A recorded failure, failing again."""


def _index(calls: Iterable[ToolCall]) -> dict[CallKey, ToolCall]:
    found: dict[CallKey, ToolCall] = {}
    for call in calls:
        key = call_key(call)
        # a successful call of the same input wins over a failed one
        if key not in found or (call.success and not found[key].success):
            found[key] = call
    return found


@dataclass
class RecordedTools:
    """The ``ToolExecutor`` of a replay; :meth:`for_turn` sets the turn being replayed."""

    everything: dict[CallKey, ToolCall]
    conversation: dict[CallKey, ToolCall] = field(default_factory=dict)
    turn: dict[CallKey, ToolCall] = field(default_factory=dict)
    missing: list[CallKey] = field(default_factory=list)
    live: ToolExecutor | None = None
    """Calls READ tools the recording lacks (None: refuse them)."""

    @classmethod
    def of(cls, calls: Iterable[ToolCall], live: ToolExecutor | None = None) -> RecordedTools:
        return cls(_index(calls), live=live)

    def for_conversation(self, calls: Iterable[ToolCall]) -> None:
        self.conversation = _index(calls)

    def for_turn(self, calls: Iterable[ToolCall]) -> None:
        self.turn = _index(calls)
        self.missing = []

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        key = (tool.id, canonical_input(arguments))
        found = self.turn.get(key) or self.conversation.get(key) or self.everything.get(key)
        if found is None and self.live is not None and tool.side_effect is SideEffect.READ:
            return await self.live.call(tool, arguments)
        if found is None:
            self.missing.append(key)
            raise NotRecordedError(f"no recorded call of {tool.id} with input {key[1]}")
        if not found.success or found.output is None:
            raise ReplayedToolError(found.error or "recorded as failed")
        output = json.loads(found.output)
        if not isinstance(output, dict):
            raise ReplayedToolError(f"recorded output of {tool.id} is not an object")
        return output
