"""The Qdrant adapter: naming, layouts, point ids, scope filters, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from processors.retrieval.model import IndexItem, Scope
from schemas.domain.retrieval import RetrievalType
from sinks.vector_store import Layout, VectorStore, name_part, point_id
from streams.settings import Settings
from tests.test_retrieval_indexer import HashEmbedder

R = RetrievalType


def put(store: VectorStore, scope: Scope, texts: dict[str, str]) -> None:
    batch = [IndexItem.of(oid, text, {"owner": scope.tenant_id}) for oid, text in texts.items()]
    store.upsert(scope, batch, HashEmbedder().embed([i.text for i in batch]))


def test_name_part_is_safe_and_collision_free() -> None:
    assert name_part("acme-1") == "acme-1"
    parts = {name_part(raw) for raw in ["Acme", "acme_", "ACME", "a/b", "a b", "a__b", "x" * 60]}
    assert len(parts) == 7
    assert all(p.replace("-", "").replace("_", "").isalnum() for p in parts)
    assert all("__" not in p and len(p) <= 43 for p in parts)


def test_point_ids_differ_per_scope_and_are_stable() -> None:
    a = Scope("t1", "a", R.RULES)
    assert point_id(a, "r1") == point_id(Scope("t1", "a", R.RULES), "r1")
    others = [Scope("t2", "a", R.RULES), Scope("t1", "b", R.RULES), Scope("t1", "a", R.INTENTS)]
    assert len({point_id(s, "r1") for s in [a, *others]}) == 4


def test_scope_requires_a_customer_exactly_for_memories() -> None:
    with pytest.raises(ValueError):
        Scope("t", "a", R.MEMORIES)
    with pytest.raises(ValueError):
        Scope("t", "a", R.RULES, customer_id="c1")
    with pytest.raises(ValueError):
        Scope("", "a", R.RULES)


def test_collection_layouts() -> None:
    local = VectorStore.memory(16, memory_buckets=8)
    assert local.collection(Scope("Acme", "sup", R.RULES)).startswith("ts__acme_")
    assert local.collection(Scope("acme", "sup", R.RULES)) == "ts__acme__sup__rules"
    memory_names = {local.collection(Scope("acme", "sup", R.MEMORIES, f"c{i}")) for i in range(100)}
    assert len(memory_names) == 8
    assert all(n.startswith("ts__acme__sup__memories__b00") for n in memory_names)
    shared = VectorStore.memory(16, layout=Layout.SHARED)
    assert shared.collection(Scope("acme", "sup", R.MEMORIES, "c1")) == "ts__memories"


@pytest.mark.parametrize("layout", list(Layout))
def test_scope_filters_isolate_tenants_agents_and_customers(layout: Layout) -> None:
    store = VectorStore.memory(16, layout=layout, memory_buckets=1)
    scopes = [
        Scope("t1", "a", R.RULES),
        Scope("t2", "a", R.RULES),
        Scope("t1", "b", R.RULES),
        Scope("t1", "a", R.MEMORIES, "c1"),
        Scope("t1", "a", R.MEMORIES, "c2"),
    ]
    for scope in scopes:
        put(store, scope, {"x": "shared text", f"own-{scope.agent_id}": "other"})
    query = HashEmbedder().embed(["shared text"])[0]
    for scope in scopes:
        hits = store.search(scope, query, 10)
        assert len(hits) == 2
        assert hits[0].object_id == "x"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert all(h.payload == {"owner": scope.tenant_id} for h in hits)
        assert set(store.hashes(scope)) == {"x", f"own-{scope.agent_id}"}
        assert [h.object_id for h in store.lookup(scope, query, ["x", "missing"])] == ["x"]
    store.delete(scopes[0], ["x"])
    assert set(store.hashes(scopes[0])) == {"own-a"}
    assert set(store.hashes(scopes[1])) == {"x", "own-a"}


def test_reads_of_an_unknown_scope_are_empty() -> None:
    store = VectorStore.memory(16)
    scope = Scope("nobody", "a", R.SCENARIOS)
    query = np.full(16, 0.25, dtype=np.float32)
    assert store.search(scope, query, 5) == []
    assert store.lookup(scope, query, ["x"]) == []
    assert store.hashes(scope) == {}
    assert store.documents(scope) == []
    store.delete(scope, ["x"])


def test_documents_and_grouped_points() -> None:
    store = VectorStore.memory(16)
    scope = Scope("t", "a", R.INTENTS)
    phrases = [IndexItem.of("refund#1", "money back", group="refund"), IndexItem.of("x", "plain")]
    store.upsert(scope, phrases, HashEmbedder().embed(["money back", "plain"]))
    docs = {d.object_id: (d.group_id, d.text) for d in store.documents(scope)}
    assert docs == {"refund#1": ("refund", "money back"), "x": ("x", "plain")}


def test_vectors_must_match_the_store() -> None:
    store = VectorStore.memory(8)
    scope = Scope("t", "a", R.RULES)
    item = [IndexItem.of("r", "text")]
    with pytest.raises(ValueError, match="dim"):
        store.upsert(scope, item, HashEmbedder(dim=16).embed(["text"]))
    with pytest.raises(ValueError, match="one vector"):
        store.upsert(scope, item, HashEmbedder(dim=8).embed(["a", "b"]))


def test_local_path_persists_across_reopen(tmp_path: Path) -> None:
    scope = Scope("t", "a", R.RULES)
    store = VectorStore.local(tmp_path / "q", 16)
    put(store, scope, {"r1": "persisted"})
    store.close()
    reopened = VectorStore.local(tmp_path / "q", 16)
    try:
        assert set(reopened.hashes(scope)) == {"r1"}
    finally:
        reopened.close()


def test_from_settings_opens_local_mode_under_the_data_dir(tmp_path: Path) -> None:
    store = VectorStore.from_settings(Settings(data_dir=tmp_path), 16)
    try:
        put(store, Scope("t", "a", R.RULES), {"r1": "text"})
    finally:
        store.close()
    assert (tmp_path / "qdrant").is_dir()
