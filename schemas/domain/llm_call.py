"""One LLM call of a turn as the LLM port answered it, kept in the record so a replay can
answer the same call again without the model (``processors/replay/llm.py``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from schemas.base import SchemaModel
from schemas.domain.phase import Phase
from schemas.domain.usage import TokenUsage
from schemas.fields import Attempt, Id, JsonText, Label, Text

MAX_LLM_CALLS = 64
"""Per turn. The phases make at most 2 + 2 * (1 + ``enforcement.regenerations``) = 24 calls
(sensor, rule filter, a generation and a judge per attempt); calls past the bound are not
recorded, and a replay reports them as not in the recording."""


class LlmCall(SchemaModel):
    """What one structured-output call returned, found again by ``key``: a hash of everything
    the call asked (phase, task, schema, system and user prompt, model), not the prompt
    itself, which holds customer texts and would double the record.

    ``output`` is the JSON object the port returned (its size is bounded by the phase's
    ``max_tokens``); the phase validated it afterwards, and a reply it could not use is still
    recorded here, so a replay falls back the same way. ``error`` is set instead when the
    port gave up (``LlmError``): the phase then ran its heuristic."""

    phase: Phase
    task: Label
    """The structured-output schema name (``snapshot``, ``rule_verdicts``, ...)."""
    key: Id
    model: Label | None = None
    """The model asked for (the served model's name is in ``usage``)."""
    output: JsonText | None = None
    error: Text | None = None
    attempts: Attempt = 1
    usage: list[TokenUsage] = Field(default_factory=list)

    @model_validator(mode="after")
    def _output_or_error(self) -> LlmCall:
        if (self.output is None) == (self.error is None):
            raise ValueError("a call has an output or an error, not both, not neither")
        return self
