"""P5's LLM filter through the real openai client: used, retried or fallen back to the score
bands, with the same pre-filter and expansion as heuristic mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from processors.phases.rule_selection import (
    FILTER_SCHEMA_NAME,
    RuleSelection,
    Stage,
    select_rules_async,
)
from schemas.domain.phase import Phase
from schemas.domain.rules import RelationshipKind, RuleVerdict
from schemas.domain.usage import TokenUsage
from schemas.pack.agent_pack import AgentPack
from sinks.llm_openai import OpenAiLlm
from sinks.pack_files import load_pack
from streams.settings import PhaseSettings, TaskMode
from tests.fake_openai import (
    MODEL,
    DelayReply,
    FakeOpenAi,
    RawReply,
    StatusReply,
    server_fixture,
)
from tests.test_phase_p5_rule_selection import hits, session

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
API_KEY = "sk-rules-key-never-in-a-prompt"
MESSAGE = "The tent I got is torn, I want a refund."
CANDIDATES = hits(be_polite=0.1, acknowledge_complaints=0.9, tracking_link=0.9)

server = server_fixture()


def verdicts(**by_rule: str) -> dict[str, Any]:
    return {"verdicts": [{"rule_id": r, "verdict": v} for r, v in by_rule.items()]}


GOOD = verdicts(be_polite="APPLIES", acknowledge_complaints="NOT_RELATED")


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def port(server: FakeOpenAi, **options: Any) -> OpenAiLlm:
    return server.llm(Phase.RULE_SELECTION, api_key=API_KEY, **options)


async def select(
    pack: AgentPack,
    llm: OpenAiLlm | None,
    settings: PhaseSettings | None = None,
    candidates: Any = CANDIDATES,
) -> RuleSelection:
    return await select_rules_async(
        candidates,
        pack,
        session(),
        settings=settings or _phase_of(llm),
        llm=llm,
        message=MESSAGE,
    )


def _phase_of(llm: OpenAiLlm | None) -> PhaseSettings:
    """The port's own rule_selection settings: the phase passes them with every call."""
    return llm.settings.phases.rule_selection if llm else PhaseSettings(mode=TaskMode.LLM)


def filter_reasons(selection: RuleSelection) -> dict[str, str]:
    return {t.rule_id: t.reason for t in selection.trace if t.stage is Stage.FILTER}


def asked(request: dict[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = json.loads(request["messages"][1]["content"])
    return user


async def test_the_llm_verdicts_replace_the_score_bands(
    server: FakeOpenAi, pack: AgentPack
) -> None:
    server.script(FILTER_SCHEMA_NAME, GOOD)
    selection = await select(pack, port(server))
    assert selection.llm_error is None
    assert [(a.rule_id, a.verdict) for a in selection.applied] == [
        ("be_polite", RuleVerdict.APPLIES)
    ]
    assert filter_reasons(selection)["acknowledge_complaints"].startswith("llm filter: NOT_RELATED")
    assert selection.usage == [
        TokenUsage(phase=Phase.RULE_SELECTION, model=MODEL, prompt_tokens=11, completion_tokens=7)
    ]


async def test_one_call_asks_about_the_eligible_rules_with_the_message_only(
    server: FakeOpenAi, pack: AgentPack
) -> None:
    server.script(FILTER_SCHEMA_NAME, GOOD)
    await select(pack, port(server))
    (request,) = server.requests
    prompt = asked(request)
    assert prompt["message"] == MESSAGE
    assert [r["rule_id"] for r in prompt["rules"]] == ["be_polite", "acknowledge_complaints"]
    assert set(prompt["rules"][0]) == {"rule_id", "condition"}  # no scores, no customer data
    assert API_KEY not in json.dumps(request)
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["verdicts"]["items"]["properties"]["verdict"]["enum"] == [
        "APPLIES",
        "NOT_RELATED",
        "UNSURE",
    ]


async def test_expansion_follows_the_llm_verdicts(server: FakeOpenAi, pack: AgentPack) -> None:
    server.script(FILTER_SCHEMA_NAME, verdicts(refund_within_tier_limit="APPLIES"))
    selection = await select(pack, port(server), candidates=hits(refund_within_tier_limit=0.1))
    via = {a.rule_id: a.via_relationship for a in selection.applied}
    assert via == {
        "refund_within_tier_limit": None,
        "refund_not_above_order_total": RelationshipKind.IMPLIES,
        "look_up_order_first": RelationshipKind.DEPENDS_ON,
    }


async def test_missing_verdicts_are_unsure_and_unasked_ids_ignored(
    server: FakeOpenAi, pack: AgentPack
) -> None:
    server.script(
        FILTER_SCHEMA_NAME, verdicts(acknowledge_complaints="NOT_RELATED", ghost="APPLIES")
    )
    selection = await select(pack, port(server))
    assert [(a.rule_id, a.verdict) for a in selection.applied] == [
        ("be_polite", RuleVerdict.UNSURE)
    ]
    assert "ghost" not in filter_reasons(selection)


@pytest.mark.parametrize(
    "reply",
    [
        {"verdicts": "all of them"},
        verdicts(be_polite="MAYBE"),
        {"verdicts": [{"verdict": "APPLIES"}]},
    ],
)
async def test_a_reply_that_breaks_the_schema_falls_back_to_the_score_bands(
    server: FakeOpenAi, pack: AgentPack, reply: dict[str, Any]
) -> None:
    server.script(FILTER_SCHEMA_NAME, reply)
    selection = await select(pack, port(server))
    assert selection.rule_ids == (await select(pack, None, PhaseSettings())).rule_ids
    assert selection.llm_error is not None and "unusable LLM reply" in selection.llm_error
    assert len(selection.usage) == 1
    assert all("llm filter failed" in r for r in filter_reasons(selection).values())


async def test_malformed_json_falls_back_and_keeps_the_usage(
    server: FakeOpenAi, pack: AgentPack
) -> None:
    server.script(FILTER_SCHEMA_NAME, RawReply("APPLIES, probably"))
    selection = await select(pack, port(server, retries=0))
    assert selection.rule_ids == ["acknowledge_complaints"]  # by score band
    assert selection.llm_error is not None and "malformed reply" in selection.llm_error
    assert len(selection.usage) == 1


async def test_a_429_is_retried_and_the_second_answer_used(
    server: FakeOpenAi, pack: AgentPack
) -> None:
    server.script(FILTER_SCHEMA_NAME, StatusReply(429, retry_after=0), GOOD)
    selection = await select(pack, port(server))
    assert selection.llm_error is None and selection.rule_ids == ["be_polite"]
    assert len(server.requests_for(FILTER_SCHEMA_NAME)) == 2


async def test_a_timeout_falls_back_to_the_score_bands(server: FakeOpenAi, pack: AgentPack) -> None:
    server.script(FILTER_SCHEMA_NAME, DelayReply(2.0, then=RawReply(json.dumps(GOOD))))
    selection = await select(pack, port(server, timeout_s=0.2, retries=0))
    assert selection.rule_ids == ["acknowledge_complaints"]
    assert selection.llm_error is not None and "APITimeoutError" in selection.llm_error


async def test_heuristic_mode_ignores_the_port_and_calls_nothing(
    server: FakeOpenAi, pack: AgentPack
) -> None:
    selection = await select(pack, port(server), PhaseSettings())
    assert selection == await select(pack, None, PhaseSettings())
    assert server.requests == []


async def test_no_call_without_eligible_rules_or_when_the_phase_is_disabled(
    server: FakeOpenAi, pack: AgentPack
) -> None:
    assert (await select(pack, port(server), candidates=hits(tracking_link=0.9))).applied == []
    disabled = PhaseSettings(mode=TaskMode.LLM, enabled=False)
    selection = await select(pack, port(server), disabled)
    assert {a.rule_id: a.verdict for a in selection.applied} == {
        "be_polite": RuleVerdict.APPLIES,
        "acknowledge_complaints": RuleVerdict.APPLIES,
    }
    assert all(r.startswith("phase disabled: APPLIES") for r in filter_reasons(selection).values())
    assert server.requests == []


async def test_llm_mode_without_a_port_says_so_and_uses_the_score_bands(pack: AgentPack) -> None:
    selection = await select(pack, None)
    assert selection.rule_ids == ["acknowledge_complaints"]
    assert selection.llm_error == "llm mode without an LLM port"
