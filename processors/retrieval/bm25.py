"""BM25 over one scope's points, and a registry that keeps one index per scope in memory.

The index is immutable: a change to a scope's points builds a new one (pack-sized scopes
build in milliseconds), so searches never see a half-updated index and need no lock.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from processors.retrieval.lexical import tokenize
from processors.retrieval.model import Scope, StoredDoc


@dataclass(frozen=True)
class LexicalHit:
    """``score`` is raw BM25; ``normalized`` divides it by the summed idf of all the query's
    terms, unknown ones counted at the idf of a term no document has (1.0 = every query term
    once, in a document of average length), clipped to [0, 1]: the idf-weighted share of the
    query a document covers, on a scale that fuses with cosine. Counting unknown terms keeps
    one matched common word of a long message from looking like a perfect match."""

    doc: StoredDoc
    score: float
    normalized: float


class BM25Index:
    """Okapi BM25 with the non-negative (Lucene) idf ``ln(1 + (N - df + 0.5) / (df + 0.5))``."""

    def __init__(self, docs: Sequence[StoredDoc], k1: float = 1.2, b: float = 0.75) -> None:
        self.docs = tuple(docs)
        self._k1 = k1
        self._b = b
        self._postings: dict[str, list[tuple[int, int]]] = {}
        self._lengths: list[int] = []
        for i, doc in enumerate(self.docs):
            counts = Counter(tokenize(doc.text))
            self._lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self._postings.setdefault(term, []).append((i, tf))
        n = len(self.docs)
        self._avgdl = (sum(self._lengths) / n) if n else 0.0
        self._idf = {
            term: math.log(1.0 + (n - len(p) + 0.5) / (len(p) + 0.5))
            for term, p in self._postings.items()
        }

    @property
    def _unseen_idf(self) -> float:
        n = len(self.docs)
        return math.log(1.0 + (n + 0.5) / 0.5)

    def __len__(self) -> int:
        return len(self.docs)

    def idf(self, term: str) -> float:
        return self._idf.get(term, 0.0)

    def search(self, query_tokens: Sequence[str], limit: int) -> list[LexicalHit]:
        """Top ``limit`` documents with a positive score, best first (ties by object id)."""
        unique = list(dict.fromkeys(query_tokens))
        terms = [t for t in unique if t in self._postings]
        if not terms or limit <= 0:
            return []
        scores: dict[int, float] = {}
        for term in terms:
            idf = self._idf[term]
            for i, tf in self._postings[term]:
                norm_len = 1.0 - self._b + self._b * self._lengths[i] / self._avgdl
                gain = idf * tf * (self._k1 + 1.0) / (tf + self._k1 * norm_len)
                scores[i] = scores.get(i, 0.0) + gain
        ceiling = sum(self._idf.get(t, self._unseen_idf) for t in unique)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], self.docs[kv[0]].object_id))
        return [
            LexicalHit(self.docs[i], s, min(1.0, s / ceiling)) for i, s in ranked[:limit] if s > 0
        ]


class LexicalIndexes:
    """One BM25 index per scope, built on first use from the store's texts and replaced when
    the local indexer changes the scope. Bounded (LRU) because memories have one scope per
    customer.

    Another process that re-indexes a scope (server mode, several workers) is not seen here:
    call :meth:`invalidate` when a new pack version is published.
    """

    def __init__(
        self, load: Callable[[Scope], Sequence[StoredDoc]], max_scopes: int = 4096
    ) -> None:
        self._load = load
        self._max = max_scopes
        self._indexes: OrderedDict[Scope, BM25Index] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, scope: Scope) -> BM25Index:
        with self._lock:
            index = self._indexes.get(scope)
            if index is not None:
                self._indexes.move_to_end(scope)
                return index
        index = BM25Index(self._load(scope))
        self.put(scope, index)
        return index

    def put(self, scope: Scope, index: BM25Index) -> None:
        with self._lock:
            self._indexes[scope] = index
            self._indexes.move_to_end(scope)
            while len(self._indexes) > self._max:
                self._indexes.popitem(last=False)

    def invalidate(self, scope: Scope | None = None) -> None:
        """Forget one scope (or all): the next search rebuilds it from the store."""
        with self._lock:
            if scope is None:
                self._indexes.clear()
            else:
                self._indexes.pop(scope, None)
