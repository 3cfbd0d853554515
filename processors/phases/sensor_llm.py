"""P2 situational sensor in either mode, behind the one entry point the pipeline calls.

Heuristic mode is :func:`processors.phases.sensor.sense` (its rules are documented there).
LLM mode asks the LLM port for the snapshot as a JSON schema named
:data:`SCHEMA_NAME` and keeps only what it can check, because the snapshot steers every later
phase:

* the prompt holds the message, the last messages, the mask (field definitions and whether a
  value exists, never a value: :func:`sense` refuses anything but a
  :class:`CustomerDataMask`, and it runs first), the glossary and the pack's intents;
* ``language`` must be a BCP 47 tag, ``tone`` one of :data:`TONES`, ``frustration_level`` a
  :class:`FrustrationLevel`, ``intent_changed`` and ``topic_changed`` booleans: anything else
  makes the whole reply unusable;
* a ``new_intent_label`` that is not one of the pack's intents becomes null, and with no
  intent there is no intent change;
* candidate variables for keys the mask does not list are dropped, as are values that are
  not a non-empty string (at most :data:`MAX_VALUE_CHARS`), a finite number or a boolean;
  ``scope`` and ``is_update`` come from the mask (a field's scope and whether it already has
  a value are facts the mask holds, not guesses);
* situation facts: strings only, at most :data:`MAX_FACTS`, each cut to
  :data:`MAX_FACT_CHARS`.

An unusable reply or an :class:`LlmError` gives the heuristic snapshot, with ``llm_error``
saying why (never the reply's content) and the token usage kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from processors.llm import LlmError, LlmTask, strict_object
from processors.phases.sensor import CustomerDataMask, sense
from schemas.domain.phase import Phase
from schemas.domain.session import SessionMessage
from schemas.domain.snapshot import (
    CandidateVariable,
    FrustrationLevel,
    LanguageTag,
    SituationalSnapshot,
)
from schemas.domain.usage import TokenUsage
from schemas.fields import json_text
from schemas.pack.language import GlossaryTerm, Intent
from schemas.settings import PhaseSettings, TaskMode

__all__ = [
    "MAX_FACTS",
    "MAX_FACT_CHARS",
    "MAX_VALUE_CHARS",
    "SCHEMA_NAME",
    "TONES",
    "SensorOutcome",
    "run_sensor",
]

SCHEMA_NAME = "situational_snapshot"
TONES = ("neutral", "polite", "urgent", "annoyed", "frustrated", "angry")
"""The heuristic's tones: one vocabulary for both modes, so later phases need not care."""
MAX_FACTS = 20
MAX_CANDIDATES_PER_FIELD = 2
"""The schema's bound on candidate values per customer-data field (``maxItems``): a small
model that repeats itself stops at the grammar, not at ``max_tokens``."""
MAX_FACT_CHARS = 300
MAX_VALUE_CHARS = 1000
_EXAMPLES_SHOWN = 3
_LEVELS = tuple(level.value for level in FrustrationLevel)
_LANGUAGE: TypeAdapter[str] = TypeAdapter(LanguageTag)

_SYSTEM = (
    "You read the latest customer message for a customer-service agent, before anything is "
    "looked up. Report: its language as a BCP 47 tag; whether the customer's intent changed "
    "from the earlier messages, and the new intent as one of the listed intent labels (null "
    "when none fits); whether the topic changed; the tone; the frustration level; a few short "
    "facts about the situation; and the values the customer gave in this message for the "
    "listed customer data fields. Use only the listed field keys and never invent a value: "
    "report a field only when the message states it."
)


class _Unusable(ValueError):
    """The reply breaks the schema; the message names the field, never its content."""


@dataclass(frozen=True)
class SensorOutcome:
    """P2's result; ``llm_error`` says why LLM mode fell back to the heuristic snapshot."""

    snapshot: SituationalSnapshot
    usage: list[TokenUsage] = field(default_factory=list)
    llm_error: str | None = None


def _schema(mask: CustomerDataMask, labels: Sequence[str]) -> dict[str, Any]:
    keys = [f.key for f in mask.fields]
    key_schema: dict[str, Any] = {"type": "string", "enum": keys} if keys else {"type": "string"}
    candidate = strict_object(key=key_schema, value={"type": ["string", "number", "boolean"]})
    return strict_object(
        language={"type": "string"},
        intent_changed={"type": "boolean"},
        new_intent_label={"type": ["string", "null"], "enum": [*labels, None]},
        topic_changed={"type": "boolean"},
        tone={"type": "string", "enum": list(TONES)},
        frustration_level={"type": "string", "enum": list(_LEVELS)},
        situation_facts={"type": "array", "items": {"type": "string"}, "maxItems": MAX_FACTS},
        candidate_variables={
            "type": "array",
            "items": candidate,
            "maxItems": max(1, len(keys)) * MAX_CANDIDATES_PER_FIELD,
        },
    )


def _prompt(
    message: str,
    mask: CustomerDataMask,
    glossary: Sequence[GlossaryTerm],
    last_messages: Sequence[SessionMessage],
    intents: Sequence[Intent],
    default_language: str,
) -> str:
    return json.dumps(
        {
            "message": message,
            "earlier_messages": [{"role": m.role.value, "text": m.text} for m in last_messages],
            "customer_data_fields": mask.model_dump(mode="json")["fields"],
            "glossary": [
                {"term": t.term, "definition": t.definition, "synonyms": t.synonyms}
                for t in glossary
            ],
            "intents": [
                {
                    "label": i.id,
                    "description": i.description,
                    "examples": i.examples[:_EXAMPLES_SHOWN],
                }
                for i in intents
            ],
            "default_language": default_language,
        },
        ensure_ascii=False,
    )


def _typed(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise _Unusable(f"{key} is not a {kind.__name__}")
    return value


def _value(value: object) -> str | float | bool | None:
    """The value when it is one a field can take, else None (the candidate is dropped)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and 0 < len(value.strip()) <= MAX_VALUE_CHARS:
        return value.strip()
    return None


def _candidates(items: list[Any], mask: CustomerDataMask) -> dict[str, CandidateVariable]:
    fields = {f.key: f for f in mask.fields}
    found: dict[str, CandidateVariable] = {}
    for item in items:
        if not isinstance(item, dict):
            raise _Unusable("a candidate variable is not an object")
        key, value = item.get("key"), _value(item.get("value"))
        masked = fields.get(key) if isinstance(key, str) else None
        if masked is None or value is None or masked.key in found:
            continue
        found[masked.key] = CandidateVariable(
            value=json_text(value), scope=masked.scope, is_update=masked.exists
        )
    return found


def _read(
    data: Mapping[str, Any], message: str, mask: CustomerDataMask, labels: Collection[str]
) -> SituationalSnapshot:
    """The snapshot the reply describes, by the checks of the module docstring."""
    tone = _typed(data, "tone", str)
    if tone not in TONES:
        raise _Unusable("tone is not one of the tones")
    level = _typed(data, "frustration_level", str)
    if level not in _LEVELS:
        raise _Unusable("frustration_level is not a level")
    language = _typed(data, "language", str)
    try:
        _LANGUAGE.validate_python(language)
    except ValidationError:
        raise _Unusable("language is not a BCP 47 tag") from None
    label = data.get("new_intent_label")
    label = label if isinstance(label, str) and label in labels else None
    facts = [
        f.strip()[:MAX_FACT_CHARS]
        for f in _typed(data, "situation_facts", list)
        if isinstance(f, str)
    ]
    return SituationalSnapshot(
        language=language,
        intent_changed=_typed(data, "intent_changed", bool) and label is not None,
        new_intent_label=label,
        new_intent_text=message if label else None,
        topic_changed=_typed(data, "topic_changed", bool),
        tone=tone,
        frustration_level=FrustrationLevel(level),
        situation_facts=[f for f in facts if f][:MAX_FACTS],
        candidate_variables=_candidates(_typed(data, "candidate_variables", list), mask),
    )


async def run_sensor(
    message: str,
    mask: CustomerDataMask,
    glossary: Sequence[GlossaryTerm],
    last_messages: Sequence[SessionMessage],
    intents: Sequence[Intent] | None,
    *,
    expected_fields: Collection[str] = (),
    default_language: str = "en",
    mode: TaskMode,
    llm: LlmTask | None,
    settings: PhaseSettings | None = None,
) -> SensorOutcome:
    """P2 in ``mode`` (see the module docstring); never raises for anything the LLM does."""
    heuristic = sense(
        message,
        mask,
        glossary,
        last_messages,
        intents,
        expected_fields=expected_fields,
        default_language=default_language,
    )
    if mode is TaskMode.HEURISTIC:
        return SensorOutcome(heuristic)
    if llm is None:
        return SensorOutcome(heuristic, [], "llm mode without an LLM port")
    intents = intents or []
    labels = [i.id for i in intents]
    try:
        result = await llm.complete_json(
            phase=Phase.SENSOR,
            system=_SYSTEM,
            user=_prompt(message, mask, glossary, last_messages, intents, default_language),
            schema_name=SCHEMA_NAME,
            schema=_schema(mask, labels),
            settings=settings,
        )
    except LlmError as exc:
        return SensorOutcome(heuristic, exc.usage, str(exc))
    try:
        snapshot = _read(result.data, message, mask, frozenset(labels))
    except _Unusable as exc:
        return SensorOutcome(heuristic, result.usage, f"unusable LLM reply: {exc}")
    except (TypeError, ValueError) as exc:  # a value the snapshot model refuses
        return SensorOutcome(heuristic, result.usage, f"unusable LLM reply: {type(exc).__name__}")
    return SensorOutcome(snapshot, result.usage)
