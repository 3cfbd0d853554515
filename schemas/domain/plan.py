"""P8: the response plan that P9 generation follows."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import SchemaModel
from schemas.domain.scenario import ScenarioContribution
from schemas.fields import Id, Text


class ResponseType(StrEnum):
    ASK = "ASK"
    ANSWER = "ANSWER"
    MIXED = "MIXED"
    CONFIRM = "CONFIRM"
    REFUSE = "REFUSE"
    ESCALATE = "ESCALATE"


class PlannedTemplate(SchemaModel):
    """A step template with its text, so P9 needs no pack lookup."""

    template_id: Id
    text: Text


class ResponsePlan(SchemaModel):
    """The global response type, merged scenario contributions and the rules' constraints."""

    response_type: ResponseType
    contributions: list[ScenarioContribution] = Field(default_factory=list)
    templates: list[PlannedTemplate] = Field(default_factory=list)
    must_include: list[Text] = Field(default_factory=list)
    must_avoid: list[Text] = Field(default_factory=list)
