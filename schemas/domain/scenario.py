"""P6: what each scenario did this turn and what it asks the response to carry."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import SchemaModel
from schemas.fields import Id, Text, Version


class ScenarioAction(StrEnum):
    START = "START"
    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    COMPLETE = "COMPLETE"
    CANCEL = "CANCEL"


class ContributionKind(StrEnum):
    ASK = "ASK"
    INFORM = "INFORM"
    CONFIRM = "CONFIRM"
    ACTION_HINT = "ACTION_HINT"


class ScenarioContribution(SchemaModel):
    """What one scenario step wants said; P8 merges contributions into the response plan."""

    scenario_id: Id
    step_id: Id
    kind: ContributionKind
    template_id: Id | None = None
    text: Text | None = None
    field_keys: list[Id] = Field(default_factory=list)


class ScenarioDecision(SchemaModel):
    """One scenario's transition this turn, including the steps skipped because their data
    was already known."""

    scenario_id: Id
    scenario_version: Version
    action: ScenarioAction
    from_step_id: Id | None = None
    entered_step_id: Id | None = None
    skipped_step_ids: list[Id] = Field(default_factory=list)
    contribution: ScenarioContribution | None = None
