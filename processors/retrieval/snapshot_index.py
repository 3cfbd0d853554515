"""An in-memory snapshot of the small, pack-backed scopes in front of the vector store.

Why: a pack's rules, intents and scenarios are a few hundred points that change only when
a pack is loaded, while every turn searches them; Qdrant's local mode answers each search
through its client under a process-wide lock (~1 ms and up, and it serialises the four
retrievals of a turn). A matrix of unit vectors answers the same cosine search with one dot
product. Memories (one scope per customer, written on every turn) stay in the store.

Writes go through to the store and drop the scope's snapshot; the next search rebuilds it.
A pack loaded by *another* process (several workers on a Qdrant server) is not seen here:
the runtime calls :meth:`SnapshotIndex.invalidate_agent` on every pack update.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from processors.embedding import Vector, Vectors
from processors.retrieval.descriptors import PACK_BACKED
from processors.retrieval.model import IndexItem, Scope, StoredDoc, VectorHit


class SnapshotSource(Protocol):
    """The store behind the snapshot: ``VectorIndex`` plus reading a scope whole."""

    def upsert(self, scope: Scope, items: Sequence[IndexItem], vectors: Vectors) -> None: ...

    def delete(self, scope: Scope, object_ids: Sequence[str]) -> None: ...

    def hashes(self, scope: Scope) -> dict[str, str]: ...

    def documents(self, scope: Scope) -> list[StoredDoc]: ...

    def search(self, scope: Scope, vector: Vector, limit: int) -> list[VectorHit]: ...

    def lookup(
        self, scope: Scope, vector: Vector, object_ids: Sequence[str]
    ) -> list[VectorHit]: ...

    def points(self, scope: Scope) -> tuple[list[VectorHit], Vectors]: ...


def _scored(hit: VectorHit, score: float) -> VectorHit:
    """``hit`` with ``score`` (``dataclasses.replace`` without its per-call introspection:
    a turn scores a few hundred points)."""
    return VectorHit(hit.object_id, hit.group_id, hit.text, score, hit.payload)


@dataclass(frozen=True)
class _Snapshot:
    hits: list[VectorHit]
    matrix: Vectors
    rows: dict[str, int]


class SnapshotIndex:
    """A ``VectorIndex`` answering searches of the pack-backed types from memory."""

    def __init__(self, store: SnapshotSource) -> None:
        self._store = store
        self._snapshots: dict[Scope, _Snapshot] = {}
        self._writes: dict[Scope, int] = {}
        self._lock = threading.Lock()

    def upsert(self, scope: Scope, items: Sequence[IndexItem], vectors: Vectors) -> None:
        self._store.upsert(scope, items, vectors)
        self._drop(scope)

    def delete(self, scope: Scope, object_ids: Sequence[str]) -> None:
        self._store.delete(scope, object_ids)
        self._drop(scope)

    def hashes(self, scope: Scope) -> dict[str, str]:
        return self._store.hashes(scope)

    def documents(self, scope: Scope) -> list[StoredDoc]:
        return self._store.documents(scope)

    def search(self, scope: Scope, vector: Vector, limit: int) -> list[VectorHit]:
        snapshot = self._snapshot(scope)
        if snapshot is None:
            return self._store.search(scope, vector, limit)
        if limit <= 0 or not snapshot.hits:
            return []
        scores = snapshot.matrix @ np.asarray(vector, dtype=np.float32)
        count = min(limit, len(scores))
        if count < len(scores):
            negated = -scores
            top = np.argpartition(negated, count - 1)[:count]
            top = top[np.argsort(negated[top], kind="stable")]
        else:  # the whole scope: no partition to make (ties keep the index order)
            top = np.argsort(-scores, kind="stable")
        values = scores.tolist()
        hits = snapshot.hits
        return [_scored(hits[i], values[i]) for i in top.tolist()]

    def lookup(self, scope: Scope, vector: Vector, object_ids: Sequence[str]) -> list[VectorHit]:
        snapshot = self._snapshot(scope)
        if snapshot is None:
            return self._store.lookup(scope, vector, object_ids)
        query = np.asarray(vector, dtype=np.float32)
        rows, matrix, hits = snapshot.rows, snapshot.matrix, snapshot.hits
        found = [rows[o] for o in object_ids if o in rows]
        return [_scored(hits[i], float(matrix[i] @ query)) for i in found]

    def invalidate_agent(self, tenant_id: str, agent_id: str) -> None:
        """Forget an agent's snapshots (its pack changed, maybe in another process)."""
        with self._lock:
            for scope in [
                s for s in self._snapshots if (s.tenant_id, s.agent_id) == (tenant_id, agent_id)
            ]:
                del self._snapshots[scope]

    def _drop(self, scope: Scope) -> None:
        with self._lock:
            self._snapshots.pop(scope, None)
            self._writes[scope] = self._writes.get(scope, 0) + 1

    def _snapshot(self, scope: Scope) -> _Snapshot | None:
        if scope.rtype not in PACK_BACKED:
            return None
        with self._lock:
            found = self._snapshots.get(scope)
            writes = self._writes.get(scope, 0)
        if found is not None:
            return found
        hits, matrix = self._store.points(scope)
        built = _Snapshot(hits, matrix, {h.object_id: i for i, h in enumerate(hits)})
        with self._lock:
            if self._writes.get(scope, 0) == writes:  # no write raced the build
                self._snapshots[scope] = built
        return built
