"""Score fusion, grouping, the embedding reranker and the canonical intent merge."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from processors.embedding import Vectors, normalize_rows
from processors.retrieval.fusion import Candidate, FusionMethod, HybridParams, fuse
from processors.retrieval.intent import canonical_intent, merge_intent
from processors.retrieval.model import Retrieved
from processors.retrieval.rerank import EmbeddingReranker, split_sentences
from schemas.pack import AgentPack
from sinks.pack_files import load_pack

EXAMPLE_PACK = "packs/acme-shop/support"


def cand(
    point: str,
    vector: float,
    lexical: float = 0.0,
    rank: int | None = None,
    group: str | None = None,
) -> Candidate:
    return Candidate(group or point, point, point, {}, vector, lexical, rank)


def test_weighted_fusion() -> None:
    fused = fuse([cand("a", 0.5, 1.0, 1), cand("b", 0.6), cand("c", 0.4, 0.5, 2)], HybridParams())
    # a: 0.7*0.5 + 0.3*1.0 = 0.65; b: 0.42; c: 0.28 + 0.15 = 0.43
    assert [(c.object_id, round(c.score, 6)) for c in fused] == [
        ("a", 0.65),
        ("c", 0.43),
        ("b", 0.42),
    ]


def test_weights_are_divided_by_their_sum() -> None:
    fused = fuse([cand("a", 0.5, 1.0, 1)], HybridParams(vector_weight=2.0, lexical_weight=2.0))
    assert fused[0].score == pytest.approx(0.75)


def test_rrf_fusion_is_normalised_to_one() -> None:
    params = HybridParams(fusion=FusionMethod.RRF, rrf_k=60)
    fused = fuse([cand("a", 0.9, 0.8, 1), cand("b", 0.5, 0.9, 2), cand("c", 0.7)], params)
    top = 0.7 / 61 + 0.3 / 61
    scores = {c.object_id: c.score for c in fused}
    assert scores["a"] == pytest.approx(1.0)
    assert scores["b"] == pytest.approx((0.7 / 63 + 0.3 / 62) / top)
    assert scores["c"] == pytest.approx((0.7 / 62) / top)
    assert [c.object_id for c in fused] == ["a", "b", "c"]


def test_grouped_points_keep_the_best_point_per_object() -> None:
    fused = fuse(
        [
            cand("refund#1", 0.4, group="refund"),
            cand("refund#2", 0.8, group="refund"),
            cand("cancel#1", 0.6, group="cancel"),
        ],
        HybridParams(),
    )
    assert [(c.object_id, c.point_id) for c in fused] == [
        ("refund", "refund#2"),
        ("cancel", "cancel#1"),
    ]


def test_rerank_score_replaces_the_vector_component() -> None:
    c = Candidate("a", "a", "a", {}, 0.2, 0.5, 1, rerank_score=0.9)
    assert fuse([c], HybridParams())[0].score == pytest.approx(0.7 * 0.9 + 0.3 * 0.5)


def test_hybrid_params_are_validated() -> None:
    with pytest.raises(ValueError):
        HybridParams(vector_weight=0.0, lexical_weight=0.0)
    with pytest.raises(ValueError):
        HybridParams(candidates=0)


class TableEmbedder:
    """Vectors from a fixed table: makes the reranker's arithmetic checkable by hand."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self._table = table

    @property
    def dim(self) -> int:
        return 2

    @property
    def model_id(self) -> str:
        return "table"

    def embed(self, texts: Sequence[str]) -> Vectors:
        return normalize_rows([self._table[t] for t in texts])


def test_split_sentences() -> None:
    assert split_sentences("Hi. I moved!\nNew address?  ok") == [
        "Hi.",
        "I moved!",
        "New address?",
        "ok",
    ]
    assert split_sentences("one sentence") == ["one sentence"]


def test_embedding_reranker_lifts_a_locally_matching_candidate() -> None:
    query = "Hi. Ship it."
    emb = TableEmbedder(
        {
            query: [1.0, 1.0],
            "Hi.": [1.0, 0.0],
            "Ship it.": [0.0, 1.0],
            "shipping": [0.0, 1.0],
            "other": [1.0, -1.0],
        }
    )
    scores = EmbeddingReranker(emb).score(query, ["shipping", "other"])
    half = float(np.sqrt(0.5))
    # shipping: cos(full) = 0.707, best pair ("Ship it.", "shipping") = 1.
    assert scores[0] == pytest.approx((half + 1.0) / 2)
    # other: cos(full) = 0, best pair ("Hi.", "other") = 0.707.
    assert scores[1] == pytest.approx(half / 2)
    assert EmbeddingReranker(emb).score(query, []) == []


def test_embedding_reranker_equals_cosine_on_single_sentences() -> None:
    emb = TableEmbedder({"q": [1.0, 0.0], "t": [0.6, 0.8]})
    assert EmbeddingReranker(emb).score("q", ["t"]) == [pytest.approx(0.6)]


def intent(label: str, score: float) -> Retrieved:
    return Retrieved(label, score, score, 0.0, label, {})


def test_merge_intent_agreement_is_noisy_or() -> None:
    label, conf, source = merge_intent(
        "refund", 0.6, [intent("refund", 0.5), intent("cancel", 0.4)]
    )
    assert (label, source) == ("refund", "agreed")
    assert conf == pytest.approx(1 - 0.4 * 0.5)


def test_merge_intent_strongest_evidence_wins() -> None:
    assert merge_intent("refund", 0.3, [intent("cancel", 0.7)]) == ("cancel", 0.7, "retrieval")
    assert merge_intent("refund", 0.8, [intent("cancel", 0.7)]) == ("refund", 0.8, "sensor")
    # A sensor label retrieved lower down still gets the retrieval evidence for it.
    label, conf, source = merge_intent(
        "refund", 0.5, [intent("cancel", 0.7), intent("refund", 0.5)]
    )
    assert (label, source) == ("refund", "agreed")
    assert conf == pytest.approx(0.75)


def test_merge_intent_ties_and_edges() -> None:
    assert merge_intent("refund", 0.7, [intent("cancel", 0.7)]) == ("refund", 0.7, "sensor")
    assert merge_intent(None, 0.9, [intent("cancel", 0.4)]) == ("cancel", 0.4, "retrieval")
    assert merge_intent(None, 0.0, []) == (None, 0.0, "none")
    assert merge_intent("refund", 1.7, []) == ("refund", 1.0, "sensor")
    assert merge_intent(None, 0.0, [intent("cancel", -0.2)]) == ("cancel", 0.0, "retrieval")


def test_pooling_scores_an_object_by_its_best_points() -> None:
    points = [
        cand("refund#1", 0.8, group="refund"),
        cand("refund#2", 0.2, group="refund"),
        cand("refund#3", 0.1, group="refund"),
        cand("cancel#1", 0.6, group="cancel"),
        cand("cancel#2", 0.5, group="cancel"),
        cand("status#1", 0.45, group="status"),
    ]
    best = fuse(points, HybridParams())
    assert [c.object_id for c in best] == ["refund", "cancel", "status"]
    pooled = fuse(points, HybridParams(), pool_top_n=2)
    # refund 0.7 * (0.8 + 0.2) / 2 = 0.35; cancel 0.7 * 0.55 = 0.385; status (one point) 0.315.
    assert [(c.object_id, round(c.score, 6)) for c in pooled] == [
        ("cancel", 0.385),
        ("refund", 0.35),
        ("status", 0.315),
    ]
    # The object keeps its best point for the audit trail.
    assert pooled[1].point_id == "refund#1" and pooled[1].vector_score == 0.8
    with pytest.raises(ValueError, match="pool_top_n"):
        fuse(points, HybridParams(), pool_top_n=0)


@pytest.fixture(scope="module")
def example_pack() -> AgentPack:
    return load_pack(EXAMPLE_PACK)


def test_canonical_intent_retrieval_leads_by_default(example_pack: AgentPack) -> None:
    # "Cancel my order" is an example phrase of cancel_order: the sensor's Dice score is 1.0.
    message = "Cancel my order"
    agreed = [intent("cancel_order", 0.6), intent("order_status", 0.5)]
    assert canonical_intent(message, example_pack, agreed) == ("cancel_order", 0.6, "agreed")
    other = [intent("order_status", 0.6), intent("cancel_order", 0.5)]
    assert canonical_intent(message, example_pack, other) == ("order_status", 0.6, "retrieval")
    # Weighted in, the sensor's evidence is merged by noisy-OR.
    label, conf, source = canonical_intent(message, example_pack, other, sensor_weight=0.5)
    assert (label, source) == ("cancel_order", "agreed")
    assert conf == pytest.approx(1 - 0.5 * 0.5)


def test_canonical_intent_falls_back_on_the_sensor(example_pack: AgentPack) -> None:
    assert canonical_intent("Cancel my order", example_pack, []) == (
        "cancel_order",
        1.0,
        "sensor",
    )
    nonsense = "zzz qqq"
    assert canonical_intent(nonsense, example_pack, []) == (None, 0.0, "none")
    assert canonical_intent(nonsense, example_pack, [intent("greeting", 0.5)]) == (
        "greeting",
        0.5,
        "retrieval",
    )
    with pytest.raises(ValueError, match="sensor_weight"):
        canonical_intent(nonsense, example_pack, [], sensor_weight=1.5)
