"""The local model for pipeline tests in ``llm`` mode (``local_llm`` marker): the packaged
SmolLM2 server, the four LLM tasks on it with bounds that hold for a 135M model on a loaded
2-core machine, and the example pack without its own phase overrides."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from processors.llm_budget import turn_llm_budget
from streams.local_llm import MODEL_ALIAS, LocalLlmServer
from streams.settings import EnforcementPhaseSettings, PhaseSettings, Settings, TaskMode
from tests.pipeline_support import EXAMPLE_PACK, pipeline_settings

__all__ = [
    "MAX_TOKENS",
    "TIMEOUT_S",
    "free_port",
    "llm_mode_settings",
    "llm_pipeline_settings",
    "model_server_in",
    "pack_without_phase_overrides",
]

MAX_TOKENS = 48
"""Small on purpose: a 135M model fills any budget, and the bound is what is tested."""
TIMEOUT_S = 120.0
"""Generous: on a loaded 2-core machine a first 800-token prompt took 37 s to read."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def model_server_in(cache_dir: Path) -> Iterator[LocalLlmServer]:
    """The packaged model server on a free port, two requests at once, its files under
    ``cache_dir``; stopped at the end (a test may stop it before)."""
    server = LocalLlmServer(Settings(cache_dir=cache_dir, local_llm_parallel=2), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def llm_pipeline_settings(kafka_settings: Settings, endpoint: str, data_dir: Path) -> Settings:
    """A private pipeline's settings (``tests.pipeline_support.pipeline_settings``) with the
    four LLM tasks on ``endpoint``, :data:`MAX_TOKENS` and :data:`TIMEOUT_S`."""
    base = pipeline_settings(kafka_settings, data_dir)
    return llm_mode_settings(base, endpoint, max_tokens=MAX_TOKENS, timeout_s=TIMEOUT_S)


def llm_mode_settings(
    base: Settings, endpoint: str, *, max_tokens: int, timeout_s: float
) -> Settings:
    """Sensor, rule filter, generation and judge in ``llm`` mode against ``endpoint``, no
    retries and no regenerations, the stall limit just over the turn's LLM budget (as the
    worker checks)."""
    llm = PhaseSettings(
        mode=TaskMode.LLM,
        model=MODEL_ALIAS,
        timeout_s=timeout_s,
        retries=0,
        max_tokens=max_tokens,
    )
    phases = base.phases.model_copy(
        update={
            "sensor": llm,
            "rule_selection": llm,
            "generation": llm,
            "enforcement": EnforcementPhaseSettings(**llm.model_dump(), regenerations=0),
        }
    )
    settings = base.model_copy(update={"llm_base_url": endpoint, "phases": phases})
    budget = turn_llm_budget(settings).seconds
    return settings.model_copy(update={"turn_stall_s": budget + 1})


def pack_without_phase_overrides(target: Path) -> Path:
    """A copy of the example pack without its ``phases:`` overrides (generation
    ``timeout_s: 8``...): the test's settings are the ones that hold for the local model."""
    pack = target / "support"
    shutil.copytree(EXAMPLE_PACK, pack)
    agent = pack / "agent.yaml"
    text = agent.read_text()
    head, _, rest = text.partition("phases:")
    agent.write_text(head + rest[rest.index("retrieval:") :])
    return pack
