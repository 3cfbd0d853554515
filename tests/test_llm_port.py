"""The LLM port through the real openai client against a scripted local HTTP server."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from processors.llm import LlmError
from schemas.domain.phase import Phase
from sinks.llm_openai import OpenAiLlm
from tests.fake_openai import (
    MODEL,
    DelayReply,
    FakeOpenAi,
    JsonReply,
    RawReply,
    StatusReply,
    llm_phase,
    server_fixture,
)

SECRET = "sk-test-never-show-me"
SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}

server = server_fixture()


def port(server: FakeOpenAi, **options: Any) -> OpenAiLlm:
    return server.llm(Phase.GENERATION, api_key=SECRET, **options)


async def ask(port: OpenAiLlm) -> Any:
    return await port.complete_json(
        phase=Phase.GENERATION, system="sys", user="hello", schema_name="reply", schema=SCHEMA
    )


async def test_a_good_reply_is_parsed_and_its_usage_recorded(server: FakeOpenAi) -> None:
    server.script("reply", {"text": "Hi there"})
    result = await ask(port(server))
    assert result.data == {"text": "Hi there"}
    assert result.attempts == 1
    (usage,) = result.usage
    assert (usage.phase, usage.model, usage.prompt_tokens, usage.completion_tokens) == (
        Phase.GENERATION,
        MODEL,
        11,
        7,
    )
    (request,) = server.requests
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"] == SCHEMA
    assert SECRET not in json.dumps(request)


async def test_a_malformed_reply_is_retried(server: FakeOpenAi) -> None:
    server.script("reply", RawReply("this is not json"), {"text": "ok"})
    result = await ask(port(server))
    assert result.data == {"text": "ok"} and result.attempts == 2
    assert len(result.usage) == 2  # the malformed attempt cost tokens too


async def test_a_429_is_retried(server: FakeOpenAi) -> None:
    server.script("reply", StatusReply(429, retry_after=0), {"text": "ok"})
    result = await ask(port(server))
    assert result.data == {"text": "ok"} and result.attempts == 2
    assert len(server.requests) == 2


async def test_a_timeout_raises_after_the_bounded_retries(server: FakeOpenAi) -> None:
    server.script("reply", DelayReply(1.0), DelayReply(1.0))
    slow = port(server, timeout_s=0.2, retries=1)
    with pytest.raises(LlmError) as raised:
        await ask(slow)
    assert "APITimeoutError" in str(raised.value) and "2 attempts" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert SECRET not in repr(slow)


async def test_a_client_error_is_not_retried(server: FakeOpenAi) -> None:
    server.script("reply", StatusReply(400), {"text": "never"})
    with pytest.raises(LlmError, match="HTTP 400"):
        await ask(port(server))
    assert len(server.requests) == 1


async def test_a_schema_without_a_script_gets_the_default_or_a_500(
    server: FakeOpenAi,
) -> None:
    with pytest.raises(LlmError, match="HTTP 500"):
        await ask(port(server, retries=0))
    server.always(None, {"text": "default"})
    assert (await ask(port(server))).data == {"text": "default"}


async def test_retries_wait_a_jittered_backoff_that_doubles(server: FakeOpenAi) -> None:
    server.script("reply", StatusReply(500), StatusReply(500), {"text": "ok"})
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    llm = OpenAiLlm(
        server.settings(**{"generation": llm_phase(retries=2)}),
        backoff_s=1.0,
        sleep=sleep,
        rng=random.Random(7),
    )
    result = await ask(llm)
    expected = random.Random(7)
    assert result.attempts == 3
    assert waits == [expected.uniform(0, 1.0), expected.uniform(0, 2.0)]
    assert 0 <= waits[0] <= 1.0 and 0 <= waits[1] <= 2.0


async def test_the_endpoint_bound_caps_the_requests_in_flight(server: FakeOpenAi) -> None:
    server.always("reply", DelayReply(0.3, then=JsonReply({"text": "ok"})))
    settings = server.settings(**{"generation": llm_phase()}).model_copy(
        update={"llm_max_in_flight": 2}
    )
    llm = OpenAiLlm(settings, backoff_s=0)
    results = await asyncio.gather(*(ask(llm) for _ in range(6)))
    await llm.close()
    assert [r.data for r in results] == [{"text": "ok"}] * 6
    assert llm.in_flight_max == 2 and llm.in_flight == 0
    assert len(server.requests) == 6


async def test_the_calls_settings_set_model_max_tokens_and_timeout(server: FakeOpenAi) -> None:
    server.script("reply", DelayReply(1.0), {"text": "ok"})
    llm = OpenAiLlm(server.settings(), backoff_s=0)  # the process's generation: 10 s, 2 retries
    given = llm_phase(timeout_s=0.2, retries=1).model_copy(
        update={"model": "per-call", "max_tokens": 33}
    )
    result = await llm.complete_json(
        phase=Phase.GENERATION,
        system="sys",
        user="hello",
        schema_name="reply",
        schema=SCHEMA,
        settings=given,
    )
    await llm.close()
    assert result.attempts == 2  # the first attempt was cut at 0.2 s, not 10 s
    assert [(r["model"], r["max_tokens"]) for r in server.requests] == [("per-call", 33)] * 2
