"""P11 memory ingestion: what an answered turn leaves behind for later retrieval.

A memory is one short text per turn, ``<intent>: <customer message> | agent: <first
sentence of the answer>``, in the customer's own memories scope (tenant, agent, customer):
retrieval of later turns finds it by meaning. Summarisation is this deliberately plain
heuristic (no model); an LLM summariser can replace :func:`memory_text`. The memory's id is
the turn id, so ingesting a turn twice rewrites the same point.

:class:`MemoryWriter` is the sink's writer for :class:`streams.sink_consumer.SinkConsumer`
(registered in ``streams.sink_catalog``): it embeds and indexes a batch of completed turns.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from processors.embedding import Embedder
from processors.retrieval import Indexer
from processors.retrieval.model import IndexItem, Scope
from schemas.codec import decode_as
from schemas.domain.retrieval import RetrievalType
from schemas.domain.turn_record import TurnRecord
from schemas.events.completed_turn import CompletedTurn
from schemas.events.dead_letter import DeadLetter

MAX_MEMORY_CHARS = 600
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def memory_text(record: TurnRecord) -> str | None:
    """The memory of a turn, or None for a turn without an answer."""
    context = record.context
    if context.response_text is None:
        return None
    said = " ".join(context.input.message.split())
    answer = _SENTENCE.split(context.response_text.strip(), maxsplit=1)[0]
    intent = context.canonical_intent or "no intent"
    return f"{intent}: {said} | agent: {answer}"[:MAX_MEMORY_CHARS]


def memory_item(record: TurnRecord) -> tuple[Scope, IndexItem] | None:
    """Where and what to index for ``record`` (None when there is nothing to remember)."""
    text = memory_text(record)
    if text is None:
        return None
    scope = Scope(record.tenant_id, record.agent_id, RetrievalType.MEMORIES, record.customer_id)
    payload = {"turn_id": record.turn_id, "session_id": record.session_id}
    return scope, IndexItem.of(record.turn_id, text, payload)


EMBED_CHUNK = 16
"""Texts per model call. The model thread is the turns' too, and a query embedding waits for
the call in progress: one call for a whole poll (up to 256 texts) held queries back. With 2
workers at 30 turns/s over 1,000 sessions (onnx-int8, one run each): ``retrieval.embedding``
p99 391 -> 203 ms, e2e p50 / p99 235 / 1,285 -> 106 / 583 ms. 16 texts keep most of the
batching gain and take ~10 ms (onnx-int8) to ~30 ms (torch)."""
RunInThread = Callable[..., Awaitable[Any]]
MemoryItem = tuple[Scope, IndexItem]


class MemoryWriter:
    """Completed turns -> memories; ``run`` runs a call on the model thread (the turns'
    thread too, hence the small chunks). Ids are turn ids, so a rewrite is idempotent."""

    def __init__(self, indexer: Indexer, embedder: Embedder, run: RunInThread) -> None:
        self._indexer = indexer
        self._embedder = embedder
        self._run = run
        self.indexed = 0

    async def open(self) -> None:
        """The vector store is the worker's, already open."""

    async def close(self) -> None:
        """The vector store is the worker's: it closes it."""

    def decode(self, topic: str, value: bytes) -> MemoryItem | None:
        return memory_item(decode_as(value, CompletedTurn).record)

    async def write(self, items: Sequence[MemoryItem], dead: Sequence[DeadLetter]) -> None:
        """Embed in chunks of :data:`EMBED_CHUNK` (the adds then hit the embedding cache),
        then index per scope. ``dead`` is empty: its registration sends dead letters to the
        dead-letter topic."""
        scoped: dict[Scope, dict[str, IndexItem]] = defaultdict(dict)
        for scope, item in items:  # a replayed turn appears once per batch
            scoped[scope][item.object_id] = item
        texts = [item.text for by_id in scoped.values() for item in by_id.values()]
        for start in range(0, len(texts), EMBED_CHUNK):
            await self._run(self._embedder.embed, texts[start : start + EMBED_CHUNK])
        for scope, by_id in scoped.items():
            await self._run(self._indexer.add, scope, list(by_id.values()))
        self.indexed += len(texts)
