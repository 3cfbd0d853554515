"""Constrained field types shared by every model, and the one convention for free-form JSON.

Every type here maps to one Avro type (see :mod:`schemas.avro`), so the models stay
Avro-mappable: bounded strings, timezone-aware timestamps, non-negative counters.

**Free-form JSON values** (a customer variable's value, tool input and output, analytics
attributes, webhook payloads) are carried as :data:`JsonText`: a ``str`` holding one JSON
document, checked to parse on construction and stored in Avro as a plain ``string``. One
type keeps the Avro schemas free of unions of everything, keeps the bytes a consumer sees
equal to the bytes a producer wrote, and lets ClickHouse store the value as-is. Build one
with :func:`json_text`; read one with ``json.loads``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, JsonValue, StringConstraints

MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 256
MAX_MESSAGE_CHARS = 16_000
MAX_TEXT_CHARS = 64_000
MAX_JSON_CHARS = 256_000
MAX_PACK_JSON_CHARS = 8_000_000


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parses_as_json(text: str) -> str:
    try:
        json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValueError(f"not a JSON document: {exc}") from None
    return text


def _as_utc(value: datetime) -> datetime:
    """Naive datetimes are refused: a timestamp without a zone is ambiguous across workers."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone")
    return value.astimezone(UTC)


Id = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[^\s\x00-\x1f]+$")
]
"""An identifier (tenant, agent, session, turn, rule, ...): non-empty, no whitespace."""

Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")]
"""A machine-readable reason or error code, e.g. ``tool_timeout`` or ``codec.truncated``."""

Label = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_CHARS)]
"""A short human-readable label: an intent, a tone, a tool name, a field key."""

MessageText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS)]
"""What a customer wrote in one message."""

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
"""Longer free text: generated answers, query texts, error details."""

JsonText = Annotated[str, Field(max_length=MAX_JSON_CHARS), AfterValidator(_parses_as_json)]
"""A free-form JSON value, serialized (see the module docstring)."""

PackJson = Annotated[str, Field(max_length=MAX_PACK_JSON_CHARS), AfterValidator(_parses_as_json)]
"""A whole agent pack as JSON: the same convention with room for a large pack."""

Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
"""A timezone-aware instant, normalized to UTC; Avro ``long`` / ``timestamp-micros``."""

SessionKey = Annotated[str, StringConstraints(min_length=1, max_length=512)]
"""The record key of the per-turn topics, ``tenant:channel:channel_id`` (``streams.topics``)."""

MAX_LONG = 2**63 - 1
"""Integers are Avro ``long``s: bounding them here fails at construction, not at encoding."""

Count = Annotated[int, Field(ge=0, le=MAX_LONG)]
Attempt = Annotated[int, Field(ge=1, le=MAX_LONG)]
"""An attempt number, or a number of attempts: the first attempt is 1."""
Millis = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Version = Annotated[int, Field(ge=1, le=MAX_LONG)]
"""A pack or scenario version: a positive integer that only grows."""


def json_text(value: JsonValue) -> str:
    """Serialize a JSON value compactly for a :data:`JsonText` field."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
