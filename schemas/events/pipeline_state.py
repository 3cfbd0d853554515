"""The stream topology's own state, kept in changelogged tables (so a restart recovers it).

Each is written by the agent of the session's partition, so it sits in the same partition
as the turns it tracks.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.base import SchemaModel
from schemas.events.retrieval import RetrievalResult
from schemas.events.turn_envelope import TurnEnvelope
from schemas.events.turn_requested import TurnRequested
from schemas.fields import Id, Timestamp

MAX_WAITING = 64


class SessionGate(SchemaModel):
    """One channel identity (``tenant:channel:channel_id``): the customer it resolved to,
    that customer's open session per agent, and the one-turn-in-flight gate.

    ``in_flight`` is the turn being processed, ``in_flight_later`` the requests coalesced
    into it (their ids also in ``in_flight_coalesced``), kept whole so that the turn can be
    driven again after a crash;
    ``waiting`` holds requests that arrived meanwhile, coalesced into the next turn when the
    current one is persisted. Answered turn ids are not kept here (the gate is written on
    every admission and must stay small): they are in the seen-turns table
    (:class:`SeenTurn`).
    """

    customer_id: Id | None = None
    sessions: dict[Id, Id] = Field(default_factory=dict)
    in_flight: TurnRequested | None = None
    in_flight_coalesced: list[Id] = Field(default_factory=list)
    in_flight_later: Annotated[list[TurnRequested], Field(max_length=MAX_WAITING)] = Field(
        default_factory=list
    )
    in_flight_since: Timestamp | None = None
    waiting: Annotated[list[TurnRequested], Field(max_length=MAX_WAITING)] = Field(
        default_factory=list
    )


class SeenTurn(SchemaModel):
    """A turn id a session's gate has finished (answered, alone or coalesced), keyed by the
    session key and the turn id: a request naming it again is a replay or a resend and is
    dropped. Kept for the request topic's retention, so exactly-once by (tenant, session,
    turn id) holds for as long as a request can be read again; then deleted (a tombstone)."""

    at: Timestamp


class RetrievalJoin(SchemaModel):
    """The P4 fan-in of one turn: the context waiting for its retrieval results (either may
    arrive first), until every type answered or ``deadline`` passed."""

    turn_id: Id
    envelope: TurnEnvelope | None = None
    results: list[RetrievalResult] = Field(default_factory=list)
    deadline: Timestamp | None = None
    done: bool = False
