"""The whole agent pack, and the hashes that tell a worker what changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, Field

from schemas.base import SchemaModel
from schemas.pack.agent import AgentSettings
from schemas.pack.fields import CustomerDataField
from schemas.pack.language import GlossaryTerm, Intent
from schemas.pack.rules import Relationship, Rule
from schemas.pack.scenarios import Scenario
from schemas.pack.templates import Template
from schemas.pack.tools import Tool
from schemas.pack.webhooks import WebhookSubscription

#: section -> (hash key prefix, the object's key within its section)
SECTION_KEYS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "fields": ("field", lambda obj: obj.key),
    "glossary": ("glossary", lambda obj: obj.term),
    "intents": ("intent", lambda obj: obj.id),
    "rules": ("rule", lambda obj: obj.id),
    "relationships": ("relationship", lambda obj: f"{obj.source}:{obj.kind}:{obj.target}"),
    "scenarios": ("scenario", lambda obj: obj.id),
    "tools": ("tool", lambda obj: obj.id),
    "templates": ("template", lambda obj: obj.id),
    "webhooks": ("webhook", lambda obj: obj.id),
}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class AgentPack(SchemaModel):
    """Everything one agent of one tenant is configured with. Build it with
    ``sinks.pack_files.load_pack``, which also checks references between the sections."""

    agent: AgentSettings
    fields: list[CustomerDataField] = Field(default_factory=list)
    glossary: list[GlossaryTerm] = Field(default_factory=list)
    intents: list[Intent] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    relationships: list[Relationship] = Field(default_factory=list)
    scenarios: list[Scenario] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    templates: list[Template] = Field(default_factory=list)
    webhooks: list[WebhookSubscription] = Field(default_factory=list)

    def _keyed(self) -> Iterator[tuple[str, str, BaseModel]]:
        for section, (prefix, key_of) in SECTION_KEYS.items():
            for obj in getattr(self, section):
                yield section, f"{prefix}:{key_of(obj)}", obj

    def canonical_json(self) -> str:
        """The pack as JSON that depends on content only: keys sorted, and each section sorted
        by object key, so reordering a file or splitting ``scenarios.yaml`` changes nothing."""
        data: dict[str, Any] = {"agent": self.agent.model_dump(mode="json")}
        for section, _, obj in sorted(self._keyed(), key=lambda item: item[1]):
            data.setdefault(section, []).append(obj.model_dump(mode="json"))
        return _canonical(data)

    def content_hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_json`: equal packs, equal hashes."""
        return _sha256(self.canonical_json())

    def object_hashes(self) -> dict[str, str]:
        """SHA-256 per object, keyed ``agent``, ``rule:<id>``, ``intent:<id>``,
        ``scenario:<id>``, ... so that only changed objects are re-embedded."""
        hashes = {"agent": _sha256(_canonical(self.agent.model_dump(mode="json")))}
        for _, key, obj in self._keyed():
            hashes[key] = _sha256(_canonical(obj.model_dump(mode="json")))
        return hashes
