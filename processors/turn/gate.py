"""The session gate as plain functions: one turn in flight per session, in order, with the
messages that arrived meanwhile coalesced into the next turn.

Every function takes the gate (and the event) and returns the new gate with a small value
saying what the caller must do: admit a batch, queue, drop a replay, refuse, release. The
session agent only reads and writes its tables and sends what these values say, so the
promises of the gate are checked here without Kafka (``tests/test_gate_properties.py``).

Whether a turn id was answered before is not in the gate (that would grow it by one id per
turn): the caller looks it up in the seen-turns table and passes it in as ``seen``; a
:class:`Released` value names the ids the caller must record there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.events.pipeline_state import MAX_WAITING, SessionGate
from schemas.events.turn_requested import TurnRequested
from schemas.fields import MAX_MESSAGE_CHARS

BACKLOG_FULL = "session_backlog_full"


@dataclass(frozen=True)
class Admitted:
    """Start the turn of ``batch`` (its first request leads, the rest are coalesced into it):
    write ``gate``, then run the turn. ``again``: the turn in flight driven again (a replay
    of its request after a crash, or the watchdog's nudge)."""

    gate: SessionGate
    batch: tuple[TurnRequested, ...]
    again: bool = False


@dataclass(frozen=True)
class Queued:
    """A turn of the session is in flight: write ``gate``, whose waiting list now ends with
    the request."""

    gate: SessionGate


@dataclass(frozen=True)
class Seen:
    """A replay of a request already answered, coalesced or waiting: nothing to do."""


@dataclass(frozen=True)
class Refused:
    """Not admitted: dead-letter the request (and answer it, see :func:`may_answer`)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Released:
    """The turn in flight is over: record ``finished`` as seen, then either write ``gate``
    (nothing waited) or admit ``next`` (whose gate already holds the release)."""

    gate: SessionGate
    finished: tuple[str, ...]
    next: Admitted | None


RequestDecision = Admitted | Queued | Seen | Refused


def on_request(
    gate: SessionGate, request: TurnRequested, seen: bool, now: datetime
) -> RequestDecision:
    """What a (valid, addressed) request does to its session's gate; ``seen``: whether its
    turn id is in the seen-turns table (answered within the request topic's retention)."""
    current = gate.in_flight
    if current is not None and current.turn_id == request.turn_id:
        return Admitted(
            admit(gate, [current, *gate.in_flight_later], gate.waiting, now),
            (current, *gate.in_flight_later),
            again=True,
        )
    if seen or in_gate(gate, request.turn_id):
        return Seen()
    if current is not None:
        if len(gate.waiting) >= MAX_WAITING:
            return Refused(BACKLOG_FULL, "too many waiting messages")
        return Queued(gate.model_copy(update={"waiting": [*gate.waiting, request]}))
    return Admitted(admit(gate, [request], [], now), (request,))


def admit(
    gate: SessionGate, batch: list[TurnRequested], rest: list[TurnRequested], now: datetime
) -> SessionGate:
    """The gate with ``batch`` in flight (since ``now``) and ``rest`` still waiting."""
    return gate.model_copy(
        update={
            "in_flight": batch[0],
            "in_flight_coalesced": [r.turn_id for r in batch[1:]],
            "in_flight_later": batch[1:],
            "in_flight_since": now,
            "waiting": rest,
        }
    )


def release(gate: SessionGate, now: datetime) -> Released:
    """Open the gate after the turn in flight and admit, coalesced, what fits of the
    waiting requests (see :func:`fitting`)."""
    finished = (
        (gate.in_flight.turn_id, *gate.in_flight_coalesced) if gate.in_flight is not None else ()
    )
    opened = gate.model_copy(
        update={
            "in_flight": None,
            "in_flight_coalesced": [],
            "in_flight_later": [],
            "in_flight_since": None,
            "waiting": [],
        }
    )
    if not gate.waiting:
        return Released(opened, finished, None)
    batch, rest = fitting(list(gate.waiting))
    admitted = Admitted(admit(opened, batch, rest, now), tuple(batch))
    return Released(admitted.gate, finished, admitted)


def is_in_flight(gate: SessionGate, turn_id: str) -> bool:
    """Whether ``turn_id`` leads the turn in flight (its completion is the one awaited)."""
    return gate.in_flight is not None and gate.in_flight.turn_id == turn_id


def in_gate(gate: SessionGate, turn_id: str) -> bool:
    """Whether ``turn_id`` is in flight (leading or coalesced) or waiting."""
    if is_in_flight(gate, turn_id) or turn_id in gate.in_flight_coalesced:
        return True
    return any(w.turn_id == turn_id for w in gate.waiting)


def may_answer(gate: SessionGate, turn_id: str, seen: bool) -> bool:
    """Whether a rejected record addressed at ``turn_id`` may get an error response. Not
    when the id is admitted (in flight, coalesced, waiting) or answered (``seen``): that
    response would stand as the real turn's answer (a forged record with a victim's turn id
    would suppress it, or a resend would get a second answer). Such a record is only
    dead-lettered."""
    return not seen and not in_gate(gate, turn_id)


def fitting(waiting: list[TurnRequested]) -> tuple[list[TurnRequested], list[TurnRequested]]:
    """The longest prefix whose messages, joined by newlines, fit in one message (at least
    one request)."""
    size = -1
    for count, request in enumerate(waiting):
        size += len(request.input.message) + 1
        if size > MAX_MESSAGE_CHARS and count > 0:
            return waiting[:count], waiting[count:]
    return waiting, []
