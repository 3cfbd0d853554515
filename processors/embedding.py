"""The embedding port: processors see texts in, unit vectors out, and nothing of the model.

Vectors are L2-normalised so that cosine similarity is a plain dot product everywhere
(Qdrant, BM25 fusion, rerank). The model adapter lives in ``sinks.embedder``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
"""A 2-D float32 array: one L2-normalised row per text."""
Vector = npt.NDArray[np.float32]
"""A 1-D float32 unit vector (one row of :data:`Vectors`)."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors of a fixed dimension."""

    @property
    def dim(self) -> int: ...

    @property
    def model_id(self) -> str:
        """Names the model, so that stored vectors from another model count as stale."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


class QueryEmbedder(Protocol):
    """The embedder P4.1 awaits: in a worker the micro-batcher (concurrent turns share one
    model call off the event loop), in one process :class:`InlineEmbedder`."""

    async def embed(self, texts: Sequence[str]) -> Vectors: ...


class InlineEmbedder:
    """Any :class:`Embedder` as a :class:`QueryEmbedder`: embeds on the caller's thread."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner

    async def embed(self, texts: Sequence[str]) -> Vectors:
        return self._inner.embed(texts)


def normalize_rows(vectors: npt.ArrayLike) -> Vectors:
    """Scale each row to unit length (zero rows stay zero) so cosine = dot."""
    arr = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    out: Vectors = np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)
    return out


class CachedEmbedder:
    """An LRU cache in front of any embedder: a turn's query and rerank sentences, and texts
    re-sent by a pack reload, are encoded once; misses of one call go to the model as one batch.

    Lookup and encode share one lock, so concurrent callers missing the same text (the four
    retrieval types reranking one query) encode it once; the model serialises encodes anyway.
    """

    def __init__(self, inner: Embedder, maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._inner = inner
        self._maxsize = maxsize
        self._cache: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                row = self._cache.get(text)
                if row is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = row
            if missing:
                fresh = self._inner.embed(list(missing))
                for (text, positions), row in zip(missing.items(), fresh, strict=True):
                    out[positions] = row
                    self._cache[text] = row.copy()
                while len(self._cache) > self._maxsize:
                    self._cache.popitem(last=False)
        return out
