"""What a channel gateway knows when a customer writes: the input of P1."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from schemas.base import SchemaModel
from schemas.fields import Id, Label, MessageText, Text

MAX_METADATA_ENTRIES = 64


class Channel(StrEnum):
    """Where a message came from; lowercase because it is part of the session key."""

    WEBCHAT = "webchat"
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    API = "api"


class TurnInput(SchemaModel):
    """One inbound customer message.

    ``channel_id`` is the customer's address on the channel (a phone number, an email
    address, a web visitor id); with tenant and channel it identifies the customer before P1
    has resolved ``customer_id``. ``customer_id`` and ``session_id`` are set when the
    gateway already knows them.
    """

    tenant_id: Id
    agent_id: Id
    channel: Channel
    channel_id: Label
    customer_id: Id | None = None
    session_id: Id | None = None
    message: MessageText
    metadata: Annotated[dict[Label, Text], Field(max_length=MAX_METADATA_ENTRIES)] = Field(
        default_factory=dict
    )

    @property
    def session_key(self) -> str:
        """``tenant:channel:channel_id``: the record key of every per-turn topic, known
        before P1 resolves anything (``streams.topics`` explains the choice)."""
        return f"{self.tenant_id}:{self.channel.value}:{self.channel_id}"
