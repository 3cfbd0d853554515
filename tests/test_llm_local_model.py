"""``llm`` mode for real: the packaged SmolLM2-135M behind llama.cpp's server
(``turnstream llm serve``, started here as a child process) and a worker on the real broker
with all four LLM tasks (sensor, rule filter, generation, judge) in ``llm`` mode.

What must hold whatever a 135M model answers: every turn gets a response, the record holds
the token usage the server reported, no completion is longer than ``max_tokens``, the stall
watchdog drives no turn again, and with the server stopped mid-run the turns are answered
by the heuristics with the fallback recorded.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from schemas.domain.phase import Phase
from schemas.events.turn_response import ResponseStatus
from streams.local_llm import MODEL_ALIAS, LocalLlmServer
from streams.settings import EnforcementPhaseSettings, PhaseSettings, Settings, TaskMode
from streams.turn_client import TurnClient
from tests.pipeline_support import customer_says, pipeline_settings, prepare, running_worker

pytest.importorskip("xllamacpp", reason="needs the local-llm extra (see .ci/run)")

pytestmark = [pytest.mark.integration, pytest.mark.local_llm]

MAX_TOKENS = 48
"""Small on purpose: a 135M model fills any budget, and the bound is what is tested."""
TIMEOUT_S = 30.0
LLM_PHASES = (Phase.SENSOR, Phase.RULE_SELECTION, Phase.GENERATION, Phase.ENFORCEMENT)
MESSAGES = ("where is my order A-10024?", "I want a refund for order A-10023, it arrived broken")


class Redrives(logging.Handler):
    """The watchdog's and the session agent's lines for a turn driven again."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "driving turn" in text or "stalled since" in text:
            self.lines.append(text)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redrives() -> Iterator[Redrives]:
    handler = Redrives()
    watched = logging.getLogger("streams.pipeline.session_agent")
    watched.addHandler(handler)
    watched.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        watched.removeHandler(handler)


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
            "enforcement": EnforcementPhaseSettings(**llm.model_dump(), regenerations=1),
        }
    )
    settings = base.model_copy(
        update={
            "llm_base_url": model_server.endpoint,
            "phases": phases,
            "turn_stall_s": 600.0,  # over the worst-case turn budget, as the worker checks
        }
    )
    await prepare(settings)
    async with running_worker(settings), TurnClient(settings, records=True) as turn_client:
        yield turn_client


def visitor() -> str:
    return f"local-{uuid.uuid4().hex[:8]}"


async def test_turns_with_the_local_model_are_answered_bounded_and_not_driven_again(
    client: TurnClient, redrives: Redrives
) -> None:
    for message in MESSAGES:
        turn_id = await client.send(customer_says(visitor(), message, "C-1001"))
        response = await client.response(turn_id, timeout=300)
        record = await client.record(turn_id)

        assert response.status is ResponseStatus.OK and response.text
        usage = record.context.token_usage
        assert {u.phase for u in usage} >= {Phase.SENSOR, Phase.GENERATION}, record.context.errors
        assert all(u.model == MODEL_ALIAS and u.prompt_tokens > 0 for u in usage)
        assert all(0 < u.completion_tokens <= MAX_TOKENS for u in usage), usage
    assert redrives.lines == []


async def test_with_the_server_stopped_the_turns_fall_back_to_the_heuristics(
    client: TurnClient, model_server: LocalLlmServer, redrives: Redrives
) -> None:
    model_server.stop()
    turn_id = await client.send(customer_says(visitor(), MESSAGES[0], "C-1001"))
    response = await client.response(turn_id, timeout=120)
    record = await client.record(turn_id)

    assert response.status is ResponseStatus.OK and response.text
    fallbacks = {e.phase for e in record.context.errors if e.code == "llm.fallback"}
    assert {Phase.SENSOR, Phase.GENERATION} <= fallbacks
    reasons = [e.message for e in record.context.errors if e.code == "llm.fallback"]
    assert all("APIConnectionError" in reason for reason in reasons), reasons
    assert record.context.token_usage == []
    assert redrives.lines == []
