"""A customer's first message through the production path of a turn, up to the retrieval join.

``understand`` (P1-P3: the query text a turn really embeds, sensor facts included) -> the
P4.1 embedding -> one ``retrieve_one`` per type (what each retrieval consumer of the stream
topology runs) -> ``join`` (selections, gaps and the canonical intent). The retrieval benches
measure through this, so their figures are the figures of a turn.
Every message is a first turn of a fresh session (no dialogue state).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from processors.embedding import Embedder, InlineEmbedder
from processors.phases.tools import PackToolExecutor
from processors.retrieval import LexicalIndexes
from processors.turn.in_process import MemoryState
from processors.turn.retrieval_stage import (
    join,
    request_retrieval,
    retrieve_one,
    selected,
)
from processors.turn.understand import coalesce, understand
from schemas.domain.retrieval import RetrievalType
from schemas.domain.turn_context import TurnContext
from schemas.domain.turn_input import Channel, TurnInput
from schemas.events.turn_requested import TurnRequested
from schemas.pack import AgentPack
from sinks.python_tools import PythonToolExecutor
from sinks.turn_deps import RetrievalPorts
from sinks.vector_store import VectorStore
from streams.settings import Settings

BENCH_CUSTOMER = "bench-customer"


@dataclass(frozen=True)
class JoinedTurn:
    """The joined context of one first turn, and where its time went."""

    context: TurnContext
    query_text: str
    """The P4.1 query ``understand`` built (the reworded message)."""
    embedding_ms: float
    p4_ms: float

    def selected_ids(self, rtype: RetrievalType) -> list[str]:
        for selection in self.context.retrievals:
            if selection.retrieval_type is rtype:
                return [r.object_id for r in selected(selection)]
        return []

    def best_score(self, rtype: RetrievalType) -> float | None:
        for selection in self.context.retrievals:
            if selection.retrieval_type is rtype:
                found = selected(selection)
                return found[0].score if found else None
        return None


class FirstTurns:
    """One pack indexed in an in-memory Qdrant (re-synced by :meth:`use`), and first turns
    run against it with ``settings`` (the pack's own overrides apply, as in a worker)."""

    def __init__(self, embedder: Embedder, settings: Settings) -> None:
        self._inline = InlineEmbedder(embedder)
        self._ports = RetrievalPorts.in_memory(embedder=embedder)
        self._settings = settings
        self._count = 0

    def use(self, pack: AgentPack) -> dict[str, int]:
        """Index ``pack`` (only what changed since the last call is embedded again)."""
        reports = self._ports.sync(pack)
        self.pack = pack
        self.deps = self._ports.turn_deps(
            self._settings,
            lambda _pack: PackToolExecutor(PythonToolExecutor(Path("."))),  # none run
        )
        return {rtype.value: r.embedded for rtype, r in reports.items()}

    def close(self) -> None:
        self._ports.close()

    @property
    def store(self) -> VectorStore:
        return self._ports.store

    @property
    def lexicon(self) -> LexicalIndexes:
        return self._ports.lexicon

    async def turn(self, message: str, customer_id: str | None = BENCH_CUSTOMER) -> JoinedTurn:
        pack, deps = self.pack, self.deps
        self._count += 1
        state = MemoryState()
        state.add_pack(pack)
        request = TurnRequested(
            turn_id=f"bench-{self._count}",
            input=TurnInput(
                tenant_id=pack.agent.tenant_id,
                agent_id=pack.agent.agent_id,
                channel=Channel.WEBCHAT,
                channel_id=f"bench-{self._count}",
                customer_id=customer_id,
                message=message,
            ),
            sent_at=datetime.now(UTC),
        )
        understood = await understand(
            request.turn_id, coalesce(request, [], deps.clock()), state.ports(request), deps
        )
        started = time.perf_counter()
        context, requests = await request_retrieval(
            request.turn_id, request.input.session_key, understood, self._inline, deps
        )
        embedding_ms = context.timings_ms["retrieval.embedding"]  # a first turn: P4.1's own
        results = await asyncio.gather(
            *(asyncio.to_thread(retrieve_one, r, pack, deps) for r in requests)
        )
        failed = [r.error.message for r in results if r.error is not None]
        if failed:
            raise RuntimeError(f"retrieval failed: {failed}")
        context = join(context, results, pack)
        total_ms = (time.perf_counter() - started) * 1000.0
        return JoinedTurn(context, understood.query, embedding_ms, total_ms - embedding_ms)
