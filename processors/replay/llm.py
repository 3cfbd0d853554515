"""The LLM during a replay: answered from the recorded calls (``TurnContext.llm_calls``),
never from a model.

A call is matched by its :func:`~processors.llm_calls.key_of` (a hash of phase, task,
schema, prompts and the phase settings' model), first among the calls the same turn
recorded, taken in their recorded order (a regenerated answer judged twice asks the same
twice), then among all recorded calls. A recorded output is returned as it was (the phase
validates it again and falls back again where it fell back); a recorded failure raises
:class:`LlmError` with its recorded message, so the phase runs its heuristic as it did. A
call nothing recorded, which is what a candidate pack that changes a prompt makes, raises
:class:`LlmError` too: the phase runs its heuristic, and :attr:`RecordedLlm.missing` lists
the call for the report.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.llm import LlmError, LlmResult
from processors.llm_calls import key_of
from schemas.domain.llm_call import LlmCall
from schemas.domain.phase import Phase
from schemas.settings import PhaseSettings

NOT_RECORDED = "call not in the recording: heuristic fallback"
"""The ``LlmError`` message of a call the recording lacks (the turn's ``llm.fallback``)."""


@dataclass(frozen=True)
class MissingCall:
    """A call the replay made and the recording lacks: phase, task and key."""

    phase: Phase
    task: str
    key: str

    def __str__(self) -> str:
        return f"{self.phase.value}/{self.task} ({self.key[:12]})"


def _first_by_key(calls: Iterable[LlmCall]) -> dict[str, LlmCall]:
    found: dict[str, LlmCall] = {}
    for call in calls:
        found.setdefault(call.key, call)
    return found


@dataclass
class RecordedLlm:
    """The :class:`~processors.llm.LlmTask` of a replay for every phase; :meth:`for_turn`
    sets the turn being replayed."""

    everything: dict[str, LlmCall]
    turn: dict[str, deque[LlmCall]] = field(default_factory=dict)
    missing: list[MissingCall] = field(default_factory=list)
    asked: set[str] = field(default_factory=set)
    """Keys of the recorded calls the replay asked again (of every turn)."""

    @classmethod
    def of(cls, calls: Iterable[LlmCall]) -> RecordedLlm:
        return cls(_first_by_key(calls))

    def for_turn(self, calls: Iterable[LlmCall]) -> None:
        self.turn = {}
        for call in calls:
            self.turn.setdefault(call.key, deque()).append(call)
        self.missing = []

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
        key, _model = key_of(
            settings, phase=phase, system=system, user=user, schema_name=schema_name, schema=schema
        )
        found = self._take(key)
        if found is not None:
            self.asked.add(key)
        if found is None:
            self.missing.append(MissingCall(phase, schema_name, key))
            raise LlmError(f"{phase.value}: {NOT_RECORDED}")
        if found.output is None:
            raise LlmError(found.error or f"{phase.value}: recorded as failed", list(found.usage))
        data = json.loads(found.output)
        if not isinstance(data, dict):  # the port only ever records objects
            raise LlmError(f"{phase.value}: recorded output is not a JSON object")
        return LlmResult(data=data, usage=list(found.usage), attempts=found.attempts)

    def _take(self, key: str) -> LlmCall | None:
        queued = self.turn.get(key)
        if queued:  # in recorded order; the last one answers any further repeat
            return queued.popleft() if len(queued) > 1 else queued[0]
        return self.everything.get(key)
