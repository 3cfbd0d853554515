"""P4.2-P4.5 for one type: hybrid search, optional rerank and selection. The four types run
apart (one retrieval consumer each; ``processors.turn.retrieval_stage.retrieve_one``)."""

from __future__ import annotations

import time
from dataclasses import replace

from processors.retrieval.bm25 import LexicalIndexes
from processors.retrieval.fusion import Candidate, HybridParams, fuse
from processors.retrieval.model import RetrievalOutcome, Retrieved, Scope
from processors.retrieval.ports import Reranker, VectorIndex
from processors.retrieval.query import QueryFeatures
from processors.retrieval.selection import StrategyParams, select_count
from schemas.settings import RetrievalTypeSettings


def retrieve(
    scope: Scope,
    query: QueryFeatures,
    store: VectorIndex,
    lexicon: LexicalIndexes,
    settings: RetrievalTypeSettings,
    *,
    reranker: Reranker | None = None,
    hybrid: HybridParams | None = None,
    strategy: StrategyParams | None = None,
) -> RetrievalOutcome:
    """One type for one turn. Raises on store errors (``retrieve_one`` records them)."""
    started = time.perf_counter()
    hybrid = hybrid or HybridParams()
    ranked = _hybrid_candidates(
        scope, query, store, lexicon, hybrid, settings.max_k, settings.pool_top_n
    )
    if settings.rerank and reranker is not None and ranked:
        # Candidates below the rerank depth are dropped: their scores are on another scale.
        # The reranker sees each object's best point; its score replaces the pooled one.
        top = ranked[: max(hybrid.rerank_depth, settings.max_k)]
        rescored = reranker.score(query.text, [c.text for c in top])
        ranked = fuse(
            [replace(c, rerank_score=s) for c, s in zip(top, rescored, strict=True)], hybrid
        )
    k = select_count([c.score for c in ranked], settings, strategy)
    candidates = tuple(
        Retrieved(
            object_id=c.object_id,
            score=c.score,
            vector_score=c.vector_score,
            lexical_score=c.lexical_score,
            text=c.text,
            payload=c.payload,
            rerank_score=c.rerank_score,
        )
        for c in ranked
    )
    elapsed = (time.perf_counter() - started) * 1000.0
    return RetrievalOutcome(scope.rtype, candidates, selected=k, latency_ms=elapsed)


def _hybrid_candidates(
    scope: Scope,
    query: QueryFeatures,
    store: VectorIndex,
    lexicon: LexicalIndexes,
    hybrid: HybridParams,
    max_k: int,
    pool_top_n: int = 1,
) -> list[Candidate]:
    """Union of the vector and BM25 top lists, each point with both scores, fused.

    When pooling (``pool_top_n > 1``) an object's score needs its best points, not only those
    that made a top list: every point of every candidate object is scored (the lexical list
    then covers the whole scope, the vector scores of the other points come by lookup)."""
    limit = max(hybrid.candidates, 4 * max_k)
    lexical_index = lexicon.get(scope)
    vector_hits = {h.object_id: h for h in store.search(scope, query.vector, limit)}
    lexical_limit = len(lexical_index) if pool_top_n > 1 else limit
    lexical_hits = lexical_index.search(query.tokens, lexical_limit)
    missing = [h.doc.object_id for h in lexical_hits if h.doc.object_id not in vector_hits]
    if pool_top_n > 1:
        groups = {h.group_id for h in vector_hits.values()}
        groups.update(h.doc.group_id for h in lexical_hits)
        known = set(vector_hits).union(missing)
        missing += [
            d.object_id
            for d in lexical_index.docs
            if d.group_id in groups and d.object_id not in known
        ]
    if missing:
        vector_hits.update((h.object_id, h) for h in store.lookup(scope, query.vector, missing))
    lexical = {h.doc.object_id: (rank, h) for rank, h in enumerate(lexical_hits, start=1)}
    candidates = []
    for point_id, hit in vector_hits.items():
        rank, lex = lexical.get(point_id, (None, None))
        candidates.append(
            Candidate(
                object_id=hit.group_id,
                point_id=point_id,
                text=hit.text,
                payload=hit.payload,
                vector_score=hit.score,
                lexical_score=lex.normalized if lex is not None else 0.0,
                lexical_rank=rank,
            )
        )
    return fuse(candidates, hybrid, pool_top_n)
