"""P5: the rules that apply to this turn and why."""

from __future__ import annotations

from enum import StrEnum

from pydantic import model_validator

from schemas.base import SchemaModel
from schemas.fields import Id


class RuleVerdict(StrEnum):
    """The LLM filter's answer; rules kept without the filter count as APPLIES."""

    APPLIES = "APPLIES"
    NOT_RELATED = "NOT_RELATED"
    UNSURE = "UNSURE"


class RelationshipKind(StrEnum):
    DEPENDS_ON = "DEPENDS_ON"
    IMPLIES = "IMPLIES"
    EXCLUDES = "EXCLUDES"
    SPECIALIZES = "SPECIALIZES"
    RELATED = "RELATED"


class AppliedRule(SchemaModel):
    """A selected rule; ``via_*`` is set when relationship expansion, not retrieval, added it."""

    rule_id: Id
    score: float
    verdict: RuleVerdict
    via_relationship: RelationshipKind | None = None
    via_rule_id: Id | None = None

    @model_validator(mode="after")
    def _via_together(self) -> AppliedRule:
        if (self.via_relationship is None) != (self.via_rule_id is None):
            raise ValueError("via_relationship and via_rule_id are set together or not at all")
        return self
