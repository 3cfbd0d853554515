"""Poison and invalid records, kept with the reason they were rejected."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.base import SchemaModel
from schemas.fields import Code, Count, Label, Text, Timestamp

MAX_ORIGINAL_BYTES = 16 * 1024 * 1024


class DeadLetter(SchemaModel):
    """A record the pipeline could not process. ``original`` holds its value bytes untouched
    so it can be inspected or replayed; ``reason`` is a code such as a codec error reason."""

    source_topic: Label
    partition: Count
    offset: Count
    key: Annotated[bytes, Field(max_length=MAX_ORIGINAL_BYTES)] | None = None
    reason: Code
    detail: Text
    original: Annotated[bytes, Field(max_length=MAX_ORIGINAL_BYTES)]
    at: Timestamp
