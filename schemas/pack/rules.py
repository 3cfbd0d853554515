"""Rules (P5, P8, P10) and the relationships that expand a selection of rules."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from schemas.base import SchemaModel
from schemas.domain.rules import RelationshipKind
from schemas.fields import Label
from schemas.pack.common import ExpressionText, Key, Phrase, Prose, ToolBinding

ScopeRef = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$", max_length=129)
]
"""A scenario id, or ``scenario_id.step_id`` for a step (step ids are unique per scenario)."""


class RuleScope(StrEnum):
    GLOBAL = "GLOBAL"
    SCENARIO = "SCENARIO"
    STEP = "STEP"


class Rule(SchemaModel):
    """A behavioural rule. Retrieval matches ``condition_text`` and the optional ``examples``
    (customer phrasings the condition covers); ``action_text`` is what the agent must do. A
    hard constraint is enforced by P10: by ``enforcement_expression`` (True = compliant) when
    given, else by the LLM judge."""

    id: Key
    name: Label | None = None
    condition_text: Prose
    examples: list[Phrase] = Field(default_factory=list)
    action_text: Prose
    scope: RuleScope = RuleScope.GLOBAL
    scope_id: ScopeRef | None = None
    is_hard_constraint: bool = False
    enforcement_expression: ExpressionText | None = None
    tool_bindings: list[ToolBinding] = Field(default_factory=list)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_fires_per_session: int | None = Field(default=None, ge=1)
    cooldown_turns: int = Field(default=0, ge=0)
    enabled: bool = True
    must_include: list[Phrase] = Field(default_factory=list)
    must_avoid: list[Phrase] = Field(default_factory=list)
    says_action_text: bool = False
    """``action_text`` is written as words for the customer (an informational rule: "Returns
    are free within 30 days."): heuristic generation says it when the rule applies and no
    scenario step answers the turn."""

    @model_validator(mode="after")
    def _scope_id_fits_scope(self) -> Rule:
        if self.scope is RuleScope.GLOBAL and self.scope_id is not None:
            raise ValueError("a GLOBAL rule has no scope_id")
        if self.scope is RuleScope.SCENARIO and (self.scope_id is None or "." in self.scope_id):
            raise ValueError("a SCENARIO rule needs scope_id: <scenario_id>")
        if self.scope is RuleScope.STEP and (self.scope_id is None or "." not in self.scope_id):
            raise ValueError("a STEP rule needs scope_id: <scenario_id>.<step_id>")
        return self

    @property
    def scenario_id(self) -> str | None:
        """The scenario a SCENARIO or STEP rule belongs to."""
        return self.scope_id.split(".")[0] if self.scope_id else None

    @property
    def step_id(self) -> str | None:
        """The step of a STEP rule."""
        return (
            self.scope_id.split(".")[1] if self.scope is RuleScope.STEP and self.scope_id else None
        )


class Relationship(SchemaModel):
    """``source <kind> target`` between two rules. DEPENDS_ON: the source applies only with
    the target; IMPLIES: selecting the source adds the target; EXCLUDES: never both (the
    higher priority wins); SPECIALIZES: the source refines the target and overrides it when
    both apply; RELATED: informational."""

    source: Key
    kind: RelationshipKind
    target: Key

    @model_validator(mode="after")
    def _not_reflexive(self) -> Relationship:
        if self.source == self.target:
            raise ValueError("a rule cannot be related to itself")
        return self
