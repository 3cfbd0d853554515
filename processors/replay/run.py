"""Drive recorded turns through the in-process turn runner against a pack.

What a turn depends on besides the pack, and how a replay pins it:

* **time**: every clock read of a turn returns the recorded ``received_at`` (dates the
  customer wrote, session idle checks and retrieval deadlines see the moment the turn ran);
* **ids**: the request keeps its recorded ``turn_id``; customer and session ids are derived
  from channel, channel id and turn id (:mod:`processors.turn.ids`), so P1 resolves the same
  ones; all turns run in their recorded order over one in-memory state, so sessions and
  customer data build up as they did;
* **tools**: answered from the recording (:mod:`processors.replay.tools`);
* **LLM**: answered from the recorded calls (:mod:`processors.replay.llm`; a call the
  recording lacks gets the phase's heuristic and is reported), or by live models when the
  caller gives them; the report says which (:attr:`ReplayRun.llm_note`).

Timings, tool latencies and retrieval scores vary from run to run and are not compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from processors.llm import LlmTask
from processors.llm_budget import LLM_PHASES
from processors.phases.tools import ToolExecutor
from processors.replay.diff import Change, ChangeKind, compare
from processors.replay.llm import RecordedLlm
from processors.replay.recording import RecordedTurn, conversations, in_run_order, used_llm
from processors.replay.tools import CallKey, RecordedTools
from processors.turn.deps import TurnDeps
from processors.turn.in_process import MemoryState, run_turn
from schemas.domain.phase import Phase
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

    def __repr__(self) -> str:
        """Short: ``asyncio.run`` formats its main task, result included, when it restores
        the SIGINT handler (CPython 3.11's ``signal`` builds a ``ValueError`` message with
        ``%r``), and the full repr of 1,000 turns took ~1.7 s, twice, on every replay."""
        turns = sum(len(c.turns) for c in self.conversations)
        return f"ReplayRun({len(self.conversations)} conversations, {turns} turns)"


LLM_RECORDED_NOTE = (
    "LLM phases were answered from the recorded model outputs (no model was called); a call "
    "the recording lacks (a changed prompt or model) was answered by the phase's heuristic "
    "and is reported as unrecorded_llm_call"
)
LLM_NOT_RECORDED_NOTE = (
    "the recording used LLM phases but holds no model outputs (recorded before they were "
    "kept): every LLM call was answered by the phase's heuristic and is reported as "
    "unrecorded_llm_call; use --live-llm to call the model"
)
LLM_LIVE_NOTE = (
    "LLM phases called the model live (not deterministic: answers that differ from the "
    "recorded ones are reported as llm_output)"
)


def _llm_note(turns: Sequence[RecordedTurn], llm: RecordedLlm | None) -> str | None:
    if not used_llm(turns):
        return None
    if llm is None:
        return LLM_LIVE_NOTE
    if not llm.everything:
        return LLM_NOT_RECORDED_NOTE
    unused = len(llm.everything.keys() - llm.asked)
    if unused:
        return (
            f"{LLM_RECORDED_NOTE}; {unused} recorded calls were not asked again (a changed "
            "prompt, or a phase not in llm mode in this replay's settings)"
        )
    return LLM_RECORDED_NOTE


async def replay(
    turns: Sequence[RecordedTurn],
    pack: AgentPack,
    base: TurnDeps,
    *,
    pack_version: int | None = None,
    live_tools: ToolExecutor | None = None,
    live_llm: Mapping[Phase, LlmTask] | None = None,
) -> ReplayRun:
    """Every turn of ``turns`` through ``pack`` in recorded order, compared with its record.
    A turn that raises is reported (``replay_error``) and the run goes on. ``live_tools``
    calls READ tools the recording lacks (see :mod:`processors.replay.tools`); ``live_llm``
    answers LLM phases instead of the recording (``base.llm`` is not used either way)."""
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
    recorded_llm: RecordedLlm | None = None
    llm: Mapping[Phase, LlmTask]
    if live_llm is None:
        recorded_llm = RecordedLlm.of(c for t in ordered for c in t.record.context.llm_calls)
        llm = dict.fromkeys(LLM_PHASES, recorded_llm)
    else:
        llm = live_llm
    deps = dataclasses.replace(base, tools=lambda _pack: tools, clock=clock, llm=llm)
    state = MemoryState()
    version = pack_version or (first.context.pack_version if first else None) or 1
    state.add_pack(pack, version)
    for turn in ordered:
        index = conversation_of[turn.record.turn_id]
        tools.for_conversation(calls_by_conversation[index])
        tools.for_turn(turn.record.context.tool_calls)
        if recorded_llm is not None:
            recorded_llm.for_turn(turn.record.context.llm_calls)
        clock.now = turn.record.context.received_at
        results[index].turns.append(await _one(turn, state, deps, tools, recorded_llm))
    return ReplayRun(results, _llm_note(turns, recorded_llm))


async def _one(
    turn: RecordedTurn,
    state: MemoryState,
    deps: TurnDeps,
    tools: RecordedTools,
    llm: RecordedLlm | None,
) -> TurnResult:
    try:
        _response, record = await run_turn(turn.request, state, deps)
    except Exception as exc:  # a turn the candidate cannot run is a finding, not a crash
        error = Change(ChangeKind.REPLAY_ERROR, "", f"{type(exc).__name__}: {exc}")
        return TurnResult(turn, None, (error,))
    missing: list[CallKey] = list(tools.missing)
    missing_llm = [str(m) for m in llm.missing] if llm is not None else []
    changes = compare(turn.record.context, record.context, missing, missing_llm)
    return TurnResult(turn, record, tuple(changes))
