"""Every model that crosses a Kafka topic, by Avro full name: what the codec can carry."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.avro import full_name
from schemas.domain.customer_data import CustomerDataStore
from schemas.domain.session import SessionState
from schemas.events.analytics import AnalyticsEvent
from schemas.events.completed_turn import CompletedTurn
from schemas.events.dead_letter import DeadLetter
from schemas.events.pack_published import PackPublished
from schemas.events.pipeline_state import RetrievalJoin, SeenTurn, SessionGate
from schemas.events.retrieval import RetrievalRequested, RetrievalResult
from schemas.events.turn_envelope import TurnEnvelope
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import TurnResponse
from schemas.events.webhook import WebhookDelivery

EVENT_MODELS: dict[str, type[BaseModel]] = {
    full_name(model): model
    for model in (
        TurnRequested,
        TurnEnvelope,
        RetrievalRequested,
        RetrievalResult,
        TurnResponse,
        CompletedTurn,
        AnalyticsEvent,
        WebhookDelivery,
        DeadLetter,
        PackPublished,
        SessionState,
        CustomerDataStore,
        SessionGate,
        SeenTurn,
        RetrievalJoin,
    )
}
"""SessionState, CustomerDataStore, SessionGate, SeenTurn and RetrievalJoin are here because
their tables' changelogs are topics."""
