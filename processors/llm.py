"""The LLM port: one structured-output call, behind a Protocol so phases never see a client.

Phases ask for a JSON object that follows a JSON schema and get it back with its token usage;
heuristic mode never builds one. :class:`OpenAiLlm` talks to any OpenAI-compatible endpoint
through the ``openai`` client with the client's own retries off (``max_retries=0``), because
the retry policy is ours: bounded by the phase's ``retries``, only for failures a retry can
fix (timeouts, connection errors, 429, 5xx, a reply that is not the JSON object asked for).
The API key goes to the client and nowhere else: not into prompts, errors, reprs or records.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI

from schemas.domain.phase import Phase
from schemas.domain.usage import TokenUsage
from streams.settings import PhaseSettings, Settings

__all__ = ["LlmError", "LlmResult", "LlmTask", "OpenAiLlm", "strict_object"]

_NO_KEY = "not-needed"  # local OpenAI-compatible servers accept any key; the client needs one


def strict_object(**properties: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema object as strict structured output requires it: every property
    required, no other property allowed (optional values are nullable types instead)."""
    return {
        "type": "object",
        "properties": {name: dict(schema) for name, schema in properties.items()},
        "required": list(properties),
        "additionalProperties": False,
    }


class LlmError(Exception):
    """The task could not get a usable answer; callers fall back to their heuristic.

    ``usage`` holds what the failed attempts consumed, so cost analytics stay complete.
    """

    def __init__(self, message: str, usage: list[TokenUsage] | None = None) -> None:
        super().__init__(message)
        self.usage: list[TokenUsage] = usage or []


@dataclass(frozen=True)
class LlmResult:
    """The parsed JSON object, the tokens every attempt consumed, and how many attempts."""

    data: dict[str, Any]
    usage: list[TokenUsage]
    attempts: int


class LlmTask(Protocol):
    """A structured-output completion for one phase."""

    async def complete_json(
        self,
        *,
        phase: Phase,
        system: str,
        user: str,
        schema_name: str,
        schema: Mapping[str, Any],
    ) -> LlmResult: ...


class _Malformed(Exception):
    """The reply arrived but is not the JSON object asked for: worth another attempt."""


_RETRYABLE: tuple[type[Exception], ...] = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
    _Malformed,
)


def _describe(exc: Exception) -> str:
    """A short reason that cannot carry the key: the type and the HTTP status, no bodies."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, _Malformed):
        return f"malformed reply: {exc}"
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")


@dataclass
class OpenAiLlm:
    """:class:`LlmTask` over ``AsyncOpenAI``; per-phase model, timeout and retries come from
    ``settings.phases.<phase>``. ``backoff_s`` doubles per retry (``sleep`` is injectable so
    tests need not wait)."""

    settings: Settings = field(repr=False)
    backoff_s: float = 0.25
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    _clients: dict[Phase, AsyncOpenAI] = field(default_factory=dict, init=False, repr=False)

    def _phase(self, phase: Phase) -> PhaseSettings:
        phase_settings: PhaseSettings = getattr(self.settings.phases, phase.value)
        return phase_settings

    def _client(self, phase: Phase) -> AsyncOpenAI:
        if phase not in self._clients:
            self._clients[phase] = AsyncOpenAI(
                base_url=self.settings.llm_base_url,
                api_key=self.settings.llm_api_key or _NO_KEY,
                timeout=self._phase(phase).timeout_s,
                max_retries=0,
            )
        return self._clients[phase]

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    async def complete_json(
        self,
        *,
        phase: Phase,
        system: str,
        user: str,
        schema_name: str,
        schema: Mapping[str, Any],
    ) -> LlmResult:
        """Ask, parse, retry what a retry can fix; raise :class:`LlmError` otherwise."""
        settings = self._phase(phase)
        client = self._client(phase)
        usage: list[TokenUsage] = []
        attempts = 1 + settings.retries
        reason = "no attempt made"
        for attempt in range(1, attempts + 1):
            try:
                completion = await client.chat.completions.create(
                    model=settings.model,
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                    ],
                    response_format={
                        "type": "json_schema",
                        "json_schema": {
                            "name": schema_name,
                            "schema": dict(schema),
                            "strict": True,
                        },
                    },
                )
                if completion.usage is not None:
                    usage.append(
                        TokenUsage(
                            phase=phase,
                            model=completion.model or settings.model,
                            prompt_tokens=completion.usage.prompt_tokens,
                            completion_tokens=completion.usage.completion_tokens,
                        )
                    )
                return LlmResult(data=_parse(completion), usage=usage, attempts=attempt)
            except _RETRYABLE as exc:
                reason = _describe(exc)
            except openai.OpenAIError as exc:  # 400/401/404...: a retry gives the same answer
                raise LlmError(f"{phase.value}: {_describe(exc)}", usage) from None
            if attempt < attempts:
                await self.sleep(self.backoff_s * 2 ** (attempt - 1))
        raise LlmError(f"{phase.value}: {reason} after {attempts} attempts", usage)


def _parse(completion: Any) -> dict[str, Any]:
    if not completion.choices:
        raise _Malformed("no choices")
    content = completion.choices[0].message.content
    if not content:
        raise _Malformed("empty content")
    try:
        data = json.loads(content)
    except ValueError:
        raise _Malformed("content is not JSON") from None
    if not isinstance(data, dict):
        raise _Malformed("content is not a JSON object")
    return data
