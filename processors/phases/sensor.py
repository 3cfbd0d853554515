"""P2 situational sensor, heuristic mode: read the message before anything is retrieved.

Why heuristics: the sensor runs on every turn before retrieval, so its default must be fast,
free and predictable; an LLM sensor can replace it behind the same output. Every rule below
is deterministic (no clocks, no randomness, no dict-order dependence).

**Privacy.** The sensor sees a :class:`CustomerDataMask` (field -> scope, type, exists and the
pack's extraction hints), never a value. The mask is built only by :func:`mask_customer_data`,
has no field that could hold a value (extra fields are refused), and :func:`sense` refuses any
other type at run time, so customer values cannot reach it (or a prompt built from it).

Rules:

* **language** — each word scores ``1 / n`` for each of the ``n`` stopword profiles
  (en, es, fr, de, it, pt, nl) that list it; the best total wins; no hit, or a tie with the
  default language among the best, gives ``default_language``; other ties go to the
  alphabetically first.
* **frustration** — points: each lexicon hit 1 (strong words 2); shouting (two or more words
  of 3+ letters in capitals making at least half the letters) 2; ``!!`` 1, three or more
  ``!`` 2; each earlier customer message in ``last_messages`` with a lexicon hit 1 (at most 2);
  repeating the previous customer message (word overlap >= 0.6) 1. Level: 0 NONE, 1 LOW,
  2-3 MEDIUM, 4+ HIGH.
* **tone** — HIGH ``angry``, MEDIUM ``frustrated``, an urgency word ``urgent``, LOW
  ``annoyed``, a politeness word ``polite``, else ``neutral`` (first that applies).
* **intent** (only with ``intents``) — Dice overlap of content words (stopwords dropped,
  light stemming) between the message and each example phrase (:mod:`processors.intents`,
  shared with P4's canonical intent); an intent's score is its best example; the best intent
  with score >= ``INTENT_THRESHOLD`` is the message's intent (``new_intent_label``,
  ``new_intent_text`` = the message). The previous customer message is classified the same
  way; ``intent_changed`` when this message has an intent that differs from it,
  ``topic_changed`` when both have one and they differ.
* **candidate variables**, per masked field, in field order:
  1. ``patterns`` (safe regexes, as ``matches`` compiles them; ignoring case with the
     field's ``ignore_case``): the first match, trailing punctuation stripped, in
     ``normalize_case`` when given;
  2. STRING with ``allowed_values``: the value whose words (or the field's own ``synonyms``)
     occur earliest in the message, only when a keyword of the field occurs (or, without
     keywords, a word of the field's key such as ``tier``), or when the field is in
     ``expected_fields`` (the question asked for it, so "the Plus one" answers it);
  3. BOOLEAN: only when the field is in ``expected_fields`` (a "yes" means something only as
     the answer to the question that asked for it): the yes/no lexicon of
     :mod:`processors.phases.lexicon` (a no wins), else a keyword of the field gives True;
  4. NUMBER: the first number after a keyword; an expected field without a keyword hit takes
     the message's only number;
  5. DATETIME with a keyword hit or expected: the first date phrase
     (:func:`processors.phases.dates.find_date`; P3 resolves it against the turn's time);
  6. other STRING fields with keywords: ``<keyword> is|:|= <value>`` up to punctuation; an
     expected ``free_text`` field takes the whole message (not a bare yes/no/thanks).
  ``is_update`` is the mask's ``exists``.
* **situation facts** — glossary terms (or synonyms) the message mentions, the fields it
  gave, and the frustration cues found.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import lru_cache

from processors.expression_regex import UnsafePatternError, compile_safe
from processors.intents import classify_intent, content_words, dice
from processors.phases.dates import find_date
from processors.phases.lexicon import affirmation, is_acknowledgement
from processors.stopwords import LANGUAGE_PROFILES, lower_words, wordset
from schemas.base import SchemaModel
from schemas.domain.customer_data import CustomerDataStore, VariableScope, VariableType
from schemas.domain.session import MessageRole, SessionMessage
from schemas.domain.snapshot import CandidateVariable, FrustrationLevel, SituationalSnapshot
from schemas.fields import json_text
from schemas.pack.fields import CustomerDataField
from schemas.pack.language import GlossaryTerm, Intent

__all__ = [
    "CustomerDataMask",
    "MaskedField",
    "detect_language",
    "frustration",
    "mask_customer_data",
    "sense",
]

_FRUSTRATION_WORDS = wordset(
    "again angry annoyed annoying awful bad complaint disappointed disappointing frustrated "
    "frustrating horrible inacceptable inaceptable never nobody nul pessimo péssimo schlecht "
    "still terrible waited waiting worse"
)
_STRONG_WORDS = wordset(
    "disgusting furious incompetent joke outrageous pathetic ridiculous scam unacceptable "
    "useless worst"
)
_FRUSTRATION_PHRASES = ("fed up", "third time", "waste of time", "nobody helps", "sick of")
_URGENT_WORDS = wordset("asap emergency immediately now urgent urgently")
_POLITE_WORDS = wordset(
    "bedankt danke favor gracias grazie kindly merci obrigada obrigado please thank thanks thx"
)
_TRAILING = ".,;:!?)]}\"'"


class MaskedField(SchemaModel):
    """What the sensor may know of one field: its definition and whether a value exists."""

    key: str
    scope: VariableScope
    type: VariableType
    exists: bool
    allowed_values: tuple[str, ...] | None = None
    patterns: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    ignore_case: bool = False
    normalize_case: str | None = None
    synonyms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    free_text: bool = False


class CustomerDataMask(SchemaModel):
    """The customer data as the sensor sees it: field definitions and presence, no values."""

    fields: tuple[MaskedField, ...]

    def exists(self, key: str) -> bool:
        return any(field.key == key and field.exists for field in self.fields)


def mask_customer_data(
    fields: Iterable[CustomerDataField], store: CustomerDataStore | None
) -> CustomerDataMask:
    """The mask of ``store`` over the pack's ``fields``: only the store's keys are read."""
    present = set(store.variables) if store is not None else set()
    fields = tuple(fields)
    key = tuple(map(id, fields))
    known = _MASKS.get(key)
    if known is None or any(a is not b for a, b in zip(known[0], fields, strict=True)):
        known = (fields, {})
        if len(_MASKS) >= 64:
            _MASKS.clear()
        _MASKS[key] = known
    exists = frozenset(f.key for f in fields if f.key in present)
    mask = known[1].get(exists)
    if mask is None:
        mask = _mask(fields, exists)
        if len(known[1]) >= 256:
            known[1].clear()
        known[1][exists] = mask
    return mask


_MASKS: dict[
    tuple[int, ...], tuple[tuple[CustomerDataField, ...], dict[frozenset[str], CustomerDataMask]]
] = {}
"""Masks per list of field objects (a loaded pack is never changed in place; the objects
are held so that an id is never reused) and set of fields present: a mask is the same for
every turn whose customer has the same fields, so a turn does not rebuild it."""


def _mask(fields: Iterable[CustomerDataField], exists: frozenset[str]) -> CustomerDataMask:
    return CustomerDataMask(
        fields=tuple(
            MaskedField(
                key=field.key,
                scope=field.scope,
                type=field.type,
                exists=field.key in exists,
                allowed_values=tuple(field.allowed_values) if field.allowed_values else None,
                patterns=tuple(field.extraction.patterns),
                keywords=tuple(field.extraction.keywords),
                ignore_case=field.extraction.ignore_case,
                normalize_case=(
                    field.extraction.normalize_case.value
                    if field.extraction.normalize_case
                    else None
                ),
                synonyms=tuple(
                    (value, tuple(phrases)) for value, phrases in field.extraction.synonyms.items()
                ),
                free_text=field.extraction.free_text,
            )
            for field in fields
        )
    )


def sense(
    message: str,
    masked_schema: CustomerDataMask,
    glossary: Sequence[GlossaryTerm],
    last_messages: Sequence[SessionMessage],
    intents: Sequence[Intent] | None = None,
    *,
    expected_fields: Collection[str] = (),
    default_language: str = "en",
) -> SituationalSnapshot:
    """The snapshot of ``message`` by the rules of the module docstring."""
    if not isinstance(masked_schema, CustomerDataMask):
        raise TypeError("the sensor takes a CustomerDataMask (see mask_customer_data), not values")
    previous = [m.text for m in last_messages if m.role is MessageRole.CUSTOMER]
    level, cues = frustration(message, previous)
    guess = classify_intent(message, intents) if intents else None
    before = classify_intent(previous[-1], intents) if intents and previous else None
    label = guess.label if guess else None
    intent_changed = label is not None and label != (before.label if before else None)
    candidates = _extract(message, masked_schema, expected_fields)
    facts = [f"mentions {term}" for term in _glossary_hits(message, glossary)]
    facts += [f"gives {key}" for key in candidates]
    facts += [f"frustration cue: {cue}" for cue in cues]
    return SituationalSnapshot(
        language=detect_language(message, default_language),
        intent_changed=intent_changed,
        new_intent_label=label,
        new_intent_text=message if label else None,
        topic_changed=bool(label and before and before.label != label),
        tone=_tone(message, level),
        frustration_level=level,
        situation_facts=facts,
        candidate_variables=candidates,
    )


def detect_language(text: str, default: str = "en") -> str:
    """The best stopword profile (see the module docstring)."""
    scores = dict.fromkeys(LANGUAGE_PROFILES, 0.0)
    for word in lower_words(text):
        owners = [lang for lang, words in LANGUAGE_PROFILES.items() if word in words]
        for lang in owners:
            scores[lang] += 1.0 / len(owners)
    best = max(scores.values())
    if best <= 0:
        return default
    winners = sorted(lang for lang, score in scores.items() if abs(score - best) < 1e-9)
    return default if default in winners else winners[0]


def frustration(message: str, previous: Sequence[str] = ()) -> tuple[FrustrationLevel, list[str]]:
    """The frustration level of ``message`` given earlier customer messages, and its cues."""
    words = lower_words(message)
    lowered = message.lower()
    cues: list[str] = []
    points = 0
    for word in words:
        if word in _STRONG_WORDS:
            points += 2
            cues.append(word)
        elif word in _FRUSTRATION_WORDS:
            points += 1
            cues.append(word)
    for phrase in _FRUSTRATION_PHRASES:
        if phrase in lowered:
            points += 1
            cues.append(phrase)
    letters = [ch for ch in message if ch.isalpha()]
    shouted = [w for w in re.findall(r"[^\W\d_]{3,}", message) if w.isupper()]
    if len(shouted) >= 2 and sum(ch.isupper() for ch in letters) * 2 >= len(letters):
        points += 2
        cues.append("capitals")
    bangs = message.count("!")
    if bangs >= 2:
        points += 2 if bangs >= 3 else 1
        cues.append("exclamation marks")
    earlier = sum(1 for text in previous if _has_complaint(text))
    if earlier:
        points += min(earlier, 2)
        cues.append("repeated complaints")
    if previous and dice(content_words(message), content_words(previous[-1])) >= 0.6:
        points += 1
        cues.append("repeats the previous message")
    level = (
        FrustrationLevel.NONE
        if points == 0
        else FrustrationLevel.LOW
        if points == 1
        else FrustrationLevel.MEDIUM
        if points <= 3
        else FrustrationLevel.HIGH
    )
    return level, cues


def _has_complaint(text: str) -> bool:
    words = set(lower_words(text))
    lowered = text.lower()
    return bool(words & (_FRUSTRATION_WORDS | _STRONG_WORDS)) or any(
        phrase in lowered for phrase in _FRUSTRATION_PHRASES
    )


def _tone(message: str, level: FrustrationLevel) -> str:
    words = set(lower_words(message))
    if level is FrustrationLevel.HIGH:
        return "angry"
    if level is FrustrationLevel.MEDIUM:
        return "frustrated"
    if words & _URGENT_WORDS:
        return "urgent"
    if level is FrustrationLevel.LOW:
        return "annoyed"
    if words & _POLITE_WORDS:
        return "polite"
    return "neutral"


def _glossary_hits(message: str, glossary: Sequence[GlossaryTerm]) -> list[str]:
    lowered = f" {' '.join(lower_words(message))} "
    return [
        term.term
        for term in glossary
        if any(f" {_needle(name)} " in lowered for name in (term.term, *term.synonyms))
    ]


@lru_cache(maxsize=256)
def _pattern(source: str, ignore_case: bool = False) -> re.Pattern[str] | None:
    try:
        pattern = compile_safe(source)
    except UnsafePatternError:
        return None
    return re.compile(pattern.pattern, pattern.flags | re.IGNORECASE) if ignore_case else pattern


@lru_cache(maxsize=4096)
def _needle(phrase: str) -> str:
    """``phrase`` as its space-joined lower-case words ("" when none): the pack's keywords,
    values and synonyms are the same every turn, so they are split once."""
    return " ".join(lower_words(phrase))


def _phrase_at(lowered_words: str, phrase: str) -> int:
    """Position of ``phrase`` as whole words in the space-joined words, or -1."""
    needle = _needle(phrase)
    if not needle:
        return -1
    return f" {lowered_words} ".find(f" {needle} ")


def _extract(
    message: str, mask: CustomerDataMask, expected: Collection[str]
) -> dict[str, CandidateVariable]:
    joined = " ".join(lower_words(message))
    found: dict[str, CandidateVariable] = {}
    for field in mask.fields:
        value = _field_value(message, joined, field, field.key in expected)
        if value is not None:
            found[field.key] = CandidateVariable(
                value=json_text(value), scope=field.scope, is_update=field.exists
            )
    return found


def _field_value(
    message: str, joined: str, field: MaskedField, expected: bool
) -> str | float | bool | None:
    for source in field.patterns:
        pattern = _pattern(source, field.ignore_case)
        match = pattern.search(message) if pattern else None
        if match:
            text = match.group(0).rstrip(_TRAILING)
            if text:
                if field.normalize_case == "upper":
                    return text.upper()
                return text.lower() if field.normalize_case == "lower" else text
    keyword_hit = any(_phrase_at(joined, k) >= 0 for k in field.keywords)
    if field.allowed_values is not None:
        gate = (
            expected
            or keyword_hit
            or (
                not field.keywords
                and any(
                    _phrase_at(joined, part) >= 0 for part in field.key.split("_") if len(part) > 2
                )
            )
        )
        return _allowed_value(joined, field.allowed_values, dict(field.synonyms)) if gate else None
    if field.type is VariableType.BOOLEAN:
        if not expected:
            return None
        said = affirmation(message)
        return said if said is not None else (True if keyword_hit else None)
    if field.type is VariableType.DATETIME:
        return find_date(message) if expected or keyword_hit else None
    if field.type is VariableType.NUMBER:
        if keyword_hit:
            return _number_after(message, field.keywords)
        numbers = _NUMBERS.findall(message)
        return float(numbers[0].replace(",", ".")) if expected and len(numbers) == 1 else None
    if field.type is not VariableType.STRING or field.patterns:
        return None
    if keyword_hit:
        return _string_after(message, field.keywords)
    if expected and field.free_text:
        text = " ".join(message.split()).strip()
        if text and affirmation(text) is None and not is_acknowledgement(text):
            return text[:500]
    return None


def _allowed_value(
    joined: str, allowed: Sequence[str], synonyms: Mapping[str, Sequence[str]]
) -> str | None:
    best: tuple[int, int, str] | None = None
    for order, value in enumerate(allowed):
        for phrase in (value.replace("_", " "), *synonyms.get(value, ())):
            at = _phrase_at(joined, phrase)
            if at >= 0 and (best is None or (at, order) < best[:2]):
                best = (at, order, value)
    return best[2] if best else None


_NUMBERS = re.compile(r"(?<![\w-])-?\d+(?:[.,]\d+)?(?![\w-])")


def _number_after(message: str, keywords: Sequence[str]) -> float | None:
    lowered = message.lower()
    for keyword in keywords:
        at = lowered.find(keyword.lower())
        if at >= 0:
            match = re.search(r"-?\d+(?:[.,]\d+)?", message[at + len(keyword) :])
            if match:
                return float(match.group(0).replace(",", "."))
    return None


def _string_after(message: str, keywords: Sequence[str]) -> str | None:
    for keyword in keywords:
        match = re.search(
            rf"\b{re.escape(keyword)}\b(?:\s+is|\s*[:=])\s*([^,;!?\n]+)", message, re.IGNORECASE
        )
        if match:
            text = match.group(1).strip().rstrip(_TRAILING)
            if text:
                return text
    return None
