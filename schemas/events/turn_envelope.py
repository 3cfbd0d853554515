"""The turn in transit between phases."""

from __future__ import annotations

from schemas.base import SchemaModel
from schemas.domain.phase import Phase
from schemas.domain.turn_context import TurnContext
from schemas.fields import Attempt, Id, SessionKey, Timestamp


class TurnEnvelope(SchemaModel):
    """A turn's context after ``phase`` completed.

    ``attempt`` is the generation attempt the turn is on (1 until P10 sends it back to P9),
    so the remediation loop stays bounded and each attempt's effects are idempotent by
    (turn, phase, attempt). ``session_key`` is the record key, repeated here so a consumer
    never has to parse it.
    """

    turn_id: Id
    session_key: SessionKey
    phase: Phase
    attempt: Attempt = 1
    context: TurnContext
    emitted_at: Timestamp
