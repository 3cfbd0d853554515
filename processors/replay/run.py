"""Drive recorded turns through the in-process turn runner against a pack.

What a turn depends on besides the pack, and how a replay pins it:

* **time**: every clock read of a turn returns the recorded ``received_at`` (dates the
  customer wrote, session idle checks and retrieval deadlines see the moment the turn ran);
* **ids**: the request keeps its recorded ``turn_id``; customer and session ids are derived
  from channel, channel id and turn id (:mod:`processors.turn.ids`), so P1 resolves the same
  ones; all turns run in their recorded order over one in-memory state, so sessions and
  customer data build up as they did;
* **tools**: answered from the recording (:mod:`processors.replay.tools`);
* **LLM**: the records carry token counts, not model outputs, so a phase that ran in ``llm``
  mode is replayed with its heuristic (the deps given carry no LLM unless the caller chose
  live calls); the report says so (:attr:`ReplayRun.llm_note`).

Timings, tool latencies and retrieval scores vary from run to run and are not compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from processors.phases.tools import ToolExecutor
from processors.replay.diff import Change, ChangeKind, compare
from processors.replay.recording import RecordedTurn, conversations, in_run_order, used_llm
from processors.replay.tools import CallKey, RecordedTools
from processors.turn.deps import TurnDeps
from processors.turn.in_process import MemoryState, run_turn
from schemas.domain.turn_record import TurnRecord
from schemas.pack.agent_pack import AgentPack


@dataclass
class PinnedClock:
    """A clock that reads what it was set to: the recorded time of the turn being replayed."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class TurnResult:
    """One replayed turn: the recording, the replay's record (None when it raised) and the
    changes between them."""

    recorded: RecordedTurn
    replayed: TurnRecord | None
    changes: tuple[Change, ...]

    @property
    def kinds(self) -> set[ChangeKind]:
        return {c.kind for c in self.changes}


@dataclass
class ConversationResult:
    conversation: str
    turns: list[TurnResult] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(t.changes for t in self.turns)


@dataclass
class ReplayRun:
    """Every conversation's results, in recorded order; ``llm_note`` says how LLM phases
    were replayed when the recording used them."""

    conversations: list[ConversationResult]
    llm_note: str | None = None


LLM_FALLBACK_NOTE = (
    "the recording used LLM phases; records hold no model outputs, so those phases were "
    "replayed with their heuristics (answers of LLM phases differ by design; use --live-llm "
    "to call the model)"
)
LLM_LIVE_NOTE = "the recording used LLM phases; they were replayed calling the model live"


async def replay(
    turns: Sequence[RecordedTurn],
    pack: AgentPack,
    base: TurnDeps,
    *,
    pack_version: int | None = None,
    live_tools: ToolExecutor | None = None,
) -> ReplayRun:
    """Every turn of ``turns`` through ``pack`` in recorded order, compared with its record.
    A turn that raises is reported (``replay_error``) and the run goes on. ``live_tools``
    calls READ tools the recording lacks (see :mod:`processors.replay.tools`)."""
    grouped = conversations(turns)
    conversation_of = {t.record.turn_id: i for i, c in enumerate(grouped) for t in c}
    results = [ConversationResult(c[0].conversation) for c in grouped]
    ordered = in_run_order(turns)
    tools = RecordedTools.of(
        (call for t in ordered for call in t.record.context.tool_calls), live=live_tools
    )
    calls_by_conversation = [
        [call for t in c for call in t.record.context.tool_calls] for c in grouped
    ]
    first = ordered[0].record if ordered else None
    clock = PinnedClock(first.context.received_at if first else datetime.min)
    deps = dataclasses.replace(base, tools=lambda _pack: tools, clock=clock)
    state = MemoryState()
    version = pack_version or (first.context.pack_version if first else None) or 1
    state.add_pack(pack, version)
    for turn in ordered:
        index = conversation_of[turn.record.turn_id]
        tools.for_conversation(calls_by_conversation[index])
        tools.for_turn(turn.record.context.tool_calls)
        clock.now = turn.record.context.received_at
        results[index].turns.append(await _one(turn, state, deps, tools))
    note = None
    if used_llm(turns):
        note = LLM_LIVE_NOTE if base.llm else LLM_FALLBACK_NOTE
    return ReplayRun(results, note)


async def _one(
    turn: RecordedTurn, state: MemoryState, deps: TurnDeps, tools: RecordedTools
) -> TurnResult:
    try:
        _response, record = await run_turn(turn.request, state, deps)
    except Exception as exc:  # a turn the candidate cannot run is a finding, not a crash
        error = Change(ChangeKind.REPLAY_ERROR, "", f"{type(exc).__name__}: {exc}")
        return TurnResult(turn, None, (error,))
    missing: list[CallKey] = list(tools.missing)
    return TurnResult(turn, record, tuple(compare(turn.record.context, record.context, missing)))
