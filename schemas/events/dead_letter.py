"""Poison and invalid records, kept with the reason they were rejected."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from schemas.base import SchemaModel
from schemas.fields import Code, Count, Label, Text, Timestamp

MAX_ORIGINAL_BYTES = 16 * 1024 * 1024
"""What the model accepts in ``key`` and ``original``. What a producer may *send* is far less
(its ``producer_max_request_size``, 1,000,000 bytes by default): the pipeline keeps a prefix
that fits (``streams.pipeline.rejects.original_bound``)."""

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""A SHA-256 digest, 64 lower-case hex digits."""


class DeadLetter(SchemaModel):
    """A record the pipeline could not process. ``original`` holds the first bytes of its value
    (all of them when they fit below the producer's request limit, else a prefix);
    ``original_size`` and ``original_sha256`` are the size and SHA-256 of the whole value, so a
    truncated original can still be matched with the record it came from. Both are absent in
    letters written before v2, and ``original`` is then the whole value or its first 16 MiB.
    ``reason`` is a code such as a codec error reason."""

    source_topic: Label
    partition: Count
    offset: Count
    key: Annotated[bytes, Field(max_length=MAX_ORIGINAL_BYTES)] | None = None
    reason: Code
    detail: Text
    original: Annotated[bytes, Field(max_length=MAX_ORIGINAL_BYTES)]
    at: Timestamp
    original_size: Count | None = None
    original_sha256: Sha256 | None = None

    @property
    def truncated(self) -> bool:
        """Whether ``original`` is only a prefix of the record's value."""
        return self.original_size is not None and len(self.original) < self.original_size
