"""The LLM port over any OpenAI-compatible endpoint, through the ``openai`` client.

The client's own retries are off (``max_retries=0``), because the retry policy is ours: bounded
by the phase's ``retries``, with jittered backoff, only for failures a retry can fix (timeouts,
connection errors, 429, 5xx, a reply that is not the JSON object asked for). Each attempt is
bounded in time (``timeout_s``) and in tokens (``max_tokens``), so a timed-out attempt the
server still computes stops at that bound too. The API key goes to the client and nowhere else:
not into prompts, errors, reprs or records.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import AsyncOpenAI

from processors.llm import LlmError, LlmResult, retry_backoff
from schemas.domain.phase import Phase
from schemas.domain.usage import TokenUsage
from schemas.settings import PhaseSettings, Settings

__all__ = ["OpenAiLlm"]

_NO_KEY = "not-needed"  # local OpenAI-compatible servers accept any key; the client needs one


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
    """:class:`~processors.llm.LlmTask` over ``AsyncOpenAI``, one client per endpoint.

    Every call uses the phase settings it is given (the pack-merged ones: model,
    ``timeout_s`` per attempt, ``retries``, ``max_tokens``); without them, the process's
    ``settings.phases.<phase>``. At most ``settings.llm_max_in_flight`` requests are in
    flight at once (a semaphore: waiting for the model is not CPU work, so the bound is the
    endpoint's, not the worker's actors). A retry waits a random time up to
    ``backoff_s * 2**(retry-1)`` (full jitter, so that calls failing together do not retry
    together); ``sleep`` and ``rng`` are injectable for tests."""

    settings: Settings = field(repr=False)
    backoff_s: float | None = None
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)
    in_flight: int = field(default=0, init=False)
    in_flight_max: int = field(default=0, init=False)
    """The most requests in flight at once since start (benchmarks read it)."""
    _client_: AsyncOpenAI | None = field(default=None, init=False, repr=False)
    _slots: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    @property
    def backoff(self) -> float:
        return self.settings.llm_backoff_s if self.backoff_s is None else self.backoff_s

    def _client(self) -> AsyncOpenAI:
        if self._client_ is None:
            self._client_ = AsyncOpenAI(
                base_url=self.settings.llm_base_url,
                api_key=self.settings.llm_api_key or _NO_KEY,
                max_retries=0,
            )
        return self._client_

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:  # made in the running loop, on first use
            self._slots = asyncio.Semaphore(self.settings.llm_max_in_flight)
        return self._slots

    async def close(self) -> None:
        if self._client_ is not None:
            await self._client_.close()
            self._client_ = None

    async def complete_json(
        self,
        *,
        phase: Phase,
        system: str,
        user: str,
        schema_name: str,
        schema: Mapping[str, Any],
        settings: PhaseSettings | None = None,
    ) -> LlmResult:
        """Ask, parse, retry what a retry can fix; raise :class:`LlmError` otherwise."""
        settings = settings or getattr(self.settings.phases, phase.value)
        assert isinstance(settings, PhaseSettings)
        usage: list[TokenUsage] = []
        attempts = 1 + settings.retries
        reason = "no attempt made"
        for attempt in range(1, attempts + 1):
            try:
                completion = await self._ask(settings, system, user, schema_name, schema)
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
                await self.sleep(retry_backoff(self.backoff).delay(attempt, self.rng.random))
        raise LlmError(f"{phase.value}: {reason} after {attempts} attempts", usage)

    async def _ask(
        self,
        settings: PhaseSettings,
        system: str,
        user: str,
        schema_name: str,
        schema: Mapping[str, Any],
    ) -> Any:
        async with self._semaphore():
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
            try:
                return await self._client().chat.completions.create(
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
                    max_tokens=settings.max_tokens,
                    timeout=settings.timeout_s,
                )
            finally:
                self.in_flight -= 1


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
