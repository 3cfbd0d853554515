"""The memory sink's writer (sinks.memory_ingestion.MemoryWriter) with a fake model and store.

A batch is embedded 16 texts per model call, every call on the model thread (the ``run``
it is given), then indexed once per customer scope; a turn replayed within a batch is
indexed once, and a turn without an answer leaves no memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from processors.retrieval.model import IndexItem, Scope
from schemas.codec import encode
from schemas.events.completed_turn import CompletedTurn
from sinks.memory_ingestion import EMBED_CHUNK, MemoryWriter
from tests.test_analytics_helpers import make_turn


class FakeEmbedder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[0.0] for _ in texts]


class FakeIndexer:
    def __init__(self) -> None:
        self.added: list[tuple[Scope, list[IndexItem]]] = []

    def add(self, scope: Scope, items: list[IndexItem]) -> None:
        self.added.append((scope, items))


class ModelThread:
    """Records which calls went through ``run`` (the worker's model thread)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls.append(fn.__name__)
        return fn(*args)


def unanswered(turn: CompletedTurn) -> CompletedTurn:
    record = turn.record
    context = record.context.model_copy(update={"response_text": None})
    return turn.model_copy(update={"record": record.model_copy(update={"context": context})})


async def test_a_batch_is_embedded_16_texts_per_model_call_and_indexed_once_per_scope() -> None:
    embedder, indexer, thread = FakeEmbedder(), FakeIndexer(), ModelThread()
    writer = MemoryWriter(indexer, embedder, thread)  # type: ignore[arg-type]
    turns = [make_turn(f"t{i}", session=f"s{i % 3}") for i in range(40)]
    values = [encode(t) for t in [*turns, turns[5], unanswered(make_turn("quiet"))]]
    items = [writer.decode("turn.completed", value) for value in values]
    assert items[-1] is None  # no answer, no memory
    await writer.write([item for item in items if item is not None], [])

    assert [len(call) for call in embedder.calls] == [
        EMBED_CHUNK,
        EMBED_CHUNK,
        40 - 2 * EMBED_CHUNK,
    ]
    assert thread.calls == ["embed"] * 3 + ["add"] * 3
    by_scope = {scope.customer_id: [i.object_id for i in added] for scope, added in indexer.added}
    assert by_scope == {f"c-s{k}": [f"t{i}" for i in range(40) if i % 3 == k] for k in range(3)}
    assert writer.indexed == 40
