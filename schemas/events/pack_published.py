"""A new version of an agent pack, on the compacted config topic."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from schemas.base import SchemaModel
from schemas.fields import Id, PackJson, Timestamp, Version

ContentHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""The SHA-256 of ``pack_json``, hex: workers skip a pack they already loaded."""


class PackPublished(SchemaModel):
    """The pack travels as JSON text: its model (``schemas.pack``) evolves with the packs,
    not with the wire format, and a worker validates it when it loads it."""

    tenant_id: Id
    agent_id: Id
    version: Version
    content_hash: ContentHash
    pack_json: PackJson
    published_at: Timestamp
