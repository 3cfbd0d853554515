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
    """A canonical intent; its example phrases are what intent retrieval embeds.

    ``response_template_id``: a RESPONSE template the agent says when this is the turn's intent
    and no scenario step speaks for it (a greeting, a thank-you). ``farewell``: the intent ends
    the conversation; its response is never said while a step waits for an answer, and it
    never ends a running scenario."""

    id: Key
    description: Description = ""
    examples: list[Phrase] = Field(min_length=1)
    response_template_id: Key | None = None
    farewell: bool = False
