"""``llm`` mode for real: the packaged SmolLM2-135M behind llama.cpp's server
(``turnstream llm serve``, started here as a child process) and a worker on the real broker
with all four LLM tasks (sensor, rule filter, generation, judge) in ``llm`` mode.

What must hold whatever a 135M model answers: every turn gets a response, the record holds
the token usage the server reported, no completion is longer than ``max_tokens``, the stall
watchdog drives no turn again, and with the server stopped mid-run the turns are answered
by the heuristics with the fallback recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from schemas.domain.phase import Phase
from schemas.events.turn_response import ResponseStatus
from streams.local_llm import MODEL_ALIAS, LocalLlmServer
from streams.settings import Settings
from streams.turn_client import TurnClient
from tests.local_llm_support import (
    MAX_TOKENS,
    llm_pipeline_settings,
    model_server_in,
    pack_without_phase_overrides,
)
from tests.pipeline_support import (
    Redrives,
    customer_says,
    prepare,
    running_worker,
    watching_redrives,
)

pytest.importorskip("xllamacpp", reason="needs the local-llm extra (see .ci/run)")

pytestmark = [pytest.mark.integration, pytest.mark.local_llm]

LLM_PHASES = (Phase.SENSOR, Phase.RULE_SELECTION, Phase.GENERATION, Phase.ENFORCEMENT)
MESSAGE = "where is my order A-10024?"


@pytest.fixture(scope="module")
def redrives() -> Iterator[Redrives]:
    with watching_redrives() as handler:
        yield handler


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLlmServer]:
    with model_server_in(tmp_path_factory.mktemp("llm")) as server:
        yield server


@pytest.fixture(scope="module")
async def client(
    model_server: LocalLlmServer,
    kafka_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    redrives: Redrives,
) -> AsyncIterator[TurnClient]:
    del redrives  # attached before the worker starts
    data_dir = tmp_path_factory.mktemp("local-llm")
    settings = llm_pipeline_settings(kafka_settings, model_server.endpoint, data_dir)
    await prepare(settings, pack_without_phase_overrides(tmp_path_factory.mktemp("pack")))
    async with running_worker(settings), TurnClient(settings, records=True) as turn_client:
        yield turn_client


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
