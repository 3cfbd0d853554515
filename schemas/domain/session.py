"""Per-session conversation state, kept in a changelogged table between turns."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from schemas.base import SchemaModel
from schemas.domain.customer_data import VariableEntry
from schemas.fields import Count, Id, Text, Timestamp, Version

MAX_RECENT_MESSAGES = 50


class MessageRole(StrEnum):
    CUSTOMER = "CUSTOMER"
    AGENT = "AGENT"


class SessionMessage(SchemaModel):
    """One of the last K messages the sensor (P2) and generation (P9) see."""

    role: MessageRole
    text: Text
    turn_id: Id
    at: Timestamp


class ScenarioStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class ActiveScenario(SchemaModel):
    """A scenario the session is in; the version lets P1 reconcile after a pack update."""

    scenario_id: Id
    scenario_version: Version
    current_step_id: Id
    status: ScenarioStatus
    completed_step_ids: list[Id] = Field(default_factory=list)
    skipped_step_ids: list[Id] = Field(default_factory=list)


class RuleFires(SchemaModel):
    """How often and when a rule fired: what P5's cooldown and max-fires pre-filter need."""

    fire_count: Count
    last_fired_turn: Count


class SessionState(SchemaModel):
    """Everything turn N+1 needs from turn N; persisted by P11 before the next turn starts."""

    session_id: Id
    tenant_id: Id
    agent_id: Id
    customer_id: Id
    turn_count: Count
    recent_messages: Annotated[list[SessionMessage], Field(max_length=MAX_RECENT_MESSAGES)] = Field(
        default_factory=list
    )
    scenarios: list[ActiveScenario] = Field(default_factory=list)
    rule_fires: dict[Id, RuleFires] = Field(default_factory=dict)
    pack_version: Version | None = None
    last_turn_id: Id | None = None
    updated_at: Timestamp
    variables: dict[Id, VariableEntry] = Field(default_factory=dict)
    """Values of the pack's SESSION-scope (non-persistent) fields: they live as long as the
    session, not in the customer's CustomerDataStore."""
