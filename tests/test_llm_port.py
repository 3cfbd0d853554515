"""The LLM port through the real openai client against a scripted local HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from processors.llm import LlmError, OpenAiLlm
from schemas.domain.phase import Phase
from streams.settings import PhaseSettings, PhasesSettings, Settings

SECRET = "sk-test-never-show-me"
SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}


def completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


class Scripted:
    def __init__(self) -> None:
        self.replies: list[tuple[str, Any]] = []
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Scripted]]:
    script = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            script.requests.append(json.loads(body))
            kind, value = script.replies.pop(0)
            if kind == "sleep":
                time.sleep(value)
                kind, value = "json", completion('{"text": "late"}')
            status = value if kind == "status" else 200
            payload = json.dumps(
                value if kind == "json" else {"error": {"message": "slow down"}}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def llm(base_url: str, *, timeout_s: float = 5.0, retries: int = 2) -> OpenAiLlm:
    phase = PhaseSettings(mode="llm", model="test-model", timeout_s=timeout_s, retries=retries)
    settings = Settings(
        llm_base_url=base_url, llm_api_key=SECRET, phases=PhasesSettings(generation=phase)
    )
    return OpenAiLlm(settings, backoff_s=0)


async def ask(port: OpenAiLlm) -> Any:
    return await port.complete_json(
        phase=Phase.GENERATION, system="sys", user="hello", schema_name="reply", schema=SCHEMA
    )


async def test_a_good_reply_is_parsed_and_its_usage_recorded(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [("json", completion('{"text": "Hi there"}'))]
    result = await ask(llm(url))
    assert result.data == {"text": "Hi there"}
    assert result.attempts == 1
    (usage,) = result.usage
    assert (usage.phase, usage.model, usage.prompt_tokens, usage.completion_tokens) == (
        Phase.GENERATION,
        "test-model",
        11,
        7,
    )
    (request,) = script.requests
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"] == SCHEMA
    assert SECRET not in json.dumps(request)


async def test_a_malformed_reply_is_retried(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [
        ("json", completion("this is not json")),
        ("json", completion('{"text": "ok"}')),
    ]
    result = await ask(llm(url))
    assert result.data == {"text": "ok"} and result.attempts == 2
    assert len(result.usage) == 2  # the malformed attempt cost tokens too


async def test_a_429_is_retried(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [("status", 429), ("json", completion('{"text": "ok"}'))]
    result = await ask(llm(url))
    assert result.data == {"text": "ok"} and result.attempts == 2
    assert len(script.requests) == 2


async def test_a_timeout_raises_after_the_bounded_retries(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [("sleep", 1.0), ("sleep", 1.0)]
    with pytest.raises(LlmError) as raised:
        await ask(llm(url, timeout_s=0.2, retries=1))
    assert "APITimeoutError" in str(raised.value) and "2 attempts" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert SECRET not in repr(llm(url))


async def test_a_client_error_is_not_retried(server: tuple[str, Scripted]) -> None:
    url, script = server
    script.replies = [("status", 400), ("json", completion('{"text": "never"}'))]
    with pytest.raises(LlmError, match="HTTP 400"):
        await ask(llm(url))
    assert len(script.requests) == 1
