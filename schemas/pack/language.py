"""What the agent understands: glossary terms (P2) and intents with examples (P4)."""

from __future__ import annotations

from pydantic import Field

from schemas.base import SchemaModel
from schemas.fields import Label
from schemas.pack.common import Description, Key, Phrase, Prose


class GlossaryTerm(SchemaModel):
    """A tenant-specific word the sensor and generation must read the tenant's way."""

    term: Label
    definition: Prose
    synonyms: list[Phrase] = Field(default_factory=list)


class Intent(SchemaModel):
    """A canonical intent; its example phrases are what intent retrieval embeds."""

    id: Key
    description: Description = ""
    examples: list[Phrase] = Field(min_length=1)
