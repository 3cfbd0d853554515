"""What each LLM call of a turn returned, kept for replays (``TurnContext.llm_calls``).

A turn stage wraps the phase's LLM port in a :class:`RecordingLlm` for the one phase run
and adds :attr:`RecordingLlm.calls` to the context next to the token usage; a replay then
answers the same calls from the record (:mod:`processors.replay.llm`), found by
:func:`call_key`: a hash of everything the call asked, so a changed prompt (a candidate
pack's rule text, another model) is a call the recording lacks, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from processors.llm import LlmError, LlmResult, LlmTask
from schemas.domain.llm_call import MAX_LLM_CALLS, LlmCall
from schemas.domain.phase import Phase
from schemas.domain.usage import TokenUsage
from schemas.fields import MAX_TEXT_CHARS, json_text
from schemas.settings import PhaseSettings

__all__ = ["RecordingLlm", "call_key", "key_of", "recording", "with_calls"]


def call_key(
    *,
    phase: Phase,
    system: str,
    user: str,
    schema_name: str,
    schema: Mapping[str, Any],
    model: str | None,
) -> str:
    """SHA-256 (hex) of what a call asks: equal calls give equal keys, in any process."""
    asked = [phase.value, schema_name, dict(schema), system, user, model]
    text = json.dumps(asked, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def key_of(
    settings: PhaseSettings | None,
    *,
    phase: Phase,
    system: str,
    user: str,
    schema_name: str,
    schema: Mapping[str, Any],
) -> tuple[str, str | None]:
    """The :func:`call_key` of a port call made with the phase's ``settings``, and the model
    the key names (the settings' ``model``; None when unset: the client's default)."""
    model = (settings.model if settings is not None else None) or None
    key = call_key(
        phase=phase, system=system, user=user, schema_name=schema_name, schema=schema, model=model
    )
    return key, model


@dataclass
class RecordingLlm:
    """An :class:`LlmTask` that passes each call to ``inner`` and keeps what came back.

    A call that raised something other than :class:`LlmError` (cancelled, the judge's
    safety-net timeout) is not kept: the phase did not get an answer to replay. Neither is
    one whose record does not validate (an output over the JSON size bound): recording
    never fails a turn."""

    inner: LlmTask
    calls: list[LlmCall] = field(default_factory=list)

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
        key, model = key_of(
            settings, phase=phase, system=system, user=user, schema_name=schema_name, schema=schema
        )
        try:
            result = await self.inner.complete_json(
                phase=phase,
                system=system,
                user=user,
                schema_name=schema_name,
                schema=schema,
                settings=settings,
            )
        except LlmError as exc:
            self._keep(phase, schema_name, key, model, exc.usage, error=str(exc)[:MAX_TEXT_CHARS])
            raise
        self._keep(
            phase,
            schema_name,
            key,
            model,
            result.usage,
            output=json_text(result.data),
            attempts=result.attempts,
        )
        return result

    def _keep(
        self,
        phase: Phase,
        task: str,
        key: str,
        model: str | None,
        usage: list[TokenUsage],
        **answered: Any,
    ) -> None:
        try:
            call = LlmCall(phase=phase, task=task, key=key, model=model, usage=usage, **answered)
        except ValidationError:
            return
        self.calls.append(call)


def recording(llm: LlmTask | None) -> RecordingLlm | None:
    """``llm`` wrapped for one phase run (``None`` stays ``None``: heuristic mode)."""
    return None if llm is None else RecordingLlm(llm)


def with_calls(before: list[LlmCall], llm: RecordingLlm | None) -> list[LlmCall]:
    """The turn's calls so far plus the phase run's, at most :data:`MAX_LLM_CALLS` (the
    later ones are dropped; a replay reports them as not in the recording)."""
    return [*before, *(llm.calls if llm is not None else [])][:MAX_LLM_CALLS]
