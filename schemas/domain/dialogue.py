"""P6's reading of a turn against the conversation so far, with its evidence (TurnRecord)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import SchemaModel
from schemas.fields import Id, Label


class ReadingKind(StrEnum):
    """How the turn was read. With a step waiting for an answer: ANSWER (it gave the step's
    fields), CORRECTION (it changed a value the scenario had), AFFIRM / DENY (a yes or no to a
    confirmation), SWITCH (another scenario had clear evidence), CANCEL, or NO_ANSWER (none of
    these: the step keeps waiting). NEW_TOPIC when no step was waiting."""

    ANSWER = "ANSWER"
    CORRECTION = "CORRECTION"
    AFFIRM = "AFFIRM"
    DENY = "DENY"
    SWITCH = "SWITCH"
    CANCEL = "CANCEL"
    NO_ANSWER = "NO_ANSWER"
    NEW_TOPIC = "NEW_TOPIC"


class ScenarioEvidence(SchemaModel):
    """Why a scenario could start: ``score`` = max(``retrieval``, ``intent``) + ``fill`` (the
    fill weight per field of the scenario the message gave, ``filled_fields``)."""

    scenario_id: Id
    score: float
    retrieval: float = 0.0
    intent: float = 0.0
    fill: float = 0.0
    filled_fields: list[Id] = Field(default_factory=list)
    informational: bool = False


class DialogueReading(SchemaModel):
    """The interpretation of one turn: the step that waited (if any), what the message gave
    for it, and the scenario evidence P6 weighed (best first)."""

    kind: ReadingKind
    scenario_id: Id | None = None
    step_id: Id | None = None
    fields: list[Id] = Field(default_factory=list)
    affirmed: bool | None = None
    intent: Label | None = None
    intent_confidence: float = 0.0
    evidence: list[ScenarioEvidence] = Field(default_factory=list)
