"""The audit record of a finished turn, written by P11."""

from __future__ import annotations

from pydantic import model_validator

from schemas.base import SchemaModel
from schemas.domain.turn_context import TurnContext
from schemas.fields import Id, Timestamp


class TurnRecord(SchemaModel):
    """The full trace of one turn. The ids are repeated at the top, checked against the
    context, so that sinks and analysts need not dig for them."""

    turn_id: Id
    tenant_id: Id
    agent_id: Id
    customer_id: Id
    session_id: Id
    completed_at: Timestamp
    context: TurnContext

    @model_validator(mode="after")
    def _ids_match_context(self) -> TurnRecord:
        given = self.context.input
        if (self.tenant_id, self.agent_id) != (given.tenant_id, given.agent_id):
            raise ValueError("tenant_id and agent_id must match the context's input")
        return self
