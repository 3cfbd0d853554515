"""What the in-process turn's per-pack caches and faster loops (issue 19 item 3) must keep:
the same answers as the plain code, and a new pack (or new customer data) is never answered
from what was remembered for the old one. Unit tests of single modules, no I/O."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from processors.intents import classify_intent
from processors.phases.lexicon import affirmation
from processors.phases.sensor import mask_customer_data
from processors.phases.tools import PackToolExecutor
from processors.retrieval.bm25 import BM25Index
from processors.retrieval.fusion import Candidate, FusionMethod, HybridParams, fuse
from processors.retrieval.lexical import tokenize
from processors.retrieval.model import StoredDoc
from processors.retrieval.query_wording import Vocabulary
from processors.turn.deps import TurnDeps
from schemas.domain.customer_data import CustomerDataStore
from schemas.pack.agent_pack import AgentPack
from schemas.settings import Settings
from sinks.pack_files import load_pack
from sinks.python_tools import PythonToolExecutor

EXAMPLE_PACK = "packs/acme-shop/support"
PACK = load_pack(EXAMPLE_PACK)


def _reference_fuse(
    candidates: Sequence[Candidate], params: HybridParams, pool_top_n: int
) -> list[Candidate]:
    """``fuse`` as it was written before (one ``replace`` per point), for comparison."""
    if params.fusion is FusionMethod.RRF:
        by_semantic = sorted(candidates, key=lambda c: (-c.semantic_score, c.point_id))
        rank = {c.point_id: i for i, c in enumerate(by_semantic, start=1)}
        ceiling = (params.vector_weight + params.lexical_weight) / (params.rrf_k + 1)
        scored = []
        for c in candidates:
            total = params.vector_weight / (params.rrf_k + rank[c.point_id])
            if c.lexical_rank is not None:
                total += params.lexical_weight / (params.rrf_k + c.lexical_rank)
            scored.append(replace(c, score=total / ceiling))
    else:
        scored = [
            replace(
                c,
                score=(
                    params.vector_weight * c.semantic_score
                    + params.lexical_weight * c.lexical_score
                )
                / (params.vector_weight + params.lexical_weight),
            )
            for c in candidates
        ]
    by_object: dict[str, list[Candidate]] = {}
    for c in scored:
        by_object.setdefault(c.object_id, []).append(c)
    pooled = []
    for points in by_object.values():
        points.sort(key=lambda c: (-c.score, c.point_id))
        top = points[:pool_top_n]
        score = top[0].score if len(top) == 1 else sum(c.score for c in top) / len(top)
        pooled.append(replace(top[0], score=score))
    return sorted(pooled, key=lambda c: (-c.score, c.object_id))


def test_fuse_gives_what_one_replace_per_point_gave_ties_pooling_and_rrf_included() -> None:
    rng = random.Random(7)
    for trial in range(300):
        n = rng.randint(1, 40)
        candidates = [
            Candidate(
                object_id=f"o{rng.randint(0, 8)}",
                point_id=f"p{i}",
                text=f"t{i}",
                payload={},
                vector_score=rng.choice((0.5, 0.25, rng.random())),  # ties on purpose
                lexical_score=rng.choice((0.0, 1.0, rng.random())),
                lexical_rank=rng.choice((None, rng.randint(1, 20))),
                rerank_score=rng.choice((None, None, rng.random())),
            )
            for i in range(n)
        ]
        params = HybridParams(
            fusion=FusionMethod.RRF if trial % 3 == 0 else FusionMethod.WEIGHTED,
            vector_weight=rng.choice((0.7, 0.35, 1.0)),
            lexical_weight=rng.choice((0.3, 0.65, 0.0)),
        )
        pool = rng.randint(1, 4)
        assert fuse(candidates, params, pool) == _reference_fuse(candidates, params, pool)


def test_bm25_scores_are_the_textbook_formula_to_the_bit() -> None:
    texts = [
        "refund my order please",
        "where is my order, the order is late",
        "cancel the order before it ships",
        "refund refund refund",
        "change my delivery address",
    ]
    docs = [StoredDoc(f"d{i}", f"d{i}", t) for i, t in enumerate(texts)]
    index = BM25Index(docs)
    tokens = [tokenize(t) for t in texts]
    n, avgdl, k1, b = len(docs), sum(map(len, tokens)) / len(docs), 1.2, 0.75
    for query in ("refund order", "order late order", "address", "refnd my ordr"):
        hits = {h.doc.object_id: h.score for h in index.search(tokenize(query), 10)}
        expected: dict[str, float] = {}
        weighted: dict[str, float] = {}
        for token in dict.fromkeys(tokenize(query)):
            if token in index._postings:
                weighted[token] = max(weighted.get(token, 0.0), 1.0)
            elif (match := index.closest(token)) is not None:
                weighted[match[0]] = max(weighted.get(match[0], 0.0), match[1])
        for term, weight in weighted.items():
            df = sum(term in t for t in tokens)
            idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
            for i, doc_tokens in enumerate(tokens):
                tf = doc_tokens.count(term)
                if tf:
                    norm_len = 1.0 - b + b * len(doc_tokens) / avgdl
                    gain = weight * idf * tf * (k1 + 1.0) / (tf + k1 * norm_len)
                    expected[f"d{i}"] = expected.get(f"d{i}", 0.0) + gain
        assert hits == expected, query


def test_a_new_intent_list_is_classified_on_its_own_examples() -> None:
    text = "I want my money back for the tent"
    before = classify_intent(text, PACK.intents)
    assert before is not None and before.label == "refund_request"
    assert classify_intent(text, PACK.intents) == before  # remembered: the same answer
    renamed = [
        i.model_copy(update={"examples": ["money back for the tent please"]})
        if i.id == "order_status"
        else i.model_copy(update={"examples": ["zzz"]})
        for i in PACK.intents
    ]
    after = classify_intent(text, renamed)
    assert after is not None and after.label == "order_status"


def test_the_mask_says_which_fields_this_customer_has() -> None:
    fields = PACK.fields
    key = fields[0].key
    empty = mask_customer_data(fields, None)
    assert not empty.exists(key)
    # the mask reads only which keys the store has
    store = CustomerDataStore.model_construct(variables={key: None})  # type: ignore[call-arg,dict-item]
    assert mask_customer_data(fields, store).exists(key)
    assert not mask_customer_data(fields, None).exists(key)
    other = [f.model_copy(update={"key": f"{f.key}_x"}) for f in fields]
    assert [f.key for f in mask_customer_data(other, store).fields] == [f.key for f in other]


def test_affirmation_reads_a_pack_phrase_the_same_every_time() -> None:
    for _ in range(2):
        assert affirmation("yes please") is True
        assert affirmation("no thanks") is False
        assert affirmation("sure, go ahead", extra_affirm=["go ahead"]) is True
        assert affirmation("the weather") is None


def test_a_new_pack_version_gets_its_own_settings() -> None:
    deps = TurnDeps(
        embedder=None,  # type: ignore[arg-type]
        vectors=None,  # type: ignore[arg-type]
        lexicon=None,  # type: ignore[arg-type]
        tools=lambda _pack: PackToolExecutor(PythonToolExecutor(Path("."))),
        settings=Settings(),
    )
    first = deps.settings_for(PACK).phases.retrieval.timeout_s
    assert deps.settings_for(PACK).phases.retrieval.timeout_s == first
    phases = PACK.agent.phases.model_copy(
        update={"retrieval": PACK.agent.phases.retrieval.model_copy(update={"timeout_s": 7.5})}
    )
    agent = PACK.agent.model_validate(
        PACK.agent.model_dump(mode="json") | {"phases": phases.model_dump(mode="json")}
    )
    newer: AgentPack = PACK.model_copy(update={"agent": agent})
    assert deps.settings_for(newer).phases.retrieval.timeout_s == 7.5
    assert deps.settings_for(PACK).phases.retrieval.timeout_s == first


def test_vocabulary_remembers_a_correction_and_the_lack_of_one() -> None:
    vocabulary = Vocabulary({"package": 3, "complaint": 2})
    for _ in range(2):
        assert vocabulary.closest("pacakge") == "package"
        assert vocabulary.closest("complant") == "complaint"
        assert vocabulary.closest("zebras") is None


def test_snapshot_order_is_the_brute_force_order() -> None:
    from processors.retrieval.model import Scope, VectorHit
    from processors.retrieval.snapshot_index import SnapshotIndex
    from schemas.domain.retrieval import RetrievalType

    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((40, 8)).astype(np.float32)
    matrix[5] = matrix[9]  # a tie
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    hits = [VectorHit(f"o{i}", f"o{i}", "", 0.0, {}) for i in range(40)]

    class Source:
        def points(self, scope: Scope) -> tuple[list[VectorHit], np.ndarray]:
            return hits, matrix

    index = SnapshotIndex(Source())  # type: ignore[arg-type]
    scope = Scope("t", "a", RetrievalType.RULES)
    query = matrix[9] + 0.01
    scores = matrix @ query.astype(np.float32)
    for limit in (1, 7, 39, 40, 100):
        found = index.search(scope, query, limit)
        assert len(found) == min(limit, 40)
        assert [h.score for h in found] == sorted(scores.tolist(), reverse=True)[: len(found)]
        assert {h.object_id for h in found} <= {h.object_id for h in hits}
    looked_up = index.lookup(scope, query, ["o3", "nope", "o9"])
    assert [(h.object_id, h.score) for h in looked_up] == [
        ("o3", float(matrix[3] @ query.astype(np.float32))),
        ("o9", float(matrix[9] @ query.astype(np.float32))),
    ]
