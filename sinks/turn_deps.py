"""The one place a turn's retrieval ports are wired: the embedder, the vector store, the
index turns search (the worker's :class:`SnapshotIndex` over the store), the
lexical indexes read from the store, the :class:`Indexer` that keeps them in sync with a
pack, and the :class:`TurnDeps` built over them.

The worker's runtime (``streams.pipeline.runtime``), ``turnstream pack test`` and
``turnstream replay`` (in process), and the benches all build their ports here, so an
in-process turn searches what a worker's turn searches, wired the same way.

Why in ``sinks/``: the wiring opens adapters (:class:`VectorStore`, the default embedder),
which ``processors/`` may not import; it needs nothing of ``streams/`` (the settings models
are ``schemas/``'), so ``sinks/`` is the lowest layer that can hold it. What a caller adds
on top (tool executors over an HTTP session, the metered LLM tasks) stays with the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from processors.embedding import Embedder
from processors.llm import LlmTask
from processors.phases.tools import ToolExecutor
from processors.retrieval import Indexer, IndexReport, LexicalIndexes
from processors.retrieval.pack_items import sync_pack
from processors.retrieval.snapshot_index import SnapshotIndex
from processors.turn.deps import TurnDeps
from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalType
from schemas.pack.agent_pack import AgentPack
from schemas.settings import Settings
from sinks.embedder import default_embedder
from sinks.vector_store import VectorStore


@dataclass(frozen=True)
class RetrievalPorts:
    """What retrieval reads and indexing writes, over one vector store (closed by
    :meth:`close`)."""

    embedder: Embedder
    """The model packs are indexed with (and, unless :meth:`turn_deps` is given another,
    the one turns embed their queries with)."""
    store: VectorStore
    snapshot: SnapshotIndex
    """The in-memory matrix of each scope over ``store``: what every turn searches (the
    worker's path; searching ``store`` directly would be a sibling path scored otherwise)."""
    lexicon: LexicalIndexes
    indexer: Indexer

    @classmethod
    def over(cls, store: VectorStore, embedder: Embedder) -> RetrievalPorts:
        """The ports over ``store``: turns search a :class:`SnapshotIndex` of it."""
        index = SnapshotIndex(store)
        lexicon = LexicalIndexes(store.documents)
        return cls(embedder, store, index, lexicon, Indexer(index, embedder, lexicon))

    @classmethod
    def in_memory(
        cls,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
    ) -> RetrievalPorts:
        """Over a Qdrant in memory (gone at :meth:`close`), with ``embedder`` or the default
        embedder of ``settings``' backend."""
        if embedder is None:
            embedder = default_embedder(settings=settings)
        return cls.over(VectorStore.memory(embedder.dim), embedder)

    def sync(self, pack: AgentPack) -> dict[RetrievalType, IndexReport]:
        """Index ``pack`` (only what changed since the last sync is embedded again)."""
        return sync_pack(self.indexer, pack)

    def indexer_using(self, embedder: Embedder) -> Indexer:
        """An indexer of the same indexes that embeds with ``embedder`` (the worker's child
        process for a pack loaded while turns run)."""
        return Indexer(self.snapshot, embedder, self.lexicon)

    def turn_deps(
        self,
        settings: Settings,
        tools: Callable[[AgentPack], ToolExecutor],
        *,
        llm: Mapping[Phase, LlmTask] | None = None,
        embedder: Embedder | None = None,
    ) -> TurnDeps:
        """The ports of a turn over these indexes; ``embedder`` replaces the indexing model
        for the turns' own query embeddings (a replay answers them from its recording)."""
        return TurnDeps(
            embedder=embedder if embedder is not None else self.embedder,
            vectors=self.snapshot,
            lexicon=self.lexicon,
            tools=tools,
            settings=settings,
            llm=llm if llm is not None else {},
        )

    def close(self) -> None:
        self.store.close()
