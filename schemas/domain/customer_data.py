"""What the agent knows about a customer, kept in a changelogged table across sessions."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from schemas.base import SchemaModel
from schemas.fields import Id, JsonText, Probability, Timestamp

MAX_HISTORY = 20


class VariableScope(StrEnum):
    """How long a value lives: for the customer (IDENTITY, BUSINESS), a case, or a session."""

    IDENTITY = "IDENTITY"
    BUSINESS = "BUSINESS"
    CASE = "CASE"
    SESSION = "SESSION"


class VariableType(StrEnum):
    STRING = "STRING"
    NUMBER = "NUMBER"
    BOOLEAN = "BOOLEAN"
    DATETIME = "DATETIME"
    JSON = "JSON"


class VariableSource(StrEnum):
    """Who set a value: audits and conflict resolution trust USER over INFERENCE."""

    USER = "USER"
    TOOL = "TOOL"
    INFERENCE = "INFERENCE"
    SYSTEM = "SYSTEM"


class VariableChange(SchemaModel):
    """A previous value of a variable, kept so an update can be audited or undone."""

    value: JsonText
    source: VariableSource
    at: Timestamp
    turn_id: Id | None = None


class VariableEntry(SchemaModel):
    """One customer variable; ``value`` is JSON already coerced to ``type`` by P3."""

    value: JsonText
    type: VariableType
    scope: VariableScope
    source: VariableSource
    confidence: Probability
    last_updated_at: Timestamp
    history: Annotated[list[VariableChange], Field(max_length=MAX_HISTORY)] = Field(
        default_factory=list
    )


class CustomerDataStore(SchemaModel):
    """All variables of one customer of one tenant, keyed by field key."""

    tenant_id: Id
    customer_id: Id
    variables: dict[Id, VariableEntry] = Field(default_factory=dict)
    updated_at: Timestamp
