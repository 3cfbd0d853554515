"""The memory-ingestion consumer: ``turn.completed`` into the customers' memory collections,
in its own consumer group, after the response was sent (pipeline-execution-model 6.4).

It must run in the process that owns the vector store (Qdrant local mode allows one): the
worker starts it with the retrieval agents. Offsets are committed after a batch is indexed;
a replay re-indexes the same ids (idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from processors.embedding import Embedder
from processors.retrieval import Indexer
from processors.retrieval.model import IndexItem, Scope
from schemas.codec import CodecError, decode_as
from schemas.events.completed_turn import CompletedTurn
from sinks.memory_ingestion import memory_item
from streams.kafka_clients import consumer_kwargs
from streams.settings import Settings
from streams.topics import TURN_COMPLETED

logger = logging.getLogger(__name__)

BATCH_MAX = 256
GATHER_S = 2.0
"""Memories are not urgent: gathering turns for up to this long makes few model calls embed
many of them (batching is ~4x cheaper per text), leaving the model to the turns."""
EMBED_CHUNK = 16
"""Texts per model call. The model thread is the turns' too, and a query embedding waits for
the call in progress: one call for a whole poll (up to 256 texts) held queries back. With 2
workers at 30 turns/s over 1,000 sessions (onnx-int8, one run each): ``retrieval.embedding``
p99 391 -> 203 ms, e2e p50 / p99 235 / 1,285 -> 106 / 583 ms. 16 texts keep most of the
batching gain and take ~10 ms (onnx-int8) to ~30 ms (torch)."""
RETRY_S = 1.0
RunInThread = Callable[..., Awaitable[Any]]


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}.memory-ingestion"


class MemoryConsumer:
    def __init__(
        self, settings: Settings, indexer: Indexer, embedder: Embedder, run: RunInThread
    ) -> None:
        self.settings = settings
        self._indexer = indexer
        self._embedder = embedder
        self._run = run
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.indexed = 0

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            TURN_COMPLETED.name(self.settings.topic_prefix),
            **consumer_kwargs(self.settings),
            group_id=group_id(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._loop(consumer), name="memory-ingestion")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=int(GATHER_S * 1000), max_records=BATCH_MAX)
            if batches and sum(len(m) for m in batches.values()) < BATCH_MAX:
                await asyncio.sleep(GATHER_S)
                more = await consumer.getmany(timeout_ms=0, max_records=BATCH_MAX)
                for tp, messages in more.items():
                    batches.setdefault(tp, []).extend(messages)
            items: dict[Scope, dict[str, IndexItem]] = defaultdict(dict)
            for messages in batches.values():
                for message in messages:
                    try:
                        record = decode_as(message.value, CompletedTurn).record
                    except CodecError as exc:
                        logger.warning("memory ingestion skips an undecodable record: %s", exc)
                        continue
                    found = memory_item(record)
                    if found is not None:  # a replayed turn appears once per batch
                        items[found[0]][found[1].object_id] = found[1]
            if not batches:
                continue
            texts = [item.text for scoped in items.values() for item in scoped.values()]
            while True:
                try:
                    for start in range(0, len(texts), EMBED_CHUNK):  # the adds hit the cache
                        await self._run(self._embedder.embed, texts[start : start + EMBED_CHUNK])
                    for scope, scoped in items.items():
                        await self._run(self._indexer.add, scope, list(scoped.values()))
                    await consumer.commit()
                    break
                except (KafkaError, OSError, RuntimeError, ValueError):
                    logger.exception("memory ingestion failed; retrying in %.0f s", RETRY_S)
                    await asyncio.sleep(RETRY_S)
            self.indexed += sum(len(v) for v in items.values())
