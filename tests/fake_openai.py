"""A scripted OpenAI-compatible HTTP server on loopback, for tests through the real client.

Why a server and not a mocked client: retries, timeouts, status handling and the request body
are the ``openai`` client's own behaviour, and only a real HTTP exchange tests them.

Replies are scripted per JSON schema name (``response_format.json_schema.name``, the
``schema_name`` a phase passes to the LLM port): :meth:`FakeOpenAi.script` queues replies
that are used once each, in order; :meth:`FakeOpenAi.always` sets the reply used when that
queue is empty. A name with neither uses the default (``schema_name=None``); with no default
either, the server answers 500 "unscripted". A reply is one of :class:`JsonReply` (the
object as the message content, with usage numbers; a plain mapping is short for it),
:class:`RawReply` (any content, e.g. malformed JSON), :class:`StatusReply` (an HTTP error,
optionally with ``Retry-After``) or :class:`DelayReply` (wait, then answer, to trigger a
client timeout). Every request body is recorded in :attr:`FakeOpenAi.requests`. Tests use the
:func:`fake_openai_server` context manager or the :func:`server_fixture` fixture.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from schemas.domain.phase import Phase
from sinks.llm_openai import OpenAiLlm
from streams.settings import PhaseSettings, PhasesSettings, Settings, TaskMode

__all__ = [
    "MODEL",
    "DelayReply",
    "FakeOpenAi",
    "JsonReply",
    "RawReply",
    "Reply",
    "StatusReply",
    "fake_openai_server",
    "llm_phase",
    "server_fixture",
]

MODEL = "test-model"
_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})


@dataclass(frozen=True)
class RawReply:
    """``content`` verbatim as the assistant message (malformed JSON included)."""

    content: str
    prompt_tokens: int = 11
    completion_tokens: int = 7


@dataclass(frozen=True)
class JsonReply:
    """A JSON object as the assistant message."""

    data: Mapping[str, Any]
    prompt_tokens: int = 11
    completion_tokens: int = 7

    def raw(self) -> RawReply:
        return RawReply(json.dumps(self.data), self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True)
class StatusReply:
    """An HTTP error with an OpenAI-style error body (429 with ``retry_after``, 500, 400...)."""

    status: int
    retry_after: float | None = None
    message: str = "scripted error"


@dataclass(frozen=True)
class DelayReply:
    """Wait ``seconds`` (cut short when the server stops), then answer with ``then``."""

    seconds: float
    then: JsonReply | RawReply | StatusReply = field(default_factory=lambda: JsonReply({}))


Reply = JsonReply | RawReply | StatusReply | DelayReply


def _completion(model: str, reply: RawReply) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def _schema_name(body: Mapping[str, Any]) -> str | None:
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    schema = response_format.get("json_schema")
    name = schema.get("name") if isinstance(schema, dict) else None
    return name if isinstance(name, str) else None


class FakeOpenAi:
    """The script and the record of one server; see the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[dict[str, Any]] = []
        self._queues: defaultdict[str | None, deque[Reply]] = defaultdict(deque)
        self._always: dict[str | None, Reply] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def script(self, schema_name: str | None, *replies: Reply | Mapping[str, Any]) -> None:
        """Queue ``replies`` for requests with this schema name, each used once."""
        with self._lock:
            self._queues[schema_name].extend(_reply(r) for r in replies)

    def always(self, schema_name: str | None, reply: Reply | Mapping[str, Any]) -> None:
        """The reply for this schema name whenever its queue is empty."""
        with self._lock:
            self._always[schema_name] = _reply(reply)

    def requests_for(self, schema_name: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if _schema_name(r) == schema_name]

    def prompts(self) -> str:
        """Every message of every request, as one text, for "never in a prompt" checks."""
        with self._lock:
            return json.dumps([r.get("messages") for r in self.requests], ensure_ascii=False)

    def settings(self, api_key: str | None = None, **phases: PhaseSettings) -> Settings:
        """Settings pointing the LLM port at this server, with the given phase settings."""
        return Settings(llm_base_url=self.url, llm_api_key=api_key, phases=PhasesSettings(**phases))

    def llm(
        self,
        phase: Phase,
        *,
        api_key: str | None = None,
        timeout_s: float = 5.0,
        retries: int = 2,
    ) -> OpenAiLlm:
        """The real LLM port on this server, ``phase`` in LLM mode, retrying without backoff."""
        phase_settings = llm_phase(timeout_s=timeout_s, retries=retries)
        return OpenAiLlm(self.settings(api_key, **{phase.value: phase_settings}), backoff_s=0)

    def next_reply(self, body: dict[str, Any]) -> Reply | None:
        """Record ``body`` and take its reply (None: nothing scripted)."""
        name = _schema_name(body)
        with self._lock:
            self.requests.append(body)
            for key in (name, None):
                if self._queues[key]:
                    return self._queues[key].popleft()
                if key in self._always:
                    return self._always[key]
        return None


def _reply(reply: Reply | Mapping[str, Any]) -> Reply:
    if isinstance(reply, JsonReply | RawReply | StatusReply | DelayReply):
        return reply
    return JsonReply(reply)


def llm_phase(*, timeout_s: float = 5.0, retries: int = 2) -> PhaseSettings:
    """Phase settings in LLM mode with the model name the server echoes."""
    return PhaseSettings(mode=TaskMode.LLM, model=MODEL, timeout_s=timeout_s, retries=retries)


def _handler(fake: FakeOpenAi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            del format, args

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            if self.path not in _PATHS:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            reply = fake.next_reply(body)
            if isinstance(reply, DelayReply):
                if fake.stopping.wait(reply.seconds):
                    return
                reply = reply.then
            if reply is None:
                name = _schema_name(body)
                self._send(500, {"error": {"message": f"unscripted schema {name}"}})
            elif isinstance(reply, StatusReply):
                headers = {} if reply.retry_after is None else {"Retry-After": reply.retry_after}
                self._send(reply.status, {"error": {"message": reply.message}}, headers)
            else:
                raw = reply.raw() if isinstance(reply, JsonReply) else reply
                self._send(200, _completion(str(body.get("model", MODEL)), raw))

        def _send(
            self, status: int, payload: object, headers: Mapping[str, object] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, str(value))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout): nothing left to answer

    return Handler


def server_fixture() -> Any:
    """A pytest fixture named ``server`` serving one test; a module declares it with
    ``server = server_fixture()``, so the shared conftest stays free of it."""

    @pytest.fixture
    def server() -> Iterator[FakeOpenAi]:
        with fake_openai_server() as fake:
            yield fake

    return server


@contextmanager
def fake_openai_server() -> Iterator[FakeOpenAi]:
    """A running server on a free loopback port; ``.url`` is the base URL (``.../v1``)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    fake = FakeOpenAi(f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    httpd.RequestHandlerClass = _handler(fake)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()
