"""Two tenants with the same texts and ids: a query only ever sees its own tenant's objects
(and, for memories, its own customer's), with the real model and real Qdrant local mode."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.embedding import Embedder
from processors.phases.tools import PackToolExecutor
from processors.retrieval import (
    Indexer,
    IndexItem,
    LexicalIndexes,
    RetrievalType,
    Scope,
    retrieve,
)
from processors.turn.deps import TurnDeps
from processors.turn.retrieval_stage import query_features, retrieve_one
from schemas.events.retrieval import RetrievalRequested
from sinks.embedder import default_embedder
from sinks.pack_files import load_pack
from sinks.python_tools import PythonToolExecutor
from sinks.vector_store import Layout, VectorStore
from streams.settings import RetrievalTypeSettings, SelectionStrategy, Settings

R = RetrievalType
PACK = load_pack(Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support")
TENANTS = ("tenant-a", "tenant-b")
CUSTOMERS = ("alice", "bob")
AGENT = "support"
KEEP_ALL = RetrievalTypeSettings(
    strategy=SelectionStrategy.FIXED_K, min_score=-1.0, min_k=0, max_k=50
)

TEXTS = {
    R.RULES: {
        "refund": "The customer asks for a refund of an order",
        "cancel": "The customer wants to cancel their subscription",
        "angry": "The customer is angry or uses abusive language",
    },
    R.SCENARIOS: {
        "returns": "Return a product: the customer wants to send an item back for a refund",
        "moving": "Address change: the customer moved and needs a new delivery address",
    },
}
INTENT_PHRASES = {
    "refund": ["I want my money back", "refund my order please"],
    "cancel": ["cancel my subscription", "stop my plan"],
}
MEMORIES = {
    "m1": "Asked for a refund of order 1234 last month",
    "m2": "Prefers to be contacted by email",
}


def items_for(rtype: RetrievalType, tenant: str, customer: str | None = None) -> list[IndexItem]:
    owner = {"tenant": tenant, "customer": customer}
    if rtype is R.INTENTS:
        return [
            IndexItem.of(f"{label}#{i}", phrase, owner, group=label)
            for label, phrases in INTENT_PHRASES.items()
            for i, phrase in enumerate(phrases)
        ]
    texts = MEMORIES if rtype is R.MEMORIES else TEXTS[rtype]
    return [IndexItem.of(oid, text, owner) for oid, text in texts.items()]


def scopes(tenant: str) -> Iterator[Scope]:
    for rtype in (R.RULES, R.SCENARIOS, R.INTENTS):
        yield Scope(tenant, AGENT, rtype)
    for customer in CUSTOMERS:
        yield Scope(tenant, AGENT, R.MEMORIES, customer)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return default_embedder()


@pytest.fixture(scope="module", params=[Layout.PER_SCOPE, Layout.SHARED])
def indexed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[VectorStore, LexicalIndexes]]:
    path: Path = tmp_path_factory.mktemp("qdrant")
    store = VectorStore.local(path, embedder.dim, layout=request.param)
    lexicon = LexicalIndexes(store.documents)
    indexer = Indexer(store, embedder, lexicon)
    for tenant in TENANTS:
        for scope in scopes(tenant):
            indexer.sync(scope, items_for(scope.rtype, tenant, scope.customer_id))
    yield store, lexicon
    store.close()


QUERY = "I want a refund for my order and to cancel my subscription"


def test_each_tenant_sees_only_its_own_objects(
    indexed: tuple[VectorStore, LexicalIndexes], embedder: Embedder
) -> None:
    store, lexicon = indexed
    query = query_features(QUERY, embedder.embed([QUERY])[0])
    for tenant in TENANTS:
        for scope in scopes(tenant):
            outcome = retrieve(scope, query, store, lexicon, KEEP_ALL)
            expected = {i.group_id for i in items_for(scope.rtype, tenant)}
            assert {i.object_id for i in outcome.items} == expected, scope
            owners = {(i.payload["tenant"], i.payload["customer"]) for i in outcome.items}
            assert owners == {(tenant, scope.customer_id)}, scope


def test_a_cold_lexical_index_rebuilds_within_the_scope(
    indexed: tuple[VectorStore, LexicalIndexes], embedder: Embedder
) -> None:
    store, _ = indexed
    cold = LexicalIndexes(store.documents)
    scope = Scope("tenant-b", AGENT, R.MEMORIES, "bob")
    query = query_features("refund order", embedder.embed(["refund order"])[0])
    outcome = retrieve(scope, query, store, cold, KEEP_ALL)
    assert outcome.items[0].object_id == "m1"
    assert outcome.items[0].lexical_score > 0
    assert {d.object_id for d in cold.get(scope).docs} == set(MEMORIES)


def test_each_retrieval_consumer_returns_the_best_objects_of_its_type(
    indexed: tuple[VectorStore, LexicalIndexes], embedder: Embedder
) -> None:
    store, lexicon = indexed
    text = "I want my money back for order 1234"
    features = query_features(text, embedder.embed([text])[0])
    deps = TurnDeps(
        embedder=embedder,
        vectors=store,
        lexicon=lexicon,
        tools=lambda _pack: PackToolExecutor(PythonToolExecutor(Path("."))),
        settings=Settings(),
    )
    best = {}
    for rtype in R:
        request = RetrievalRequested(
            turn_id="t1",
            session_key="tenant-a:webchat:alice",
            tenant_id="tenant-a",
            agent_id=AGENT,
            customer_id="alice",
            retrieval_type=rtype,
            query_text=features.text,
            embedding=[float(x) for x in features.vector],
            lexical_terms=list(features.tokens),
            deadline=datetime.now(UTC),
        )
        result = retrieve_one(request, PACK, deps)
        assert result.error is None, rtype
        best[rtype] = result.selection.selected_ids[0]
    assert best == {
        R.RULES: "refund",
        R.SCENARIOS: "returns",
        R.INTENTS: "refund",
        R.MEMORIES: "m1",
    }
