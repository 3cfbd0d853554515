"""Errors recorded on a turn: errors are data, so the pipeline keeps going and reports them."""

from __future__ import annotations

from schemas.base import SchemaModel
from schemas.domain.phase import Phase
from schemas.fields import Code, Text


class TurnError(SchemaModel):
    """One failure inside a turn: which phase, a stable code for dashboards, and a message."""

    phase: Phase
    code: Code
    message: Text
