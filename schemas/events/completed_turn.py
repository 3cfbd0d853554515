"""The record of an answered turn, on its way to the P11 sinks."""

from __future__ import annotations

from schemas.base import SchemaModel
from schemas.domain.turn_record import TurnRecord
from schemas.fields import SessionKey, Timestamp


class CompletedTurn(SchemaModel):
    """A :class:`TurnRecord` as an event; sinks deduplicate by ``record.turn_id``."""

    session_key: SessionKey
    record: TurnRecord
    emitted_at: Timestamp
