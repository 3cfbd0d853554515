"""Outcomes as the schema records them: a selection for the turn record (a failed or late
type becomes a gap in the join, ``processors.turn.retrieval_stage``)."""

from __future__ import annotations

from processors.retrieval.model import RetrievalOutcome
from schemas.domain.retrieval import RetrievalCandidate, RetrievalSelection, SelectionStrategy


def to_selection(outcome: RetrievalOutcome, strategy: SelectionStrategy) -> RetrievalSelection:
    """Every ranked candidate with its scores, and the ids selection kept."""
    return RetrievalSelection(
        retrieval_type=outcome.rtype,
        candidates=[
            RetrievalCandidate(
                item_id=c.object_id,
                vector_score=c.vector_score,
                lexical_score=c.lexical_score,
                fused_score=c.score,
                rerank_score=c.rerank_score,
            )
            for c in outcome.ranked
        ],
        selected_ids=[c.object_id for c in outcome.items],
        strategy=strategy,
        latency_ms=outcome.latency_ms,
    )
