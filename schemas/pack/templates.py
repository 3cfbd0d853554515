"""Response and fallback templates (P8, P10)."""

from __future__ import annotations

import string
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, model_validator
from pydantic_core import PydanticCustomError

from schemas.base import SchemaModel
from schemas.domain.outcome import OutcomeCategory
from schemas.pack.common import Key, Prose


def placeholders(text: str) -> list[str]:
    """The ``{name}`` placeholders of a template, in order; ``{{`` and ``}}`` are literal braces.

    Only plain names are allowed (an optional format spec such as ``{amount:.2f}`` is fine):
    ``str.format`` would follow ``{a.b}`` and ``{a[0]}`` into attributes and items.
    """
    names = []
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if not name.isidentifier() or conversion or (spec and "{" in spec):
            raise ValueError(f"placeholder {{{name}}} must be a plain name such as {{order_id}}")
        names.append(name)
    return names


def _valid_placeholders(text: str) -> str:
    try:
        placeholders(text)
    except ValueError as exc:
        raise PydanticCustomError("bad_placeholder", "{error}", {"error": str(exc)}) from None
    return text


TemplateText = Annotated[Prose, AfterValidator(_valid_placeholders)]


class TemplateKind(StrEnum):
    """RESPONSE templates are used by steps; FALLBACK ones replace an answer that failed."""

    RESPONSE = "RESPONSE"
    FALLBACK = "FALLBACK"


class Template(SchemaModel):
    """``fallback_for`` names the outcome a FALLBACK template answers (POLICY_RESTRICTION
    after enforcement gives up, SYSTEM_ERROR after a failure, ...)."""

    id: Key
    kind: TemplateKind = TemplateKind.RESPONSE
    text: TemplateText
    fallback_for: OutcomeCategory | None = None

    @model_validator(mode="after")
    def _fallback_has_a_reason(self) -> Template:
        if (self.kind is TemplateKind.FALLBACK) != (self.fallback_for is not None):
            raise ValueError("fallback_for is given exactly for FALLBACK templates")
        return self

    @property
    def placeholder_names(self) -> list[str]:
        return placeholders(self.text)
