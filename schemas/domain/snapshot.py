"""P2's reading of the situation: what changed, how the customer feels, what they told us."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from schemas.base import SchemaModel
from schemas.domain.customer_data import VariableScope
from schemas.fields import Id, JsonText, Label, Text

LanguageTag = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$", max_length=35)
]
"""A BCP 47 language tag such as ``en`` or ``pt-BR``."""


class FrustrationLevel(StrEnum):
    NONE = "NONE"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class CandidateVariable(SchemaModel):
    """A value the sensor believes the customer gave; P3 validates it against the field."""

    value: JsonText
    scope: VariableScope
    is_update: bool


class SituationalSnapshot(SchemaModel):
    """The sensor's output. It saw only a mask of the customer data, never its values."""

    language: LanguageTag
    intent_changed: bool
    new_intent_label: Label | None = None
    new_intent_text: Text | None = None
    topic_changed: bool
    tone: Label
    frustration_level: FrustrationLevel
    situation_facts: list[Text] = Field(default_factory=list)
    candidate_variables: dict[Id, CandidateVariable] = Field(default_factory=dict)
