"""Webhook subscriptions of the agent (P11 delivers them)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from schemas.base import SchemaModel
from schemas.events.webhook import WebhookUrl
from schemas.fields import Code
from schemas.pack.common import Key

SECRET_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
"""A secret's name: upper-case letters and digits in words joined by single underscores. No
``__`` and no leading or trailing ``_``, so that ``WEBHOOK_SECRET__<TENANT>__<NAME>`` (see
``sinks.webhooks.secrets``) names exactly one tenant's secret."""


def _secret_name(value: str) -> str:
    if not SECRET_NAME.fullmatch(value):
        # the value is not echoed: a secret pasted here by mistake must not reach any log
        raise PydanticCustomError(
            "bad_secret_name",
            "secret_env must match the pattern ^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$ (upper-case "
            "letters and digits joined by single underscores, e.g. CRM_WEBHOOK_SECRET): the "
            "worker reads the secret from WEBHOOK_SECRET__<TENANT>__<secret_env>",
        )
    return value


SecretName = Annotated[str, StringConstraints(max_length=128), AfterValidator(_secret_name)]


class WebhookSubscription(SchemaModel):
    """Events (``turn_completed``, ``escalation_requested``, ...) POSTed to ``url``, signed
    with the tenant's secret named ``secret_env``: packs are shared and versioned, so a secret
    never sits in one. The worker reads it from the environment variable
    ``WEBHOOK_SECRET__<TENANT>__<secret_env>`` of the pack's own tenant (tenant id upper-cased,
    ``-`` as ``_``), never from a variable another tenant's pack could name."""

    id: Key
    url: WebhookUrl
    events: list[Code] = Field(min_length=1)
    secret_env: SecretName
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
