"""Scenarios: versioned multi-step flows with transitions (P6)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import SchemaModel
from schemas.fields import Label, Version
from schemas.pack.common import Description, ExpressionText, Key, Phrase, ToolBinding


class StepKind(StrEnum):
    """QUESTION asks for fields, ACTION runs tools, LOGIC says its template (if any) and
    routes by its transitions."""

    QUESTION = "QUESTION"
    ACTION = "ACTION"
    LOGIC = "LOGIC"


class Step(SchemaModel):
    """A step is complete when ``completion_condition`` holds, or, without one, when every
    field it ``collects`` is known: which is also what lets P6 skip it."""

    id: Key
    kind: StepKind
    description: Description = ""
    template_id: Key | None = None
    collects: list[Key] = Field(default_factory=list)
    rule_ids: list[Key] = Field(default_factory=list)
    tool_bindings: list[ToolBinding] = Field(default_factory=list)
    completion_condition: ExpressionText | None = None

    @model_validator(mode="after")
    def _kind_has_what_it_needs(self) -> Step:
        if self.kind is StepKind.QUESTION and not self.collects:
            raise ValueError("a QUESTION step collects at least one field")
        if self.kind is StepKind.ACTION and not self.tool_bindings:
            raise ValueError("an ACTION step binds at least one tool")
        return self


class Transition(SchemaModel):
    """Taken from a completed step when its intent matches and its condition holds (a
    transition with neither is the default); the highest priority wins."""

    from_step: Key
    to_step: Key
    on_intent: Key | None = None
    condition: ExpressionText | None = None
    priority: int = Field(default=0, ge=-1000, le=1000)


class Scenario(SchemaModel):
    """Retrieved by ``entry_examples`` and started by ``entry_intents``; a changed
    ``version`` makes P1 reconcile sessions that are inside the scenario."""

    id: Key
    name: Label
    version: Version = 1
    description: Description = ""
    entry_examples: list[Phrase] = Field(default_factory=list)
    entry_intents: list[Key] = Field(default_factory=list)
    entry_step_id: Key
    steps: list[Step] = Field(min_length=1)
    transitions: list[Transition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_an_entry(self) -> Scenario:
        if not self.entry_examples and not self.entry_intents:
            raise ValueError("a scenario needs entry_examples or entry_intents")
        return self
