"""What a replay reads: each completed turn with the request that started it, by conversation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_requested import TurnRequested


@dataclass(frozen=True)
class RecordedTurn:
    """One turn as it ran: the request from ``turn.requested`` (its message is the coalesced
    message the turn answered, see :func:`recorded_turn`) and the record from
    ``turn.completed``."""

    request: TurnRequested
    record: TurnRecord

    @property
    def conversation(self) -> str:
        """The conversation a turn belongs to: its session (P1 resolved it)."""
        return self.record.session_id

    def to_json(self) -> str:
        """One line of an export file."""
        return json.dumps(
            {
                "request": self.request.model_dump(mode="json"),
                "record": self.record.model_dump(mode="json"),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> RecordedTurn:
        """Raises ``ValueError`` (pydantic's ``ValidationError`` is one) on a bad line."""
        data = json.loads(line)
        if not isinstance(data, dict) or "request" not in data or "record" not in data:
            raise ValueError("an export line is an object with 'request' and 'record'")
        return cls(
            TurnRequested.model_validate(data["request"]), TurnRecord.model_validate(data["record"])
        )


def recorded_turn(request: TurnRequested, record: TurnRecord) -> RecordedTurn:
    """Pair a request with its record. A turn that coalesced several messages answered them
    joined line by line (``record.context.input.message``): the replayed request carries
    that joined message under the first request's id, so the turn sees what it saw then."""
    message = record.context.input.message
    if request.input.message != message:
        request = request.model_copy(
            update={"input": request.input.model_copy(update={"message": message})}
        )
    return RecordedTurn(request, record)


def conversations(turns: Iterable[RecordedTurn]) -> list[list[RecordedTurn]]:
    """Turns grouped by conversation, each in the order it ran (by the record's received
    time); conversations in the order their first turn ran."""
    ordered = sorted(turns, key=lambda t: (t.record.context.received_at, t.record.turn_id))
    grouped: dict[str, list[RecordedTurn]] = {}
    for turn in ordered:
        grouped.setdefault(turn.conversation, []).append(turn)
    return list(grouped.values())


def in_run_order(turns: Sequence[RecordedTurn]) -> list[RecordedTurn]:
    """All turns in the order they ran: customer data one conversation leaves is there for
    the next conversation of that customer, as it was when they were recorded."""
    return sorted(turns, key=lambda t: (t.record.context.received_at, t.record.turn_id))


def used_llm(turns: Iterable[RecordedTurn]) -> bool:
    """Whether any recorded turn asked an LLM (spent tokens, or recorded a call)."""
    return any(t.record.context.token_usage or t.record.context.llm_calls for t in turns)
