"""P4.1: the one embedding and the lexical features of a turn, shared by all four types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from processors.embedding import Embedder, Vector
from processors.retrieval.lexical import tokenize


@dataclass(frozen=True)
class QueryFeatures:
    text: str
    vector: Vector
    tokens: tuple[str, ...]


def query_text(message: str, *, intent_text: str | None = None, facts: Sequence[str] = ()) -> str:
    """The situation as one text: the message first, then the sensor's new-intent text and
    situation facts, one per line (the embedding reads it as one situation; the reranker's
    max-sim still sees each line on its own)."""
    lines = [message.strip()]
    if intent_text and intent_text.strip():
        lines.append(intent_text.strip())
    lines.extend(f.strip() for f in facts if f.strip())
    return "\n".join(line for line in lines if line)


def build_query_features(text: str, embedder: Embedder) -> QueryFeatures:
    """One embedding call per turn; every retrieval type reuses the result."""
    vector = embedder.embed([text])[0]
    return QueryFeatures(text=text, vector=vector, tokens=tuple(tokenize(text)))
