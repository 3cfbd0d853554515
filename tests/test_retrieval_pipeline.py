"""retrieve and retrieve_one (what each retrieval consumer runs): hybrid candidates, rerank,
and a failing type recorded as a failed result (a late one is the join's: test_turn_stages)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processors.embedding import Vector
from processors.phases.tools import PackToolExecutor
from processors.retrieval import (
    FusionMethod,
    HybridParams,
    Indexer,
    IndexItem,
    LexicalIndexes,
    RetrievalType,
    Scope,
    VectorHit,
    query_text,
    retrieve,
    to_selection,
)
from processors.retrieval.query import QueryFeatures
from processors.turn.deps import TurnDeps
from processors.turn.retrieval_stage import query_features, retrieve_one
from schemas.events.retrieval import RetrievalRequested
from sinks.pack_files import load_pack
from sinks.python_tools import PythonToolExecutor
from sinks.vector_store import VectorStore
from streams.settings import (
    RetrievalSettings,
    RetrievalTypeSettings,
    SelectionStrategy,
    Settings,
)
from tests.test_retrieval_indexer import HashEmbedder

R = RetrievalType
RULES = Scope("t", "a", R.RULES)
PACK = load_pack(Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support")
KEEP_ALL = RetrievalTypeSettings(
    strategy=SelectionStrategy.FIXED_K, min_score=-1.0, min_k=0, max_k=1
)


@pytest.fixture
def setup() -> tuple[VectorStore, LexicalIndexes, HashEmbedder]:
    embedder = HashEmbedder()
    store = VectorStore.memory(embedder.dim)
    lexicon = LexicalIndexes(store.documents)
    indexer = Indexer(store, embedder, lexicon)
    rules = [IndexItem.of(f"r{i}", f"filler text number {i}") for i in range(12)]
    rules.append(IndexItem.of("target", "parcel tracking"))
    indexer.sync(RULES, rules)
    indexer.sync(Scope("t", "a", R.INTENTS), [IndexItem.of("i", "parcel", group="track")])
    indexer.sync(Scope("t", "a", R.SCENARIOS), [])
    return store, lexicon, embedder


def features(text: str, embedder: HashEmbedder) -> QueryFeatures:
    """P4.1's features of ``text`` as a turn builds them."""
    return query_features(text, embedder.embed([text])[0])


class MissesTarget:
    """A store whose vector search misses "target", as if it ranked below the top N."""

    def __init__(self, inner: VectorStore) -> None:
        self._inner = inner
        self.looked_up: list[str] = []

    def search(self, scope: Scope, vector: Vector, limit: int) -> list[VectorHit]:
        return [h for h in self._inner.search(scope, vector, limit) if h.object_id != "target"]

    def lookup(self, scope: Scope, vector: Vector, object_ids: Sequence[str]) -> list[VectorHit]:
        self.looked_up.extend(object_ids)
        return self._inner.lookup(scope, vector, object_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_lexical_only_candidates_get_their_cosine(
    setup: tuple[VectorStore, LexicalIndexes, HashEmbedder],
) -> None:
    store, lexicon, embedder = setup
    spy = MissesTarget(store)
    query = features("where is my parcel", embedder)
    outcome = retrieve(RULES, query, spy, lexicon, KEEP_ALL)
    assert spy.looked_up == ["target"]
    top = outcome.items[0]
    assert top.object_id == "target"
    target_vec = embedder.embed(["parcel tracking"])[0]
    assert top.vector_score == pytest.approx(float(query.vector @ target_vec), abs=1e-5)
    assert top.lexical_score > 0
    assert top.score == pytest.approx(0.7 * top.vector_score + 0.3 * top.lexical_score)


def test_rrf_and_rerank_paths(setup: tuple[VectorStore, LexicalIndexes, HashEmbedder]) -> None:
    store, lexicon, embedder = setup
    query = features("parcel tracking", embedder)
    rrf = retrieve(
        RULES, query, store, lexicon, KEEP_ALL, hybrid=HybridParams(fusion=FusionMethod.RRF)
    )
    assert rrf.items[0].object_id == "target"
    assert rrf.items[0].score == pytest.approx(1.0)

    class Constant:
        def score(self, query: str, texts: Sequence[str]) -> list[float]:
            return [0.5 if t == "parcel tracking" else 0.0 for t in texts]

    settings = KEEP_ALL.model_copy(update={"rerank": True, "max_k": 3})
    reranked = retrieve(RULES, query, store, lexicon, settings, reranker=Constant())
    assert reranked.items[0].object_id == "target"
    assert reranked.items[0].rerank_score == 0.5
    assert reranked.items[0].score == pytest.approx(0.7 * 0.5 + 0.3 * 1.0)
    assert len(reranked.ranked) == 13  # every point was a vector candidate (32 asked)


class HidesPoint:
    """A store whose vector search misses one point, as if it ranked below the top N."""

    def __init__(self, inner: VectorStore, hidden: str) -> None:
        self._inner = inner
        self._hidden = hidden
        self.looked_up: list[str] = []

    def search(self, scope: Scope, vector: Vector, limit: int) -> list[VectorHit]:
        return [h for h in self._inner.search(scope, vector, limit) if h.object_id != self._hidden]

    def lookup(self, scope: Scope, vector: Vector, object_ids: Sequence[str]) -> list[VectorHit]:
        self.looked_up.extend(object_ids)
        return self._inner.lookup(scope, vector, object_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_pooling_scores_every_point_of_a_candidate_object(
    setup: tuple[VectorStore, LexicalIndexes, HashEmbedder],
) -> None:
    store, lexicon, embedder = setup
    scope = Scope("t", "a", R.INTENTS)
    phrases = {"refund": ["money back", "refund me", "reimburse"], "cancel": ["stop order"]}
    Indexer(store, embedder, lexicon).sync(
        scope,
        [
            IndexItem.of(f"{label}#{i}", text, group=label)
            for label, texts in phrases.items()
            for i, text in enumerate(texts)
        ],
    )
    query = features("refund me", embedder)
    spy = HidesPoint(store, "refund#2")  # "reimburse" never makes the vector list
    pooled = retrieve(scope, query, spy, lexicon, KEEP_ALL.model_copy(update={"pool_top_n": 3}))
    assert spy.looked_up == ["refund#2"]
    vectors = embedder.embed(phrases["refund"])
    cosines = [float(query.vector @ v) for v in vectors]
    lexical = [0.0, 1.0, 0.0]  # only "refund me" shares a term; it has them all
    fused = sorted((0.7 * c + 0.3 * x for c, x in zip(cosines, lexical, strict=True)))
    refund = next(r for r in pooled.ranked if r.object_id == "refund")
    assert refund.score == pytest.approx(sum(fused) / 3)
    assert refund.text == "refund me"


class FailingIntents:
    """Delegates to a real store but fails for the intents."""

    def __init__(self, inner: VectorStore) -> None:
        self._inner = inner

    def search(self, scope: Scope, vector: Vector, limit: int) -> list[VectorHit]:
        if scope.rtype is R.INTENTS:
            raise ConnectionError("qdrant unreachable")
        return self._inner.search(scope, vector, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def request(rtype: RetrievalType, text: str, embedder: HashEmbedder) -> RetrievalRequested:
    features = query_features(text, embedder.embed([text])[0])
    return RetrievalRequested(
        turn_id="t1",
        session_key="t:webchat:v1",
        tenant_id="t",
        agent_id="a",
        customer_id="c1",
        retrieval_type=rtype,
        query_text=features.text,
        embedding=[float(x) for x in features.vector],
        lexical_terms=list(features.tokens),
        deadline=datetime.now(UTC),
    )


def deps(store: Any, lexicon: LexicalIndexes, embedder: HashEmbedder) -> TurnDeps:
    return TurnDeps(
        embedder=embedder,
        vectors=store,
        lexicon=lexicon,
        tools=lambda _pack: PackToolExecutor(PythonToolExecutor(Path("."))),
        settings=Settings(),
    )


def test_a_failing_type_is_a_failed_result_not_raised(
    setup: tuple[VectorStore, LexicalIndexes, HashEmbedder],
) -> None:
    store, lexicon, embedder = setup
    given = deps(FailingIntents(store), lexicon, embedder)
    text = "where is my parcel?"
    results = {r: retrieve_one(request(r, text, embedder), PACK, given) for r in R}
    failed = results[R.INTENTS]
    assert failed.error is not None and failed.error.code == "retrieval.failed"
    assert failed.error.message == "ConnectionError: qdrant unreachable"
    assert failed.selection.selected_ids == []
    assert results[R.RULES].error is None
    assert results[R.RULES].selection.selected_ids[0] == "target"
    assert results[R.SCENARIOS].error is None and results[R.SCENARIOS].selection.selected_ids == []
    assert results[R.MEMORIES].error is None and results[R.MEMORIES].selection.selected_ids == []


def test_memories_without_a_customer_are_a_failed_result(
    setup: tuple[VectorStore, LexicalIndexes, HashEmbedder],
) -> None:
    store, lexicon, embedder = setup
    anonymous = request(R.MEMORIES, "parcel", embedder).model_copy(update={"customer_id": None})
    result = retrieve_one(anonymous, PACK, deps(store, lexicon, embedder))
    assert result.error is not None
    assert result.error.message == "a memories scope needs a customer_id"


def test_query_text_is_the_message_alone() -> None:
    assert query_text("  where is my order?\n ") == "where is my order?"


def test_a_result_records_every_candidate_and_the_selected_ids(
    setup: tuple[VectorStore, LexicalIndexes, HashEmbedder],
) -> None:
    store, lexicon, embedder = setup
    settings = RetrievalSettings()
    rules = retrieve_one(
        request(R.RULES, "parcel tracking", embedder), PACK, deps(store, lexicon, embedder)
    ).selection
    assert rules.retrieval_type == R.RULES
    assert rules.strategy == "adaptive_k"
    # The target first, then what the rules' min_k floor (3) pulls in for P5 to filter.
    assert rules.selected_ids[0] == "target"
    assert len(rules.selected_ids) == settings.rules.min_k == 3
    assert len(rules.candidates) == 13
    direct = retrieve(
        RULES,
        query_features("parcel tracking", embedder.embed(["parcel tracking"])[0]),
        store,
        lexicon,
        settings.rules,
    )
    assert rules.candidates[0].fused_score == pytest.approx(direct.items[0].score)
    assert to_selection(direct, settings.rules.strategy).selected_ids == rules.selected_ids
