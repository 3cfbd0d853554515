"""P7: one tool invocation, for the trace and for the response."""

from __future__ import annotations

from pydantic import model_validator

from schemas.base import SchemaModel
from schemas.fields import Attempt, Id, JsonText, Millis, Text


class ToolCall(SchemaModel):
    """A tool call after its retries; a failure carries ``error`` (and adds SYSTEM_ERROR)."""

    tool: Id
    input: JsonText
    output: JsonText | None = None
    success: bool
    error: Text | None = None
    latency_ms: Millis
    attempts: Attempt

    @model_validator(mode="after")
    def _error_iff_failed(self) -> ToolCall:
        if self.success == (self.error is not None):
            raise ValueError("a failed call carries an error, a successful one does not")
        return self
