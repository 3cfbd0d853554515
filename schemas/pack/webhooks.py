"""Webhook subscriptions of the agent (P11 delivers them)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from schemas.base import SchemaModel
from schemas.events.webhook import WebhookUrl
from schemas.fields import Code
from schemas.pack.common import Key

EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]*$", max_length=128)]


class WebhookSubscription(SchemaModel):
    """Events (``turn_completed``, ``escalation_requested``, ...) POSTed to ``url``, signed
    with the secret in the environment variable ``secret_env``: packs are shared and
    versioned, so a secret never sits in one."""

    id: Key
    url: WebhookUrl
    events: list[Code] = Field(min_length=1)
    secret_env: EnvName
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict) and "secret" in data:
            raise PydanticCustomError(
                "secret_in_pack",
                "never put a secret in the pack; name its environment variable: secret_env: VAR",
            )
        return data
