"""BM25 over one scope's points, and a registry that keeps one index per scope in memory.

The index is immutable: a change to a scope's points builds a new one (pack-sized scopes
build in milliseconds), so searches never see a half-updated index and need no lock.

**Misspelt query tokens.** A query token of :data:`FUZZY_MIN_LENGTH` letters or more that no
document has is read as the indexed token it is one edit from (two from
:data:`FUZZY_LONG_TOKEN` letters on), with the same first letter
(:func:`~processors.retrieval.lexical.edit_distance`; ties to fewer edits, then to a token
that extends it or that it extends ("chang" of "changed" -> "change"), then the rarer token,
then alphabetically): it scores that token's BM25 gain times ``1 - edits / length``
and counts at that token's idf in the normalisation, so "refnd" covers about what "refund"
would. Exact tokens are never rewritten, and a token with no such neighbour still counts as
unknown.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from processors.retrieval.lexical import edit_distance, letter_pairs, tokenize
from processors.retrieval.model import Scope, StoredDoc

FUZZY_MIN_LENGTH = 5
"""Shorter tokens are too short to tell a typo from another word ("home" / "hose", "bank" /
"back": measured on the example pack's vocabulary)."""
FUZZY_LONG_TOKEN = 8
"""From this length on, two edits are allowed."""


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
        self._by_pair: dict[str, list[str]] = {}
        for term in self._postings:
            for pair in letter_pairs(term):
                self._by_pair.setdefault(pair, []).append(term)
        self._closest: dict[str, tuple[str, float] | None] = {}
        """Memo of :meth:`closest` (the index never changes; racing threads write the same)."""
        self._unseen_idf = math.log(1.0 + (n + 0.5) / 0.5)
        self._gains: dict[str, list[tuple[int, int, float]]] = {
            term: [(i, tf, tf + k1 * (1.0 - b + b * self._lengths[i] / self._avgdl)) for i, tf in p]
            for term, p in self._postings.items()
        }
        """Per term, each posting's document, term frequency and BM25 denominator
        ``tf + k1 * (1 - b + b * length / avgdl)``: what a search needs of the document,
        computed once per index rather than per query."""

    def __len__(self) -> int:
        return len(self.docs)

    def idf(self, term: str) -> float:
        return self._idf.get(term, 0.0)

    def closest(self, token: str) -> tuple[str, float] | None:
        """The indexed token a misspelt ``token`` stands for, and the weight its match gets
        (module docstring); None for an indexed or short token, or one with no neighbour."""
        if token in self._postings or len(token) < FUZZY_MIN_LENGTH:
            return None
        if token in self._closest:
            return self._closest[token]
        limit = 1 if len(token) < FUZZY_LONG_TOKEN else 2
        candidates = {
            term
            for pair in letter_pairs(token)
            for term in self._by_pair.get(pair, ())
            if term[0] == token[0] and abs(len(term) - len(token)) <= limit
        }
        best: tuple[int, bool, float, str] | None = None
        for term in candidates:
            edits = edit_distance(token, term, limit)
            if edits <= limit:
                inflection = term.startswith(token) or token.startswith(term)
                key = (edits, not inflection, -self._idf[term], term)
                best = key if best is None or key < best else best
        found = None
        if best is not None:
            found = (best[3], 1.0 - best[0] / max(len(token), len(best[3])))
        if len(self._closest) < 10_000:
            self._closest[token] = found
        return found

    def search(self, query_tokens: Sequence[str], limit: int) -> list[LexicalHit]:
        """Top ``limit`` documents with a positive score, best first (ties by object id)."""
        unique = list(dict.fromkeys(query_tokens))
        weighted: dict[str, float] = {}
        ceiling = 0.0
        for token in unique:
            if token in self._postings:
                weighted[token] = max(weighted.get(token, 0.0), 1.0)
                ceiling += self._idf[token]
                continue
            match = self.closest(token)
            if match is None:
                ceiling += self._unseen_idf
                continue
            term, similarity = match
            weighted[term] = max(weighted.get(term, 0.0), similarity)
            ceiling += self._idf[term]
        if not weighted or limit <= 0:
            return []
        scores: dict[int, float] = {}
        k1_plus_1 = self._k1 + 1.0
        for term, weight in weighted.items():
            weighted_idf = weight * self._idf[term]
            for i, tf, denominator in self._gains[term]:
                # the same operations in the same order as the textbook formula (bit-equal)
                gain = weighted_idf * tf * k1_plus_1 / denominator
                scores[i] = scores.get(i, 0.0) + gain
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
