"""P10: whether an answer kept the hard constraints, lane by lane, attempt by attempt."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import SchemaModel
from schemas.fields import Attempt, Id, Text


class EnforcementLane(StrEnum):
    EXPRESSION = "EXPRESSION"
    LLM_JUDGE = "LLM_JUDGE"
    RELEVANCE = "RELEVANCE"


class Violation(SchemaModel):
    """A broken constraint; ``detail`` becomes a hint when P9 regenerates."""

    rule_id: Id
    lane: EnforcementLane
    detail: Text


class JudgeVerdict(StrEnum):
    """NOT_EVALUATED records a rule the judge could not assess (timeout, LLM error)."""

    PASSED = "PASSED"
    VIOLATED = "VIOLATED"
    NOT_EVALUATED = "NOT_EVALUATED"


class RuleJudgement(SchemaModel):
    """The LLM judge's verdict on one hard rule that has no expression."""

    rule_id: Id
    verdict: JudgeVerdict
    reason: Text | None = None


class EnforcementResult(SchemaModel):
    """The check of one generation attempt; a failed one sends the turn back to P9 or to the
    fallback template."""

    attempt: Attempt
    passed: bool
    violations: list[Violation] = Field(default_factory=list)
    judgements: list[RuleJudgement] = Field(default_factory=list)
    remediated: bool = False
    fallback_used: bool = False

    @model_validator(mode="after")
    def _passed_iff_clean(self) -> EnforcementResult:
        if self.passed == bool(self.violations):
            raise ValueError("passed is true exactly when there are no violations")
        return self
