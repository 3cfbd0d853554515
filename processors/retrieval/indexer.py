"""Keeps a scope's vectors in step with its objects, embedding only what changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from processors.embedding import Embedder
from processors.retrieval.bm25 import BM25Index, LexicalIndexes
from processors.retrieval.model import IndexItem, Scope, StoredDoc
from processors.retrieval.ports import VectorIndex


@dataclass(frozen=True)
class IndexReport:
    embedded: int
    deleted: int
    unchanged: int


class Indexer:
    """Compares content hashes with the store: new or changed items are embedded and
    upserted, items gone from the list are deleted, the rest is not touched.

    The stored hash is stamped with the embedder's model id, so switching models re-embeds
    everything instead of mixing vector spaces.
    """

    def __init__(
        self,
        store: VectorIndex,
        embedder: Embedder,
        lexicon: LexicalIndexes | None = None,
        *,
        batch_size: int = 64,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._lexicon = lexicon
        self._batch = batch_size

    def sync(self, scope: Scope, items: Sequence[IndexItem]) -> IndexReport:
        """Make the scope hold exactly ``items`` (e.g. a pack's rules after a reload)."""
        known = self._store.hashes(scope)
        report, stamped = self._upsert_changed(scope, items, known)
        stale = sorted(set(known) - {i.object_id for i in stamped})
        if stale:
            self._store.delete(scope, stale)
        if self._lexicon is not None:
            docs = [StoredDoc(i.object_id, i.group_id, i.text) for i in stamped]
            self._lexicon.put(scope, BM25Index(docs))
        return replace(report, deleted=len(stale))

    def add(self, scope: Scope, items: Sequence[IndexItem]) -> IndexReport:
        """Add or update ``items`` and keep the rest (memory ingestion appends)."""
        report, _ = self._upsert_changed(scope, items, self._store.hashes(scope))
        if self._lexicon is not None and report.embedded:
            self._lexicon.invalidate(scope)
        return report

    def remove(self, scope: Scope, object_ids: Sequence[str]) -> None:
        self._store.delete(scope, object_ids)
        if self._lexicon is not None:
            self._lexicon.invalidate(scope)

    def _upsert_changed(
        self, scope: Scope, items: Sequence[IndexItem], known: dict[str, str]
    ) -> tuple[IndexReport, list[IndexItem]]:
        ids = [i.object_id for i in items]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate object ids in {scope.rtype.value} items")
        stamp = self._embedder.model_id
        stamped = [replace(i, content_hash=f"{stamp}:{i.content_hash}") for i in items]
        changed = [i for i in stamped if known.get(i.object_id) != i.content_hash]
        for start in range(0, len(changed), self._batch):
            batch = changed[start : start + self._batch]
            self._store.upsert(scope, batch, self._embedder.embed([i.text for i in batch]))
        return IndexReport(len(changed), 0, len(items) - len(changed)), stamped
