"""Hybrid score fusion of vector and lexical evidence.

Default: a **weighted sum** ``0.7 * semantic + 0.3 * lexical`` (divided by the weights' sum
when it is not 1) where semantic is the cosine (or the reranker's score) and lexical the
normalised BM25 (see ``LexicalHit``), 0 when the object shares no term with the query.
Chosen over RRF because the selection strategies threshold and cut on *absolute* scores
(min_score, drops, gaps): a weighted sum of two bounded scores keeps that meaning, while RRF
only encodes ranks: the best candidate of an irrelevant list scores as high as the best of a
relevant one.

RRF stays available (``FusionMethod.RRF``): ``sum_i w_i / (k + rank_i)`` divided by its
maximum ``sum_i w_i / (k + 1)``, so an object ranked first by both lists scores 1.0.
Use it with a min_score suited to rank scores.

**Pooling** an object's points (an intent's example phrases and description, a rule's
condition and examples): with ``pool_top_n = 1`` (the default) an object scores as its best
point; with ``n > 1`` as the mean of its ``n`` best point scores (of all it has when it has
fewer). Max pooling lets one stray phrase of the wrong intent win on a shared word ("order",
"parcel"); averaging the few best phrases asks that several phrasings agree, as a
k-nearest-neighbour vote does. The object keeps its best point's text, payload and part
scores for the audit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FusionMethod(StrEnum):
    WEIGHTED = "weighted"
    RRF = "rrf"


@dataclass(frozen=True)
class HybridParams:
    """Knobs of the hybrid search (not in RetrievalTypeSettings yet: same for every type)."""

    fusion: FusionMethod = FusionMethod.WEIGHTED
    vector_weight: float = 0.7
    lexical_weight: float = 0.3
    rrf_k: int = 60
    candidates: int = 32
    """Points asked from each list; at least 4 * max_k are asked."""
    rerank_depth: int = 20
    """Best fused objects handed to the reranker; at least max_k."""

    def __post_init__(self) -> None:
        if self.vector_weight < 0 or self.lexical_weight < 0:
            raise ValueError("fusion weights must be >= 0")
        if self.vector_weight + self.lexical_weight <= 0:
            raise ValueError("at least one fusion weight must be > 0")
        if self.rrf_k < 0 or self.candidates < 1 or self.rerank_depth < 1:
            raise ValueError("rrf_k must be >= 0, candidates and rerank_depth >= 1")


@dataclass(frozen=True)
class Candidate:
    """One point with its evidence; ``object_id`` is its group (the object it stands for)."""

    object_id: str
    point_id: str
    text: str
    payload: Mapping[str, Any]
    vector_score: float
    lexical_score: float = 0.0
    lexical_rank: int | None = None
    """1-based rank in the BM25 list, None when absent from it."""
    rerank_score: float | None = None
    score: float = 0.0

    @property
    def semantic_score(self) -> float:
        return self.vector_score if self.rerank_score is None else self.rerank_score


def _with_score(c: Candidate, score: float) -> Candidate:
    """``replace(c, score=score)`` without ``dataclasses.replace``'s per-call introspection
    (fusion scores every point of a scope on every turn)."""
    return Candidate(
        c.object_id,
        c.point_id,
        c.text,
        c.payload,
        c.vector_score,
        c.lexical_score,
        c.lexical_rank,
        c.rerank_score,
        score,
    )


def fuse(
    candidates: Sequence[Candidate], params: HybridParams, pool_top_n: int = 1
) -> list[Candidate]:
    """Score every candidate, keep each object's best point, scored by pooling its best
    ``pool_top_n`` points (see the module docstring), and sort best first (ties broken by
    object id, so results are deterministic)."""
    if pool_top_n < 1:
        raise ValueError("pool_top_n must be >= 1")
    if params.fusion is FusionMethod.RRF:
        scored = _rrf(candidates, params)
        scores = [c.score for c in scored]
    else:
        # The fused score of each point, kept beside it: only each object's pooled point
        # becomes a new Candidate (a scope's every point is fused on every turn).
        vw, lw = params.vector_weight, params.lexical_weight
        total = vw + lw
        scored = list(candidates)
        scores = [
            (
                vw * (c.vector_score if c.rerank_score is None else c.rerank_score)
                + lw * c.lexical_score
            )
            / total
            for c in scored
        ]
    by_object: dict[str, list[tuple[float, str, int]]] = {}
    for i, c in enumerate(scored):
        by_object.setdefault(c.object_id, []).append((-scores[i], c.point_id, i))
    pooled = []
    for points in by_object.values():
        points.sort(key=lambda p: (p[0], p[1]))
        top = points[:pool_top_n]
        best = top[0][2]
        score = scores[best] if len(top) == 1 else sum(scores[p[2]] for p in top) / len(top)
        pooled.append(_with_score(scored[best], score))
    return sorted(pooled, key=lambda c: (-c.score, c.object_id))


def _rrf(candidates: Sequence[Candidate], params: HybridParams) -> list[Candidate]:
    by_semantic = sorted(candidates, key=lambda c: (-c.semantic_score, c.point_id))
    semantic_rank = {c.point_id: i for i, c in enumerate(by_semantic, start=1)}
    k = params.rrf_k
    ceiling = (params.vector_weight + params.lexical_weight) / (k + 1)
    out = []
    for c in candidates:
        total = params.vector_weight / (k + semantic_rank[c.point_id])
        if c.lexical_rank is not None:
            total += params.lexical_weight / (k + c.lexical_rank)
        out.append(_with_score(c, total / ceiling))
    return out
