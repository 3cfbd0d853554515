"""The default reranker: a second, finer look with the embedding model (no cross-encoder
weights ship offline; ``sinks.embedder.CrossEncoderReranker`` loads user-supplied ones).

``score = (cos(q, t) + max_{a in Q, b in T} cos(a, b)) / 2`` where ``Q`` holds the query and
its sentences, ``T`` the candidate and its sentences. One embedding of a long, multi-topic
situation dilutes each topic; the max-sim term lets one sentence that matches a candidate
well lift it. The score never falls below the cosine, and equals it when neither side has
more than one sentence, so it stays on the cosine scale and min_score keeps its meaning.
Sentence vectors go through the embedder's cache. It is not a cross-encoder: it adds no
query-document interaction, only locality.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from processors.embedding import Embedder

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences (and lines) of ``text``, stripped and non-empty."""
    return [p for p in (part.strip() for part in _SENTENCE_END.split(text)) if p]


class EmbeddingReranker:
    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        q_texts = [query, *split_sentences(query)]
        t_texts = [[text, *split_sentences(text)] for text in texts]
        vecs = self._embedder.embed([*q_texts, *(t for group in t_texts for t in group)])
        q_vecs = vecs[: len(q_texts)]
        offset = len(q_texts)
        out = []
        for group in t_texts:
            sims = q_vecs @ vecs[offset : offset + len(group)].T
            offset += len(group)
            out.append((float(sims[0, 0]) + float(np.max(sims))) / 2.0)
        return out
