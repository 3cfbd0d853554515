"""The context a turn accumulates phase by phase; each phase fills in its part."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from schemas.base import SchemaModel
from schemas.domain.customer_data import CustomerDataStore
from schemas.domain.dialogue import DialogueReading
from schemas.domain.enforcement import EnforcementResult
from schemas.domain.errors import TurnError
from schemas.domain.llm_call import MAX_LLM_CALLS, LlmCall
from schemas.domain.outcome import TurnOutcome
from schemas.domain.plan import ResponsePlan
from schemas.domain.retrieval import RetrievalGap, RetrievalSelection
from schemas.domain.rules import AppliedRule
from schemas.domain.scenario import ScenarioDecision
from schemas.domain.session import SessionState
from schemas.domain.snapshot import SituationalSnapshot
from schemas.domain.tools import ToolCall
from schemas.domain.turn_input import TurnInput
from schemas.domain.usage import TokenUsage
from schemas.fields import Id, Label, Millis, Text, Timestamp, Version

TimingKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]*$", max_length=64)]
"""A phase name (:class:`~schemas.domain.phase.Phase`), optionally with a sub-step:
``retrieval``, ``retrieval.embedding``, ``retrieval.rules``."""


class TurnContext(SchemaModel):
    """Inputs, intermediate results and the trace of one turn.

    Fields a phase has not reached yet are ``None`` or empty. The same object travels in
    :class:`~schemas.events.turn_envelope.TurnEnvelope` between phases and ends in the
    :class:`~schemas.domain.turn_record.TurnRecord`, so the record is the envelope's context
    as the last phase left it. ``coalesced_turn_ids`` lists the requests merged into this
    turn's message besides the turn's own.
    """

    input: TurnInput
    received_at: Timestamp
    coalesced_turn_ids: list[Id] = Field(default_factory=list)
    pack_version: Version | None = None
    session: SessionState | None = None
    customer_data: CustomerDataStore | None = None
    snapshot: SituationalSnapshot | None = None
    canonical_intent: Label | None = None
    retrievals: list[RetrievalSelection] = Field(default_factory=list)
    retrieval_gaps: list[RetrievalGap] = Field(default_factory=list)
    applied_rules: list[AppliedRule] = Field(default_factory=list)
    scenario_decisions: list[ScenarioDecision] = Field(default_factory=list)
    dialogue: DialogueReading | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    plan: ResponsePlan | None = None
    response_text: Text | None = None
    outcome: TurnOutcome | None = None
    enforcement: list[EnforcementResult] = Field(default_factory=list)
    token_usage: list[TokenUsage] = Field(default_factory=list)
    llm_calls: Annotated[list[LlmCall], Field(max_length=MAX_LLM_CALLS)] = Field(
        default_factory=list
    )
    """What each LLM call of the turn returned, for replays (``llm`` mode only)."""
    timings_ms: dict[TimingKey, Millis] = Field(default_factory=dict)
    errors: list[TurnError] = Field(default_factory=list)

    @property
    def coalesced_message_count(self) -> int:
        """How many customer messages this turn answers (1 unless messages were coalesced)."""
        return 1 + len(self.coalesced_turn_ids)
