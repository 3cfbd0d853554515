"""Ports of the retrieval phase: the vector store and the reranker (adapters live in sinks/)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from processors.embedding import Vector, Vectors
from processors.retrieval.model import IndexItem, Scope, StoredDoc, VectorHit


class VectorIndex(Protocol):
    """Stores one vector per point, confined to a scope on every call."""

    def upsert(self, scope: Scope, items: Sequence[IndexItem], vectors: Vectors) -> None: ...

    def delete(self, scope: Scope, object_ids: Sequence[str]) -> None: ...

    def hashes(self, scope: Scope) -> dict[str, str]:
        """object id -> stored content hash: what lets re-indexing skip unchanged objects."""
        ...

    def documents(self, scope: Scope) -> list[StoredDoc]:
        """Every point's text, to rebuild a lexical index (e.g. after a restart)."""
        ...

    def search(self, scope: Scope, vector: Vector, limit: int) -> list[VectorHit]: ...

    def lookup(self, scope: Scope, vector: Vector, object_ids: Sequence[str]) -> list[VectorHit]:
        """The given points scored against ``vector``: lexical-only candidates get a cosine
        and a payload too. Unknown ids are left out."""
        ...


class Reranker(Protocol):
    """Re-scores candidate texts against the query on a cosine-like scale."""

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...
