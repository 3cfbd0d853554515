"""The LLM port: one structured-output call, behind a Protocol so phases never see a client.

Phases ask for a JSON object that follows a JSON schema and get it back with its token usage;
heuristic mode never builds one. The implementation over the ``openai`` client is
:class:`sinks.llm_openai.OpenAiLlm` (network I/O lives in ``sinks/``); this module holds what
every implementation and every caller shares: the result and error types, the strict-schema
helper, and the time bound of one call under a phase's retry policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from processors.backoff import Backoff
from schemas.domain.phase import Phase
from schemas.domain.usage import TokenUsage
from schemas.settings import PhaseSettings

__all__ = [
    "LlmError",
    "LlmResult",
    "LlmTask",
    "backoff_cap",
    "call_budget_s",
    "retry_backoff",
    "strict_object",
]


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
        settings: PhaseSettings | None = None,
    ) -> LlmResult:
        """``settings``: the turn's (pack-merged) phase settings; an implementation that
        takes its own (a test double) may ignore them."""
        ...


def call_budget_s(phase: PhaseSettings, backoff_s: float) -> float:
    """The longest one structured-output call can take, waiting for a free slot
    aside: every attempt timing out, with the longest backoff before each retry."""
    backoffs = sum(backoff_cap(backoff_s, retry) for retry in range(1, phase.retries + 1))
    return (1 + phase.retries) * phase.timeout_s + backoffs


def retry_backoff(backoff_s: float) -> Backoff:
    """The wait before retry ``n`` (1-based): up to ``backoff_s * 2**(n-1)``, drawn uniformly
    from zero (full jitter), uncapped: the phase's few retries bound it."""
    return Backoff(backoff_s, math.inf, low=0.0, high=1.0)


def backoff_cap(backoff_s: float, retry: int) -> float:
    """The longest wait before retry number ``retry`` (1-based)."""
    return retry_backoff(backoff_s).ceiling(retry)
