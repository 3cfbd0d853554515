"""Ingress: a channel gateway publishes one of these per customer message."""

from __future__ import annotations

from schemas.base import SchemaModel
from schemas.domain.turn_input import TurnInput
from schemas.fields import Id, Timestamp


class TurnRequested(SchemaModel):
    """``turn_id`` is chosen by the producer and reused on a resend, so a replayed request
    is recognised and never answered twice."""

    turn_id: Id
    input: TurnInput
    sent_at: Timestamp
