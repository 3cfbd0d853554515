"""Webhook delivery attempts, for the delivery log and the webhook dead-letter topic."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from schemas.base import SchemaModel
from schemas.fields import Attempt, Code, Id, JsonText, Text, Timestamp

WebhookUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)]


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    RETRYING = "RETRYING"
    EXHAUSTED = "EXHAUSTED"


class WebhookDelivery(SchemaModel):
    """One attempt to deliver one event to one subscription. ``delivery_id`` is the same
    for every attempt of a delivery, so the receiver can deduplicate by it."""

    delivery_id: Id
    subscription_id: Id
    tenant_id: Id
    event_type: Code
    url: WebhookUrl
    payload: JsonText
    attempt: Attempt
    status: DeliveryStatus
    http_status: Annotated[int, Field(ge=100, le=599)] | None = None
    error: Text | None = None
    at: Timestamp
