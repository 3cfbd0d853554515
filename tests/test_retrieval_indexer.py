"""Re-indexing embeds only what changed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from processors.embedding import Vectors, normalize_rows
from processors.retrieval.bm25 import LexicalIndexes
from processors.retrieval.indexer import Indexer, IndexReport
from processors.retrieval.model import IndexItem, Scope
from schemas.domain.retrieval import RetrievalType
from sinks.vector_store import VectorStore

RULES = Scope("acme", "support", RetrievalType.RULES)


class HashEmbedder:
    """Deterministic pseudo-random unit vectors per text; records every text it encodes."""

    def __init__(self, dim: int = 16, model_id: str = "hash-v1") -> None:
        self._dim = dim
        self._model_id = model_id
        self.texts: list[str] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return self._model_id

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.texts.extend(texts)
        rows = [
            np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(
                size=self._dim
            )
            for t in texts
        ]
        return normalize_rows(np.array(rows).reshape(len(texts), self._dim))


def items(texts: dict[str, str]) -> list[IndexItem]:
    return [IndexItem.of(oid, text) for oid, text in texts.items()]


@pytest.fixture
def store() -> VectorStore:
    return VectorStore.memory(16)


def test_reindex_embeds_only_new_and_changed_items(store: VectorStore) -> None:
    embedder = HashEmbedder()
    lexicon = LexicalIndexes(store.documents)
    indexer = Indexer(store, embedder, lexicon, batch_size=4)
    original = {f"r{i}": f"rule number {i}" for i in range(10)}
    assert indexer.sync(RULES, items(original)) == IndexReport(10, 0, 0)
    assert len(embedder.texts) == 10

    embedder.texts.clear()
    updated = dict(original)
    updated["r1"] = "rule number one, reworded"
    updated["r2"] = "rule number two, reworded"
    del updated["r3"]
    updated["r10"] = "a brand new rule"
    assert indexer.sync(RULES, items(updated)) == IndexReport(embedded=3, deleted=1, unchanged=7)
    assert sorted(embedder.texts) == sorted(
        ["rule number one, reworded", "rule number two, reworded", "a brand new rule"]
    )
    assert set(store.hashes(RULES)) == set(updated)
    assert {d.object_id for d in lexicon.get(RULES).docs} == set(updated)

    embedder.texts.clear()
    assert indexer.sync(RULES, items(updated)) == IndexReport(0, 0, 10)
    assert embedder.texts == []


def test_payload_change_reindexes_the_item(store: VectorStore) -> None:
    indexer = Indexer(store, HashEmbedder())
    indexer.sync(RULES, [IndexItem.of("r1", "same text", {"priority": 1})])
    report = indexer.sync(RULES, [IndexItem.of("r1", "same text", {"priority": 2})])
    assert report == IndexReport(1, 0, 0)
    hit = store.search(RULES, HashEmbedder().embed(["same text"])[0], 1)[0]
    assert hit.payload == {"priority": 2}


def test_a_new_embedding_model_reembeds_everything(store: VectorStore) -> None:
    Indexer(store, HashEmbedder(model_id="hash-v1")).sync(RULES, items({"a": "x", "b": "y"}))
    v2 = HashEmbedder(model_id="hash-v2")
    assert Indexer(store, v2).sync(RULES, items({"a": "x", "b": "y"})) == IndexReport(2, 0, 0)


def test_add_and_remove_keep_other_items(store: VectorStore) -> None:
    memories = Scope("acme", "support", RetrievalType.MEMORIES, customer_id="c1")
    lexicon = LexicalIndexes(store.documents)
    indexer = Indexer(store, HashEmbedder(), lexicon)
    indexer.add(memories, items({"m1": "likes email", "m2": "lives in Oslo"}))
    assert lexicon.get(memories).search(["oslo"], 5)[0].doc.object_id == "m2"
    assert indexer.add(memories, items({"m3": "prefers mornings"})) == IndexReport(1, 0, 0)
    indexer.remove(memories, ["m1"])
    assert set(store.hashes(memories)) == {"m2", "m3"}
    assert {d.object_id for d in lexicon.get(memories).docs} == {"m2", "m3"}


def test_duplicate_object_ids_are_refused(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Indexer(store, HashEmbedder()).sync(RULES, items({"a": "x"}) * 2)
