"""``llm`` mode for real: the packaged SmolLM2-135M behind llama.cpp's server
(``turnstream llm serve``, started here as a child process) and a worker on the real broker
with all four LLM tasks (sensor, rule filter, generation, judge) in ``llm`` mode.

What must hold whatever a 135M model answers: every turn gets a response, the record holds
the token usage the server reported, no completion is longer than ``max_tokens``, the stall
watchdog drives no turn again, and with the server stopped mid-run the turns are answered
by the heuristics with the fallback recorded.
"""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from processors.llm_budget import turn_llm_budget
from schemas.domain.phase import Phase
from schemas.events.turn_response import ResponseStatus
from streams.local_llm import MODEL_ALIAS, LocalLlmServer
from streams.settings import EnforcementPhaseSettings, PhaseSettings, Settings, TaskMode
from streams.turn_client import TurnClient
from tests.pipeline_support import (
    EXAMPLE_PACK,
    Redrives,
    customer_says,
    pipeline_settings,
    prepare,
    running_worker,
    watching_redrives,
)

pytest.importorskip("xllamacpp", reason="needs the local-llm extra (see .ci/run)")

pytestmark = [pytest.mark.integration, pytest.mark.local_llm]

MAX_TOKENS = 48
"""Small on purpose: a 135M model fills any budget, and the bound is what is tested."""
TIMEOUT_S = 120.0
"""Generous: on a loaded 2-core machine a first 800-token prompt took 37 s to read."""
LLM_PHASES = (Phase.SENSOR, Phase.RULE_SELECTION, Phase.GENERATION, Phase.ENFORCEMENT)
MESSAGE = "where is my order A-10024?"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redrives() -> Iterator[Redrives]:
    with watching_redrives() as handler:
        yield handler


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLlmServer]:
    settings = Settings(cache_dir=tmp_path_factory.mktemp("llm"), local_llm_parallel=2)
    server = LocalLlmServer(settings, _free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def client(
    model_server: LocalLlmServer,
    kafka_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    redrives: Redrives,
) -> AsyncIterator[TurnClient]:
    del redrives  # attached before the worker starts
    base = pipeline_settings(kafka_settings, tmp_path_factory.mktemp("local-llm"))
    llm = PhaseSettings(
        mode=TaskMode.LLM,
        model=MODEL_ALIAS,
        timeout_s=TIMEOUT_S,
        retries=0,
        max_tokens=MAX_TOKENS,
    )
    phases = base.phases.model_copy(
        update={
            "sensor": llm,
            "rule_selection": llm,
            "generation": llm,
            "enforcement": EnforcementPhaseSettings(**llm.model_dump(), regenerations=0),
        }
    )
    settings = base.model_copy(
        update={
            "llm_base_url": model_server.endpoint,
            "phases": phases,
        }
    )
    budget = turn_llm_budget(settings).seconds
    settings = settings.model_copy(update={"turn_stall_s": budget + 1})  # as the worker checks
    # the example pack's own phase overrides (generation timeout_s: 8) left out: the test's
    # settings are the ones that hold for this model
    await prepare(settings, _without_phase_overrides(tmp_path_factory.mktemp("pack")))
    async with running_worker(settings), TurnClient(settings, records=True) as turn_client:
        yield turn_client


def _without_phase_overrides(target: Path) -> Path:
    pack = target / "support"
    shutil.copytree(EXAMPLE_PACK, pack)
    agent = pack / "agent.yaml"
    text = agent.read_text()
    head, _, rest = text.partition("phases:")
    agent.write_text(head + rest[rest.index("retrieval:") :])
    return pack


def visitor() -> str:
    return f"local-{uuid.uuid4().hex[:8]}"


async def test_a_turn_with_the_local_model_is_answered_bounded_and_not_driven_again(
    client: TurnClient, redrives: Redrives
) -> None:
    turn_id = await client.send(customer_says(visitor(), MESSAGE, "C-1001"))
    response = await client.response(turn_id, timeout=300)
    record = await client.record(turn_id)

    assert response.status is ResponseStatus.OK and response.text
    usage = record.context.token_usage
    fallbacks = {e.phase for e in record.context.errors if e.code == "llm.fallback"}
    asked = {u.phase for u in usage}
    assert asked, record.context.errors  # the model answered at least one phase
    # each LLM phase either got its answer (usage) or fell back and said why; a slow
    # CPU may time out a long first prompt (the sensor's), which is recorded, not lost
    judged = [j for check in record.context.enforcement for j in check.judgements]
    assert {Phase.SENSOR, Phase.RULE_SELECTION, Phase.GENERATION} <= asked | fallbacks
    assert Phase.ENFORCEMENT in asked or all(j.reason for j in judged)
    assert all(u.model == MODEL_ALIAS and u.prompt_tokens > 0 for u in usage)
    assert all(0 < u.completion_tokens <= MAX_TOKENS for u in usage), usage
    assert redrives.lines == []


async def test_with_the_server_stopped_the_turns_fall_back_to_the_heuristics(
    client: TurnClient, model_server: LocalLlmServer, redrives: Redrives
) -> None:
    model_server.stop()
    turn_id = await client.send(customer_says(visitor(), MESSAGE, "C-1001"))
    response = await client.response(turn_id, timeout=120)
    record = await client.record(turn_id)

    assert response.status is ResponseStatus.OK and response.text
    fallbacks = {e.phase for e in record.context.errors if e.code == "llm.fallback"}
    assert {Phase.SENSOR, Phase.GENERATION} <= fallbacks
    reasons = [e.message for e in record.context.errors if e.code == "llm.fallback"]
    assert all("APIConnectionError" in reason for reason in reasons), reasons
    assert record.context.token_usage == []
    assert redrives.lines == []
