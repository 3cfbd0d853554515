"""retrieve / retrieve_all wiring: hybrid candidates, rerank, errors and timeouts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from processors.embedding import Vector
from processors.retrieval import (
    FusionMethod,
    HybridParams,
    Indexer,
    IndexItem,
    LexicalIndexes,
    RetrievalType,
    Scope,
    VectorHit,
    build_query_features,
    query_text,
    retrieve,
    retrieve_all,
    to_gap,
    to_selection,
)
from schemas.domain.retrieval import GapReason
from sinks.vector_store import VectorStore
from streams.settings import RetrievalSettings, RetrievalTypeSettings, SelectionStrategy
from tests.test_retrieval_indexer import HashEmbedder

R = RetrievalType
RULES = Scope("t", "a", R.RULES)
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
    query = build_query_features("where is my parcel", embedder)
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
    query = build_query_features("parcel tracking", embedder)
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
    query = build_query_features("refund me", embedder)
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
    """Delegates to a real store but fails for one type, or blocks it until released."""

    def __init__(self, inner: VectorStore, block: threading.Event | None = None) -> None:
        self._inner = inner
        self._block = block

    def search(self, scope: Scope, vector: Vector, limit: int) -> list[VectorHit]:
        if scope.rtype is R.INTENTS:
            if self._block is None:
                raise ConnectionError("qdrant unreachable")
            self._block.wait(timeout=10)
        return self._inner.search(scope, vector, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_failing_type_is_recorded_not_raised(
    setup: tuple[VectorStore, LexicalIndexes, HashEmbedder],
) -> None:
    store, lexicon, embedder = setup
    query = build_query_features(query_text("where is my parcel?", facts=["tracking"]), embedder)
    results = await retrieve_all(
        query, "t", "a", None, FailingIntents(store), lexicon, RetrievalSettings()
    )
    assert set(results) == set(R)
    assert results[R.INTENTS].error == "ConnectionError: qdrant unreachable"
    assert results[R.RULES].ok and results[R.RULES].items[0].object_id == "target"
    assert results[R.SCENARIOS].ok and results[R.SCENARIOS].items == ()
    assert results[R.MEMORIES].ok and results[R.MEMORIES].items == ()  # no customer known
    assert all(o.latency_ms >= 0 for o in results.values())


async def test_a_late_type_times_out(
    setup: tuple[VectorStore, LexicalIndexes, HashEmbedder],
) -> None:
    store, lexicon, embedder = setup
    release = threading.Event()
    try:
        results = await retrieve_all(
            build_query_features("parcel", embedder),
            "t",
            "a",
            "c1",
            FailingIntents(store, block=release),
            lexicon,
            RetrievalSettings(),
            timeout_s=0.2,
        )
    finally:
        release.set()
    assert results[R.INTENTS].error == "timeout"
    assert results[R.INTENTS].timed_out
    gap = to_gap(results[R.INTENTS])
    assert gap is not None and gap.reason == GapReason.TIMEOUT
    assert results[R.RULES].ok


def test_query_text_puts_the_message_first() -> None:
    assert query_text(" hi ", intent_text="refund", facts=["order 12", " "]) == (
        "hi\nrefund\norder 12"
    )


async def test_outcomes_convert_to_the_schema(
    setup: tuple[VectorStore, LexicalIndexes, HashEmbedder],
) -> None:
    store, lexicon, embedder = setup
    settings = RetrievalSettings()
    results = await retrieve_all(
        build_query_features("parcel tracking", embedder),
        "t",
        "a",
        None,
        FailingIntents(store),
        lexicon,
        settings,
    )
    rules = to_selection(results[R.RULES], settings.rules.strategy)
    assert rules.retrieval_type == R.RULES
    assert rules.strategy == "adaptive_k"
    # The target first, then what the rules' min_k floor (3) pulls in for P5 to filter.
    assert rules.selected_ids[0] == "target"
    assert len(rules.selected_ids) == settings.rules.min_k == 3
    assert len(rules.candidates) == 13
    assert rules.candidates[0].fused_score == results[R.RULES].items[0].score
    assert to_gap(results[R.RULES]) is None
    gap = to_gap(results[R.INTENTS])
    assert gap is not None and gap.reason == GapReason.FAILED
    assert gap.detail == "ConnectionError: qdrant unreachable"
    assert to_selection(results[R.INTENTS], settings.intents.strategy).candidates == []
