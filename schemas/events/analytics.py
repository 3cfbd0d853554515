"""Fine-grained analytics events for ClickHouse."""

from __future__ import annotations

from pydantic import Field

from schemas.base import SchemaModel
from schemas.fields import Code, Id, JsonText, Timestamp


class AnalyticsEvent(SchemaModel):
    """One fact about a turn (a rule matched, a tool failed, ...). ``event_id`` is derived
    from the turn so a replay yields the same id and ClickHouse deduplicates it; each
    attribute value is JSON so the table can hold it as ``Map(String, String)``."""

    event_id: Id
    tenant_id: Id
    turn_id: Id | None = None
    event_type: Code
    at: Timestamp
    attributes: dict[Id, JsonText] = Field(default_factory=dict)
