"""The stream topology's own state, kept in changelogged tables (so a restart recovers it).

Both are keyed by the session key, so they sit in the same partition as the turns they
track.
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
MAX_RECENT_TURNS = 64


class SessionGate(SchemaModel):
    """One channel identity (``tenant:channel:channel_id``): the customer it resolved to,
    that customer's open session per agent, and the one-turn-in-flight gate.

    ``in_flight`` is the turn being processed, ``in_flight_later`` the requests coalesced
    into it (their ids also in ``in_flight_coalesced``), kept whole so that the turn can be
    driven again after a crash;
    ``waiting`` holds requests that arrived meanwhile, coalesced into the next turn when the
    current one is persisted; ``recent_turn_ids`` remembers answered requests so a replayed
    request is recognised and dropped.
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
    recent_turn_ids: Annotated[list[Id], Field(max_length=MAX_RECENT_TURNS)] = Field(
        default_factory=list
    )


class RetrievalJoin(SchemaModel):
    """The P4 fan-in of one turn: the context waiting for its retrieval results (either may
    arrive first), until every type answered or ``deadline`` passed."""

    turn_id: Id
    envelope: TurnEnvelope | None = None
    results: list[RetrievalResult] = Field(default_factory=list)
    deadline: Timestamp | None = None
    done: bool = False
