"""P4 retrieval: scored candidates per object type and what the selection strategy kept."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import SchemaModel
from schemas.fields import Id, Millis, Text


class RetrievalType(StrEnum):
    """Lowercase: the values also name the per-type topics and settings."""

    RULES = "rules"
    SCENARIOS = "scenarios"
    MEMORIES = "memories"
    INTENTS = "intents"


class SelectionStrategy(StrEnum):
    """How many candidates to keep; values match the retrieval settings."""

    FIXED_K = "fixed_k"
    ELBOW = "elbow"
    ADAPTIVE_K = "adaptive_k"
    ENTROPY = "entropy"
    CLUSTERING = "clustering"


class RetrievalCandidate(SchemaModel):
    """One retrieved item with each score that led to it (absent where a stage did not run)."""

    item_id: Id
    vector_score: float | None = None
    lexical_score: float | None = None
    fused_score: float
    rerank_score: float | None = None


class RetrievalSelection(SchemaModel):
    """The result of one retrieval type: all candidates, for audit, and the ones selected."""

    retrieval_type: RetrievalType
    candidates: list[RetrievalCandidate] = Field(default_factory=list)
    selected_ids: list[Id] = Field(default_factory=list)
    strategy: SelectionStrategy
    latency_ms: Millis


class GapReason(StrEnum):
    TIMEOUT = "TIMEOUT"
    FAILED = "FAILED"


class RetrievalGap(SchemaModel):
    """A retrieval type that missed the join deadline or failed: recorded, not waited on."""

    retrieval_type: RetrievalType
    reason: GapReason
    detail: Text | None = None
