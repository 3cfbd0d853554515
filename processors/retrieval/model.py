"""Value types shared by indexing and retrieval (no I/O)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from processors.retrieval.descriptors import descriptor
from schemas.domain.retrieval import RetrievalType


@dataclass(frozen=True)
class Scope:
    """Whose objects a call may touch: every store and lexical call is confined to one scope.

    Memories belong to one customer, so a memories scope needs ``customer_id``; the other
    types are agent-wide and refuse one (a customer id there would silently split the index).
    """

    tenant_id: str
    agent_id: str
    rtype: RetrievalType
    customer_id: str | None = None

    def __post_init__(self) -> None:
        if not self.tenant_id or not self.agent_id:
            raise ValueError("tenant_id and agent_id must be non-empty")
        needs_customer = descriptor(self.rtype).customer_scoped
        if needs_customer and not self.customer_id:
            raise ValueError("a memories scope needs a customer_id")
        if not needs_customer and self.customer_id is not None:
            raise ValueError(f"{self.rtype.value} are agent-wide: customer_id must be None")


@dataclass(frozen=True)
class IndexItem:
    """One point to index. ``group`` names the object the point stands for when an object has
    several points (an intent's example phrases): results are max-aggregated per group."""

    object_id: str
    text: str
    content_hash: str
    payload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    group: str | None = None

    @property
    def group_id(self) -> str:
        return self.group or self.object_id

    @classmethod
    def of(
        cls,
        object_id: str,
        text: str,
        payload: Mapping[str, Any] | None = None,
        group: str | None = None,
    ) -> IndexItem:
        """Build an item whose hash covers text, payload and group: any change re-indexes it."""
        body = json.dumps(
            {"text": text, "payload": payload or {}, "group": group},
            sort_keys=True,
            default=str,
            ensure_ascii=False,
        )
        digest = hashlib.sha256(body.encode()).hexdigest()
        return cls(object_id, text, digest, MappingProxyType(dict(payload or {})), group)


@dataclass(frozen=True)
class StoredDoc:
    """A point's text as the store keeps it: what a lexical index is rebuilt from."""

    object_id: str
    group_id: str
    text: str


@dataclass(frozen=True)
class VectorHit:
    """One nearest-neighbour hit; ``score`` is the cosine similarity."""

    object_id: str
    group_id: str
    text: str
    score: float
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Retrieved:
    """One ranked object. ``score`` is what selection used (fused, with the rerank score if
    any); the parts are kept for the audit trail. For grouped objects (intent phrases)
    ``text`` and ``payload`` are those of the best-matching point."""

    object_id: str
    score: float
    vector_score: float
    lexical_score: float
    text: str
    payload: Mapping[str, Any]
    rerank_score: float | None = None


@dataclass(frozen=True)
class RetrievalOutcome:
    """One retrieval type for one turn: every ranked candidate (kept for the audit trail)
    and how many of them selection kept."""

    rtype: RetrievalType
    ranked: tuple[Retrieved, ...] = ()
    selected: int = 0
    latency_ms: float = 0.0

    @property
    def items(self) -> tuple[Retrieved, ...]:
        """The selected objects, best first."""
        return self.ranked[: self.selected]
