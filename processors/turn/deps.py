"""What the stages need from outside: models, stores, tools and LLMs, behind ports."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from processors.embedding import Embedder
from processors.llm import LlmTask
from processors.phases.tools import ToolExecutor
from processors.retrieval import LexicalIndexes
from processors.retrieval.ports import Reranker, VectorIndex
from schemas.domain.phase import Phase
from schemas.pack.agent_pack import AgentPack
from schemas.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TurnDeps:
    """The ports every stage may use. ``tools`` gives the executor for a pack's tools (their
    data files live with the pack). ``llm`` maps a phase to its LLM task; a phase in LLM
    mode without one falls back to its heuristic and records why."""

    embedder: Embedder
    vectors: VectorIndex
    lexicon: LexicalIndexes
    tools: Callable[[AgentPack], ToolExecutor]
    settings: Settings
    llm: Mapping[Phase, LlmTask] = field(default_factory=dict)
    reranker: Reranker | None = None
    clock: Callable[[], datetime] = utc_now
    timer: Callable[[], float] = time.perf_counter
    _effective: dict[str, Settings] = field(default_factory=dict, repr=False)
    _by_agent: dict[int, tuple[object, Settings]] = field(default_factory=dict, repr=False)
    """``settings_for`` per agent object (a loaded pack is never changed in place), held so
    that an id is never reused: a turn asks several times, and dumping the agent each time
    to find its entry in ``_effective`` cost ~0.3 ms a turn."""

    def llm_for(self, phase: Phase) -> LlmTask | None:
        return self.llm.get(phase)

    def max_generation_attempts(self, pack: AgentPack) -> int:
        """P10's bound on P9 attempts: the first plus ``phases.enforcement.regenerations``
        (``enforcement.retries`` are the judge's LLM retries, a different thing)."""
        return 1 + self.settings_for(pack).phases.enforcement.regenerations

    def settings_for(self, pack: AgentPack) -> Settings:
        """The process settings with the pack's per-phase and retrieval overrides."""
        agent = pack.agent
        known = self._by_agent.get(id(agent))
        if known is not None and known[0] is agent:
            return known[1]
        key = agent.model_dump_json()
        cached = self._effective.get(key)
        if cached is None:
            cached = agent.apply_to(self.settings)
            self._effective[key] = cached
        if len(self._by_agent) >= 256:
            self._by_agent.clear()
        self._by_agent[id(agent)] = (agent, cached)
        return cached
