"""The stage functions the topology runs, called directly: P4.1 builds one request per type,
the join records gaps, the embedding batcher shares model calls, a new case forgets the old
case's values."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from processors.embedding import Vectors, normalize_rows
from processors.phases.tools import PackToolExecutor
from processors.retrieval import LexicalIndexes
from processors.turn.decide import new_case
from processors.turn.deps import TurnDeps
from processors.turn.retrieval_stage import (
    MAX_TERM_CHARS,
    failed_result,
    join,
    request_retrieval,
    timeout_result,
)
from processors.turn.understand import Understanding
from schemas.domain.customer_data import (
    CustomerDataStore,
    VariableEntry,
    VariableScope,
    VariableSource,
    VariableType,
)
from schemas.domain.retrieval import GapReason, RetrievalSelection, RetrievalType, SelectionStrategy
from schemas.domain.turn_context import TurnContext
from schemas.events.retrieval import RetrievalRequested, RetrievalResult
from sinks.pack_files import load_pack
from sinks.python_tools import PythonToolExecutor
from sinks.vector_store import VectorStore
from streams.pipeline.embed_batcher import EmbedBatcher
from streams.settings import Settings
from tests.pipeline_support import EXAMPLE_PACK, customer_says

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PACK = load_pack(EXAMPLE_PACK)


def context() -> TurnContext:
    return TurnContext(input=customer_says("v1", "where is my order?"), received_at=NOW)


def request(rtype: RetrievalType) -> RetrievalRequested:
    return RetrievalRequested(
        turn_id="t1",
        session_key="acme-shop:webchat:v1",
        tenant_id="acme-shop",
        agent_id="support",
        retrieval_type=rtype,
        query_text="where is my order?",
        embedding=[0.0] * 4,
        deadline=NOW,
    )


def ok(rtype: RetrievalType, at: datetime) -> RetrievalResult:
    selection = RetrievalSelection(
        retrieval_type=rtype, strategy=SelectionStrategy.FIXED_K, latency_ms=1.0
    )
    return RetrievalResult(
        turn_id="t1", session_key="acme-shop:webchat:v1", selection=selection, completed_at=at
    )


def test_the_join_records_a_failed_type_a_late_type_and_a_missing_type_as_gaps() -> None:
    results = [
        ok(RetrievalType.RULES, NOW),
        failed_result(request(RetrievalType.SCENARIOS), "qdrant down", NOW),
        ok(RetrievalType.INTENTS, NOW + timedelta(seconds=2)),  # after the deadline
        timeout_result("t1", "acme-shop:webchat:v1", RetrievalType.RULES, NOW),  # a 2nd: ignored
    ]
    joined = join(context(), results, PACK, deadline=NOW + timedelta(seconds=1))
    gaps = {g.retrieval_type: g for g in joined.retrieval_gaps}
    assert [s.retrieval_type for s in joined.retrievals] == [RetrievalType.RULES]
    assert gaps[RetrievalType.SCENARIOS].reason is GapReason.FAILED
    assert gaps[RetrievalType.SCENARIOS].detail == "qdrant down"
    assert gaps[RetrievalType.INTENTS].reason is GapReason.TIMEOUT
    assert gaps[RetrievalType.MEMORIES].reason is GapReason.TIMEOUT


class CountingEmbedder:
    dim = 8
    model_id = "counting"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(len(texts))
        rows = [[float(len(t))] + [1.0] * (self.dim - 1) for t in texts]
        return normalize_rows(np.asarray(rows, dtype=np.float32))


async def test_concurrent_embeddings_share_model_calls_and_get_their_own_vectors() -> None:
    model = CountingEmbedder()
    gate = asyncio.Event()

    async def run(fn: Any, *args: Any) -> Vectors:
        await gate.wait()  # the first call is "busy" until all requests queued
        return await asyncio.to_thread(fn, *args)

    batcher = EmbedBatcher(model, run, max_batch=4)
    jobs = [asyncio.create_task(batcher.embed(["x" * n])) for n in range(1, 7)]
    await asyncio.sleep(0.01)
    gate.set()
    vectors = await asyncio.gather(*jobs)
    assert model.calls == [4, 2]  # six requests, two model calls, at most four texts each
    expected = [
        normalize_rows(np.asarray([[n] + [1.0] * 7], dtype=np.float32))[0] for n in range(1, 7)
    ]
    for got, want in zip(vectors, expected, strict=True):
        assert np.allclose(got[0], want)


def entry(scope: VariableScope, at: datetime) -> VariableEntry:
    return VariableEntry(
        value='"x"',
        type=VariableType.STRING,
        scope=scope,
        source=VariableSource.USER,
        confidence=1.0,
        last_updated_at=at,
    )


def test_a_new_case_forgets_old_case_values_but_keeps_what_was_just_said() -> None:
    store = CustomerDataStore(
        tenant_id="acme-shop",
        customer_id="c1",
        updated_at=NOW,
        variables={
            "refund_id": entry(VariableScope.CASE, NOW - timedelta(days=3)),
            "order_id": entry(VariableScope.CASE, NOW - timedelta(days=3)),
            "refund_reason": entry(VariableScope.CASE, NOW + timedelta(seconds=1)),
            "customer_tier": entry(VariableScope.BUSINESS, NOW - timedelta(days=3)),
        },
    )
    fresh = new_case(store, NOW, said_now={"order_id"})
    assert set(fresh.variables) == {"order_id", "refund_reason", "customer_tier"}
    assert new_case(fresh, NOW, said_now=set()) is not fresh


class AwaitedEmbedder:
    """A :class:`QueryEmbedder` that counts the texts it is awaited with."""

    def __init__(self) -> None:
        self.model = CountingEmbedder()
        self.texts: list[str] = []

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.texts.extend(texts)
        return self.model.embed(texts)


async def test_p41_embeds_the_query_once_and_asks_every_type_with_the_same_features() -> None:
    ticks = iter([10.0, 10.25])  # the timer around the embedding: 250 ms
    store = VectorStore.memory(CountingEmbedder.dim)
    deps = TurnDeps(
        embedder=CountingEmbedder(),
        vectors=store,
        lexicon=LexicalIndexes(store.documents),
        tools=lambda _pack: PackToolExecutor(PythonToolExecutor(Path("."))),
        settings=Settings(),
        clock=lambda: NOW,
        timer=lambda: next(ticks),
    )
    query = f"where is my order {'x' * 300}"
    understood = Understanding(context=context(), pack=PACK, query=query)
    embedder = AwaitedEmbedder()
    timed_context, requests = await request_retrieval("t1", "k", understood, embedder, deps)
    assert embedder.texts == [query]
    assert timed_context.timings_ms["retrieval.embedding"] == 250.0
    assert [r.retrieval_type for r in requests] == list(RetrievalType)
    timeout_s = deps.settings_for(PACK).phases.retrieval.timeout_s
    for r in requests:
        assert r.query_text == query
        assert r.embedding == requests[0].embedding and len(r.embedding) == CountingEmbedder.dim
        assert r.lexical_terms == ["order", "x" * MAX_TERM_CHARS]  # stopwords dropped, clipped
        assert r.deadline == NOW + timedelta(seconds=timeout_s)
        assert (r.turn_id, r.session_key, r.customer_id) == ("t1", "k", None)
    store.close()
