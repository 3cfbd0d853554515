"""Egress: the answer (or the error) a channel gateway delivers to the customer."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import SchemaModel
from schemas.domain.errors import TurnError
from schemas.domain.outcome import TurnOutcome
from schemas.domain.turn_context import TimingKey
from schemas.domain.turn_input import Channel
from schemas.fields import Id, Label, Millis, Text, Timestamp


class ResponseStatus(StrEnum):
    OK = "OK"
    ERROR = "ERROR"


class TurnResponse(SchemaModel):
    """One response per turn. Channel and address are repeated so a gateway can route it
    without state; ``session_id`` is absent when the turn failed before P1 resolved it.
    ``coalesced_turn_ids``: requests this response also answers (messages the customer sent
    while the previous turn ran, answered together as one turn)."""

    turn_id: Id
    session_id: Id | None = None
    tenant_id: Id
    agent_id: Id
    channel: Channel
    channel_id: Label
    status: ResponseStatus
    text: Text | None = None
    error: TurnError | None = None
    outcome: TurnOutcome | None = None
    timings_ms: dict[TimingKey, Millis] = Field(default_factory=dict)
    responded_at: Timestamp
    coalesced_turn_ids: list[Id] = Field(default_factory=list)

    @model_validator(mode="after")
    def _status_matches_content(self) -> TurnResponse:
        if self.status is ResponseStatus.OK and (self.text is None or self.error is not None):
            raise ValueError("an OK response carries text and no error")
        if self.status is ResponseStatus.ERROR and self.error is None:
            raise ValueError("an ERROR response carries an error")
        return self
