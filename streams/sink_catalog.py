"""The sinks the worker runs on the :class:`~streams.sink_consumer.SinkConsumer` loop.

A new sink is a writer (``sinks/<name>.py``, a :class:`~streams.sink_consumer.SinkWriter`)
and one :class:`SinkSpec` line in :data:`SINKS`: the worker starts a consumer for each spec
whose role it runs. The analytics sink runs on the same loop but is started by
``streams.analytics_services`` (it has a store, a SQL endpoint and options of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from processors.embedding import Embedder
from processors.retrieval import Indexer
from sinks.memory_ingestion import MemoryWriter, RunInThread
from streams.roles import Role
from streams.settings import Settings
from streams.sink_consumer import SinkConsumer, SinkPolicy, SinkWriter
from streams.topics import DEAD_LETTER, MEMORY_GROUP, TURN_COMPLETED, GroupSpec, TopicSpec


@dataclass(frozen=True)
class SinkContext:
    """What a writer may be built from: the worker's settings and its runtime pieces."""

    settings: Settings
    indexer: Callable[[], Indexer]
    embedder: Callable[[], Embedder]
    run_in_model_thread: RunInThread


@dataclass(frozen=True)
class SinkSpec:
    name: str
    role: Role
    group: GroupSpec
    topics: tuple[TopicSpec, ...]
    writer: Callable[[SinkContext], SinkWriter[Any]]
    policy: SinkPolicy
    dead_letters_to_topic: bool = True

    def consumer(self, ctx: SinkContext) -> SinkConsumer[Any]:
        prefix = ctx.settings.topic_prefix
        return SinkConsumer(
            ctx.settings,
            name=self.name,
            group=self.group.name(prefix),
            topics=[topic.name(prefix) for topic in self.topics],
            writer=self.writer(ctx),
            policy=self.policy,
            dead_letter_topic=DEAD_LETTER.name(prefix) if self.dead_letters_to_topic else None,
        )


MEMORY_POLICY = SinkPolicy(batch_size=256, flush_interval_s=2.0, retry_max_s=10.0)
"""Memories are not urgent: gathering turns for up to 2 s makes few model calls embed many of
them (batching is ~4x cheaper per text), leaving the model to the turns."""

SINKS: tuple[SinkSpec, ...] = (
    SinkSpec(
        "memory-ingestion",
        Role.RETRIEVAL,
        MEMORY_GROUP,
        (TURN_COMPLETED,),
        lambda c: MemoryWriter(c.indexer(), c.embedder(), c.run_in_model_thread),
        MEMORY_POLICY,
    ),
)
