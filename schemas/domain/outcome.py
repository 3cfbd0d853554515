"""P9: how well the turn answered the customer, for analytics and escalation."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator

from schemas.base import SchemaModel


class OutcomeCategory(StrEnum):
    KNOWLEDGE_GAP = "KNOWLEDGE_GAP"
    CAPABILITY_GAP = "CAPABILITY_GAP"
    OUT_OF_SCOPE = "OUT_OF_SCOPE"
    SAFETY_REFUSAL = "SAFETY_REFUSAL"
    POLICY_RESTRICTION = "POLICY_RESTRICTION"
    SYSTEM_ERROR = "SYSTEM_ERROR"


class Resolution(StrEnum):
    RESOLVED = "RESOLVED"
    PARTIAL = "PARTIAL"
    UNRESOLVED = "UNRESOLVED"
    REDIRECTED = "REDIRECTED"


class TurnOutcome(SchemaModel):
    """The semantic categories of the answer (none for a plain answer) and its resolution."""

    categories: list[OutcomeCategory] = Field(default_factory=list)
    resolution: Resolution

    @field_validator("categories")
    @classmethod
    def _distinct(cls, categories: list[OutcomeCategory]) -> list[OutcomeCategory]:
        if len(set(categories)) != len(categories):
            raise ValueError("categories must be distinct")
        return categories
