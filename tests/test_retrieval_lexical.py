"""Tokenisation, stemming and BM25 ranking."""

from __future__ import annotations

import math

import pytest

from processors.retrieval.bm25 import BM25Index, LexicalIndexes
from processors.retrieval.lexical import edit_distance, stem, tokenize
from processors.retrieval.model import Scope, StoredDoc
from schemas.domain.retrieval import RetrievalType


@pytest.mark.parametrize(
    ("words", "shared"),
    [
        (["refund", "refunds", "refunded", "refunding"], "refund"),
        (["cancel", "cancelled", "cancellation", "cancellations"], "cancel"),
        (["bill", "billed", "bills", "billing"], "bil"),
        (["company", "companies"], "company"),
        (["address", "addresses"], "address"),
        (["payment", "payments"], "pay"),
        (["stop", "stopped"], "stop"),
    ],
)
def test_stem_merges_inflections(words: list[str], shared: str) -> None:
    assert {stem(w) for w in words} == {shared}


def test_stem_keeps_short_and_latin_words() -> None:
    assert [stem(w) for w in ["bus", "status", "analysis", "need", "thing"]] == [
        "bus",
        "status",
        "analysis",
        "need",
        "thing",
    ]


def test_tokenize() -> None:
    assert tokenize("I don't want the customer's REFUNDS!") == ["want", "customer", "refund"]
    assert tokenize("Über-Größe, naïve café; order_id 42") == [
        "über",
        "grösse",
        "naïve",
        "café",
        "order",
        "id",
        "42",
    ]
    assert tokenize("the and of") == []


def docs(*texts: str) -> list[StoredDoc]:
    return [StoredDoc(f"d{i}", f"d{i}", t) for i, t in enumerate(texts)]


def test_bm25_ranks_matching_documents_first() -> None:
    index = BM25Index(
        docs(
            "customer asks for a refund of an order",
            "customer wants to cancel the subscription",
            "customer asks about delivery of an order",
            "customer is angry",
        )
    )
    hits = index.search(tokenize("refund my order please"), limit=10)
    assert [h.doc.object_id for h in hits] == ["d0", "d2"]
    assert hits[0].score > hits[1].score > 0
    assert index.search(tokenize("weather forecast"), limit=10) == []
    assert index.search(tokenize("refund"), limit=0) == []


def test_bm25_rare_terms_weigh_more_and_long_documents_less() -> None:
    index = BM25Index(
        docs(
            "order refund",
            "order status",
            "order history",
            "order refund refund policy terms conditions apply here always",
        )
    )
    assert index.idf("refund") > index.idf("order") > 0
    hits = index.search(["refund"], limit=10)
    assert [h.doc.object_id for h in hits] == ["d0", "d3"]


def test_bm25_normalized_score_is_idf_weighted_query_coverage() -> None:
    # Equal lengths -> every document has the average length, so one occurrence of a term
    # scores exactly its idf and the full query normalises to 1.
    index = BM25Index(docs("alpha beta", "gamma delta", "alpha delta"))
    full = index.search(["alpha", "beta"], limit=1)[0]
    assert full.doc.object_id == "d0"
    assert full.normalized == pytest.approx(1.0)
    assert full.score == pytest.approx(index.idf("alpha") + index.idf("beta"))
    # An unknown query term counts at the idf of a term no document has.
    unseen = math.log(1 + 3.5 / 0.5)
    partial = index.search(["alpha", "beta", "zzz"], limit=1)[0]
    expected = (index.idf("alpha") + index.idf("beta")) / (
        index.idf("alpha") + index.idf("beta") + unseen
    )
    assert partial.normalized == pytest.approx(expected)


def test_lexical_indexes_load_lazily_and_invalidate() -> None:
    calls: list[Scope] = []

    def load(scope: Scope) -> list[StoredDoc]:
        calls.append(scope)
        return docs("refund order")

    lexicon = LexicalIndexes(load, max_scopes=2)
    scopes = [Scope(f"t{i}", "a", RetrievalType.RULES) for i in range(3)]
    first = lexicon.get(scopes[0])
    assert lexicon.get(scopes[0]) is first
    assert len(calls) == 1
    lexicon.invalidate(scopes[0])
    assert lexicon.get(scopes[0]) is not first
    lexicon.get(scopes[1])
    lexicon.get(scopes[2])  # evicts scopes[0], the least recently used
    lexicon.get(scopes[0])
    assert calls == [scopes[0], scopes[0], scopes[1], scopes[2], scopes[0]]


@pytest.mark.parametrize(
    ("a", "b", "edits"),
    [
        ("refnd", "refund", 1),
        ("cancle", "cancel", 1),
        ("pacakge", "package", 1),
        ("return", "return", 0),
        ("receipt", "receiv", 2),
        ("express", "address", 3),
    ],
)
def test_edit_distance_counts_swaps_as_one_edit(a: str, b: str, edits: int) -> None:
    assert edit_distance(a, b, limit=3) == edits


def test_edit_distance_stops_at_its_limit() -> None:
    assert edit_distance("company", "compens", limit=1) == 2


def test_a_misspelt_query_token_matches_its_indexed_neighbour() -> None:
    index = BM25Index(docs("I want a refund", "cancel my order", "change my address"))
    assert index.closest("refnd") == ("refund", pytest.approx(1 - 1 / 6))
    assert index.closest("cancle") == ("cancel", pytest.approx(1 - 1 / 6))
    hits = index.search(tokenize("refnd pls"), limit=3)
    assert [h.doc.object_id for h in hits] == ["d0"]
    exact = index.search(tokenize("refund"), limit=1)[0]
    assert 0 < hits[0].normalized < exact.normalized  # a typo counts, less than the word


def test_real_words_the_pack_lacks_and_short_tokens_stay_unknown() -> None:
    index = BM25Index(docs("change my address", "the hose is broken", "send it back"))
    assert index.closest("express") is None  # another first letter
    assert index.closest("home") is None  # too short to tell from "hose"
    assert index.closest("address") is None  # indexed: never rewritten
    assert index.search(tokenize("express company"), limit=3) == []
