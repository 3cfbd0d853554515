"""What the pipeline's agents share in one worker process: the packs (every version a turn
in flight may still use), the embedding model, the vector store and the tool executors.

Packs come from the config topic (``PackRegistry``); each new version is indexed for
retrieval (only changed objects are re-embedded) in the background, and kept here by
version so that a turn finishes with the version it started with. The packs present at
start are embedded on the model thread before any turn is taken; a version loaded while
turns run is embedded in a child process at a lower CPU priority
(``sinks.embed_process``, ``pack_index_niceness``), so that no tenant's pack load holds up
another tenant's turns (issue 20; ``bench/noisy_neighbour.py``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import aiohttp

from processors.llm import LlmTask
from processors.phases.tools import PackToolExecutor
from processors.retrieval import Indexer, IndexReport
from processors.retrieval.pack_items import sync_pack
from processors.tool_policy import ToolPolicy
from processors.turn.deps import TurnDeps
from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalType
from schemas.pack.agent_pack import AgentPack
from sinks.embed_process import EmbedProcess
from sinks.embedder import default_embedder
from sinks.http_tools import pack_tool_executor
from sinks.llm_openai import OpenAiLlm
from sinks.outbound_http import guarded_session
from sinks.turn_deps import RetrievalPorts
from sinks.vector_store import VectorStore
from streams.metrics import metered
from streams.pack_registry import PackRegistry, PackUpdate
from streams.pipeline.embed_batcher import EmbedBatcher
from streams.settings import Settings

logger = logging.getLogger(__name__)

VERSIONS_KEPT = 8
"""Pack versions kept per agent: enough for every turn in flight during a few quick loads."""
LLM_PHASES = (Phase.SENSOR, Phase.RULE_SELECTION, Phase.GENERATION, Phase.ENFORCEMENT)

P = ParamSpec("P")
R = TypeVar("R")


class PackVersions:
    """The last :data:`VERSIONS_KEPT` versions of each agent's pack."""

    def __init__(self) -> None:
        self._packs: dict[tuple[str, str], OrderedDict[int, AgentPack]] = {}

    def put(self, tenant: str, agent: str, version: int, pack: AgentPack) -> None:
        kept = self._packs.setdefault((tenant, agent), OrderedDict())
        kept[version] = pack
        while len(kept) > VERSIONS_KEPT:
            kept.popitem(last=False)

    def get(self, tenant: str, agent: str, version: int | None) -> AgentPack | None:
        """That version (the newest for ``None``), or None when not kept."""
        if version is None:
            newest = self.newest(tenant, agent)
            return newest[1] if newest else None
        kept = self._packs.get((tenant, agent))
        return kept.get(version) if kept is not None else None

    def newest(self, tenant: str, agent: str) -> tuple[int, AgentPack] | None:
        kept = self._packs.get((tenant, agent))
        if not kept:
            return None
        version = max(kept)
        return version, kept[version]


def _llm_tasks(settings: Settings) -> dict[Phase, LlmTask]:
    """The LLM port for every LLM-shaped phase when an endpoint is configured; a phase uses
    it only in ``llm`` mode (set by the process or by a pack's overrides)."""
    if not settings.llm_base_url:
        return {}
    llm = OpenAiLlm(settings)
    return dict.fromkeys(LLM_PHASES, llm)


def one_intra_op_thread() -> None:
    """Run the model on the one model thread only. Profiled under load (bench/profile_worker.md):
    torch's two OpenMP workers spun between parallel regions (0.54 cores, 76 ms of CPU per turn
    against 51 ms with one thread), and a parallel region stalled whenever the event loop or the
    broker held the other core; batching across turns gives the throughput instead."""
    import torch

    torch.set_num_threads(1)


def pack_tools(
    settings: Settings, session: aiohttp.ClientSession
) -> Callable[[AgentPack], PackToolExecutor]:
    """Each pack's tool executor: its Python tools under the operator's tool policy, over
    its own folder of ``packs_dir``; its HTTP tools through the guarded ``session``."""
    policy = ToolPolicy.of(settings.tools)

    def tools(pack: AgentPack) -> PackToolExecutor:
        folder = settings.packs_dir / pack.agent.tenant_id / pack.agent.agent_id
        return pack_tool_executor(folder, policy, session)

    return tools


class PipelineRuntime:
    """Start it before the Faust app, stop it after."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = PackRegistry(settings)
        self.versions = PackVersions()
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="turnstream-model")
        self._http: aiohttp.ClientSession | None = None
        self._deps: TurnDeps | None = None
        self._llms: dict[Phase, LlmTask] = {}
        self._batcher: EmbedBatcher | None = None
        self._ports: RetrievalPorts | None = None
        self._index_lock = asyncio.Lock()
        self._index_tasks: set[asyncio.Task[None]] = set()

    @property
    def deps(self) -> TurnDeps:
        if self._deps is None:
            raise RuntimeError("PipelineRuntime not started")
        return self._deps

    @property
    def embeddings(self) -> EmbedBatcher:
        """The micro-batching front of the model, for the per-turn query embedding."""
        if self._batcher is None:
            raise RuntimeError("PipelineRuntime not started")
        return self._batcher

    @property
    def indexer(self) -> Indexer:
        return self._started_ports().indexer

    def _started_ports(self) -> RetrievalPorts:
        if self._ports is None:
            raise RuntimeError("PipelineRuntime not started")
        return self._ports

    async def in_model_thread(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run model work (embeddings) on the one model thread, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._model_thread, lambda: fn(*args, **kwargs))

    async def start(self) -> None:
        await self.in_model_thread(one_intra_op_thread)
        embedder = await self.in_model_thread(
            functools.partial(default_embedder, settings=self.settings)
        )
        store = VectorStore.from_settings(self.settings, embedder.dim)
        ports = RetrievalPorts.over(store, embedder)
        self._ports = ports
        self._batcher = EmbedBatcher(embedder, self.in_model_thread)
        self._http = guarded_session(allow_private=self.settings.tools.allow_private_targets)
        tools = pack_tools(self.settings, self._http)

        self._llms = _llm_tasks(self.settings)
        self._deps = ports.turn_deps(self.settings, tools, llm=metered(self._llms))
        await self.registry.start()
        for snapshot in self.registry.snapshots():  # no turn is taken yet: the model is free
            await self._index(snapshot.tenant, snapshot.agent, snapshot.version, snapshot.pack)
        self.registry.subscribe(self._on_update)

    async def stop(self) -> None:
        await self.registry.stop()
        for task in list(self._index_tasks):
            task.cancel()
        await asyncio.gather(*self._index_tasks, return_exceptions=True)
        llms = {id(llm): llm for llm in self._llms.values()}
        for llm in llms.values():
            if isinstance(llm, OpenAiLlm):
                await llm.close()
        if self._http is not None:
            await self._http.close()
        if self._ports is not None:
            self._ports.close()
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    def _on_update(self, update: PackUpdate) -> None:
        current = update.current
        if current is None:
            return
        task = asyncio.create_task(
            self._index(current.tenant, current.agent, current.version, current.pack, aside=True)
        )
        self._index_tasks.add(task)
        task.add_done_callback(self._index_tasks.discard)

    async def _index(
        self, tenant: str, agent: str, version: int, pack: AgentPack, *, aside: bool = False
    ) -> None:
        """Index a pack version, then make it available to turns; ``aside``: while turns
        run, off the model thread (:meth:`_index_aside`)."""
        async with self._index_lock:
            snapshot = self._ports.snapshot if self._ports is not None else None
            if snapshot is not None:  # another process may have indexed it
                snapshot.invalidate_agent(tenant, agent)
            started = time.monotonic()
            try:
                if aside:
                    reports = await self._index_aside(pack)
                else:
                    reports = await self.in_model_thread(sync_pack, self.indexer, pack)
            except Exception:
                logger.exception(
                    "indexing %s/%s v%d failed; retrieval may be stale", tenant, agent, version
                )
            else:
                embedded = sum(r.embedded for r in reports.values())
                logger.info(
                    "indexed %s/%s v%d: %d texts embedded in %.1f s%s",
                    tenant,
                    agent,
                    version,
                    embedded,
                    time.monotonic() - started,
                    " (aside)" if aside else "",
                )
            self.versions.put(tenant, agent, version, pack)

    async def _index_aside(self, pack: AgentPack) -> dict[RetrievalType, IndexReport]:
        """Sync the pack from a thread of its own, its texts embedded by a child process at
        a lower CPU priority (started only when some text changed, ended after): the model
        thread stays the turns'."""
        ports = self._started_ports()
        settings = self.settings
        with EmbedProcess(
            self.deps.embedder,
            settings.embedder_backend,
            settings.cache_dir,
            niceness=settings.pack_index_niceness,
        ) as embedder:
            aside = ports.indexer_using(embedder)
            return await asyncio.to_thread(sync_pack, aside, pack)
