"""Bounded LLM calls, through the real ``openai`` client against a scripted server on
loopback: a pack's per-phase settings reach each HTTP request, and a turn whose every model
attempt times out makes exactly the calls of its budget (``processors/llm_budget.py``), is
answered by the heuristics, and is not driven again by the stall watchdog on the way."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from processors.llm_budget import LLM_PHASES, stall_problem, turn_llm_budget
from schemas.domain.enforcement import JudgeVerdict
from schemas.domain.phase import Phase
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import ResponseStatus
from sinks.llm_openai import OpenAiLlm
from streams.settings import EnforcementPhaseSettings, PhaseSettings, Settings, TaskMode
from streams.turn_client import TurnClient
from streams.worker import Worker
from tests.fake_openai import MODEL, DelayReply, FakeOpenAi, JsonReply, fake_openai_server
from tests.pipeline_support import (
    customer_says,
    pipeline_settings,
    prepare,
    running_worker,
    watching_redrives,
)
from tests.test_security_helpers import EXAMPLE, Turns

PACK_MODEL = "pack-model"
PACK_TIMEOUT_S = 0.4
PACK_OVERRIDES = f"""
phases:
  generation:
    mode: llm
    model: {PACK_MODEL}
    timeout_s: {PACK_TIMEOUT_S}
    retries: 1
    max_tokens: 77
  enforcement:
    regenerations: 0
"""
REFUND = "I want a refund for order A-10023, it arrived broken"


@pytest.fixture(scope="module")
def turns() -> Turns:
    return Turns.create()


@pytest.fixture
def server() -> Iterator[FakeOpenAi]:
    with fake_openai_server() as fake:
        yield fake


def _pack_with(target: Path, overrides: str) -> Path:
    shutil.copytree(EXAMPLE, target)
    agent = target / "agent.yaml"
    text = agent.read_text()
    head, _, rest = text.partition("phases:")
    tail = rest[rest.index("retrieval:") :]
    agent.write_text(head + overrides.strip() + "\n" + tail)
    return target


def assert_heuristic_fallbacks(record: TurnRecord) -> None:
    """P2, P5 and P9 fell back to their heuristics and said so; the judge's rules are
    NOT_EVALUATED with the judge's failure as the reason."""
    fallbacks = {e.phase for e in record.context.errors if e.code == "llm.fallback"}
    assert fallbacks == {Phase.SENSOR, Phase.RULE_SELECTION, Phase.GENERATION}
    judged = [j for check in record.context.enforcement for j in check.judgements]
    assert judged and all(j.verdict is JudgeVerdict.NOT_EVALUATED for j in judged)
    assert all("judge failed: LlmError" in (j.reason or "") for j in judged)


def _all_llm(base: Settings, url: str, timeout_s: float, retries: int) -> Settings:
    phase = PhaseSettings(mode=TaskMode.LLM, model=MODEL, timeout_s=timeout_s, retries=retries)
    phases = base.phases.model_copy(
        update={
            "sensor": phase,
            "rule_selection": phase,
            "generation": phase,
            "enforcement": EnforcementPhaseSettings(**phase.model_dump(), regenerations=0),
        }
    )
    return base.model_copy(update={"llm_base_url": url, "phases": phases})


async def test_a_packs_generation_model_timeout_retries_and_max_tokens_reach_the_request(
    turns: Turns, server: FakeOpenAi, tmp_path: Path
) -> None:
    pack = turns.add_pack(_pack_with(tmp_path / "pack", PACK_OVERRIDES))
    process = PhaseSettings(mode=TaskMode.HEURISTIC, model="process-model", timeout_s=30.0)
    settings = Settings(
        llm_base_url=server.url, phases={"generation": process.model_dump()}, llm_backoff_s=0
    )
    server.always("reply", DelayReply(5.0, then=JsonReply({})))
    llm = OpenAiLlm(settings)
    deps = turns.deps(settings, {Phase.GENERATION: llm})
    assert deps.settings_for(pack).phases.generation.model == PACK_MODEL

    began = time.perf_counter()
    response, record = await turns.say(REFUND, turn_id="pack-knobs", deps=deps)
    took = time.perf_counter() - began
    await llm.close()

    asked = server.requests_for("reply")
    assert len(asked) == 2  # the pack's retries: 1, not the process's 2
    assert {r["model"] for r in asked} == {PACK_MODEL}
    assert {r["max_tokens"] for r in asked} == {77}
    assert took < 10.0  # two attempts cut at the pack's 0.4 s, not the process's 30 s
    assert response.status is ResponseStatus.OK and response.text
    reasons = [e.message for e in record.context.errors if e.phase is Phase.GENERATION]
    assert reasons == ["generation: APITimeoutError after 2 attempts"]


async def test_every_attempt_timing_out_costs_exactly_the_turn_budget_and_the_heuristics_answer(
    turns: Turns, server: FakeOpenAi, tmp_path: Path
) -> None:
    pack = turns.add_pack(_pack_with(tmp_path / "pack", "phases: {}\n"))  # process settings
    settings = _all_llm(Settings(llm_backoff_s=0.01), server.url, timeout_s=0.3, retries=1)
    server.always(None, DelayReply(5.0))
    llm = OpenAiLlm(settings)
    deps = turns.deps(settings, dict.fromkeys(LLM_PHASES, llm))
    budget = turn_llm_budget(deps.settings_for(pack))

    response, record = await turns.say(REFUND, turn_id="all-late", deps=deps)
    await llm.close()

    assert budget.calls == 8  # 4 phases x (1 + 1 retry), one generation pass
    assert len(server.requests) == budget.calls
    assert response.status is ResponseStatus.OK and response.text
    assert_heuristic_fallbacks(record)
    assert record.context.token_usage == []


def test_a_worker_refuses_a_stall_limit_under_the_turn_budget() -> None:
    settings = _all_llm(Settings(turn_stall_s=20.0), "http://127.0.0.1:9/v1", 10.0, 2)
    problem = stall_problem(settings)
    assert problem is not None
    budget = turn_llm_budget(settings).seconds
    assert "(20 s)" in problem and f"({budget:g} s:" in problem
    with pytest.raises(ValueError, match="TURNSTREAM_TURN_STALL_S"):
        Worker(settings)
    assert stall_problem(settings.model_copy(update={"turn_stall_s": budget + 1})) is None


@pytest.mark.integration
async def test_through_kafka_a_turn_waiting_on_a_dead_model_is_not_driven_again(
    server: FakeOpenAi, kafka_settings: Settings, tmp_path: Path
) -> None:
    """The stall limit just over the budget: the watchdog's heartbeat (the stages are busy
    on the turn) keeps it from driving the turn again, so no re-drive adds calls."""
    base = pipeline_settings(kafka_settings, tmp_path, llm_backoff_s=0.01)
    settings = _all_llm(base, server.url, timeout_s=0.5, retries=1)
    budget = turn_llm_budget(settings)
    stall_over_budget = settings.model_copy(update={"turn_stall_s": budget.seconds + 0.5})
    server.always(None, DelayReply(5.0))
    with watching_redrives() as redrives:
        await prepare(stall_over_budget, _pack_with(tmp_path / "pack", "phases: {}\n"))
        async with (
            running_worker(stall_over_budget),
            TurnClient(stall_over_budget, records=True) as client,
        ):
            turn_id = await client.send(customer_says(f"dead-{uuid.uuid4().hex[:6]}", REFUND))
            response = await client.response(turn_id, timeout=120)
            record = await client.record(turn_id)
    assert response.status is ResponseStatus.OK and response.text
    assert len(server.requests) == budget.calls == 8
    assert_heuristic_fallbacks(record)
    assert redrives.lines == []
