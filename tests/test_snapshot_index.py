"""The in-memory snapshot answers searches exactly as the vector store does, and forgets a
scope when it is written to."""

from __future__ import annotations

import numpy as np
import pytest

from processors.embedding import normalize_rows
from processors.retrieval.model import IndexItem, Scope
from processors.retrieval.snapshot_index import SnapshotIndex
from schemas.domain.retrieval import RetrievalType
from sinks.vector_store import VectorStore

DIM = 16
RULES = Scope("t1", "a1", RetrievalType.RULES)
MEMORIES = Scope("t1", "a1", RetrievalType.MEMORIES, customer_id="c1")


def items(n: int, prefix: str = "r") -> list[IndexItem]:
    return [IndexItem.of(f"{prefix}{i}#p", f"text {i}", group=f"{prefix}{i}") for i in range(n)]


@pytest.fixture
def stores() -> tuple[VectorStore, SnapshotIndex, np.random.Generator]:
    rng = np.random.default_rng(7)
    store = VectorStore.memory(DIM)
    snapshot = SnapshotIndex(store)
    snapshot.upsert(RULES, items(40), normalize_rows(rng.normal(size=(40, DIM))))
    snapshot.upsert(MEMORIES, items(5, "m"), normalize_rows(rng.normal(size=(5, DIM))))
    return store, snapshot, rng


def test_search_and_lookup_match_the_store(
    stores: tuple[VectorStore, SnapshotIndex, np.random.Generator],
) -> None:
    store, snapshot, rng = stores
    for _ in range(5):
        query = normalize_rows(rng.normal(size=(1, DIM)))[0]
        expected = store.search(RULES, query, 10)
        got = snapshot.search(RULES, query, 10)
        assert [h.object_id for h in got] == [h.object_id for h in expected]
        assert np.allclose([h.score for h in got], [h.score for h in expected], atol=1e-5)
        ids = ["r3#p", "r7#p", "missing"]
        by_id = {h.object_id: h.score for h in store.lookup(RULES, query, ids)}
        assert {h.object_id: h.score for h in snapshot.lookup(RULES, query, ids)} == pytest.approx(
            by_id, abs=1e-5
        )


def test_a_write_makes_the_next_search_see_the_new_points(
    stores: tuple[VectorStore, SnapshotIndex, np.random.Generator],
) -> None:
    _, snapshot, rng = stores
    query = normalize_rows(rng.normal(size=(1, DIM)))[0]
    assert "new#p" not in {h.object_id for h in snapshot.search(RULES, query, 50)}
    snapshot.upsert(RULES, [IndexItem.of("new#p", "new", group="new")], query[None, :])
    best = snapshot.search(RULES, query, 1)[0]
    assert best.object_id == "new#p" and best.score == pytest.approx(1.0, abs=1e-5)
    snapshot.delete(RULES, ["new#p"])
    assert "new#p" not in {h.object_id for h in snapshot.search(RULES, query, 50)}


def test_memories_are_searched_in_the_store(
    stores: tuple[VectorStore, SnapshotIndex, np.random.Generator],
) -> None:
    store, snapshot, rng = stores
    query = normalize_rows(rng.normal(size=(1, DIM)))[0]
    got = snapshot.search(MEMORIES, query, 3)
    assert [h.object_id for h in got] == [h.object_id for h in store.search(MEMORIES, query, 3)]
