"""Run a replay: the turn runner's real dependencies (the embedder, Qdrant in memory behind
the snapshot index the worker searches, the pack's indexes) around
:func:`processors.replay.run.replay`, as ``turnstream pack test`` builds them for its
in-process runs, with the tools and the clock the replay pins."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from processors.replay.recording import RecordedTurn
from processors.replay.run import ReplayRun
from streams.settings import Settings


async def replay_pack(
    turns: Sequence[RecordedTurn],
    pack_dir: Path,
    settings: Settings,
    *,
    live_llm: bool = False,
    call_read_tools: bool = False,
) -> ReplayRun:
    """Every turn of ``turns`` against the pack in ``pack_dir``. LLM phases are answered
    from the recorded model outputs, or with ``live_llm`` by the model of ``settings``
    (``llm_base_url``; never called otherwise); READ tools the
    recording lacks are called for real only with ``call_read_tools`` (the pack's own tools
    under the operator's tool policy, HTTP behind the SSRF guard)."""
    from processors.llm_budget import LLM_PHASES
    from processors.replay.embeddings import PrefetchedEmbedder
    from processors.replay.run import replay
    from processors.replay.tools import RecordedTools
    from schemas.pack.agent_pack import AgentPack
    from sinks.llm_openai import OpenAiLlm
    from sinks.pack_files import load_pack
    from sinks.turn_deps import RetrievalPorts

    if live_llm and not settings.llm_base_url:
        raise ValueError("--live-llm needs TURNSTREAM_LLM_BASE_URL (the model's endpoint)")
    # as a worker has it: through config.packs' canonical JSON (sorted keys), so that the
    # mappings in LLM prompts (a field's synonyms...) are in the worker's order
    pack = AgentPack.model_validate_json(load_pack(pack_dir).canonical_json())
    # the pack's scopes as one matrix, as the worker searches
    ports = RetrievalPorts.in_memory(settings)
    ports.sync(pack)
    embedder = PrefetchedEmbedder(ports.embedder)
    embedder.prefetch(t.request.input.message for t in turns)
    model = OpenAiLlm(settings) if live_llm else None
    unused = RecordedTools.of(())  # replaced by the replay's own executor
    deps = ports.turn_deps(settings, lambda _pack: unused, embedder=embedder)
    session = None
    live = None
    if call_read_tools:
        from processors.tool_policy import ToolPolicy
        from sinks.http_tools import pack_tool_executor
        from sinks.outbound_http import guarded_session

        policy = ToolPolicy.of(settings.tools)
        session = guarded_session(allow_private=policy.allow_private_http)
        live = pack_tool_executor(pack_dir, policy, session)
    try:
        live_llm_tasks = dict.fromkeys(LLM_PHASES, model) if model is not None else None
        return await replay(turns, pack, deps, live_tools=live, live_llm=live_llm_tasks)
    finally:
        ports.close()
        if model is not None:
            await model.close()
        if session is not None:
            await session.close()
