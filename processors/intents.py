"""The heuristic intent guess: Dice overlap of content words between a message and each
intent's example phrases. P2's sensor uses it for its intent guess, P4 for the canonical
intent (:mod:`processors.retrieval.intent`), so it lives below both phases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from processors.stopwords import LANGUAGE_PROFILES, lower_words
from schemas.pack.language import Intent

INTENT_THRESHOLD = 0.3


@dataclass(frozen=True)
class IntentGuess:
    label: str
    score: float


ALL_STOPWORDS = frozenset().union(*LANGUAGE_PROFILES.values()) - {"order", "want", "pedido"}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> frozenset[str]:
    """The stemmed words of ``text`` that are no stopword of any language."""
    return frozenset(_stem(w) for w in lower_words(text) if w not in ALL_STOPWORDS)


def dice(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice overlap of two word sets (0 when either is empty)."""
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


_ExampleSets = tuple[tuple[str, tuple[frozenset[str], ...]], ...]
_EXAMPLES: dict[tuple[int, ...], tuple[tuple[Intent, ...], _ExampleSets]] = {}
"""The example phrases' word sets per list of intent objects (a loaded pack's intents are
never changed in place: a new pack version is new objects), so that a turn does not
re-tokenise the pack's examples; the objects are held so that an id is never reused."""
_GUESSES: dict[tuple[tuple[int, ...], str], IntentGuess | None] = {}
"""The last guesses per (intent objects, text): a turn asks for the same message up to
three times (the sensor, its previous message, the canonical intent)."""
_CACHE_LIMIT = 4096


def _example_sets(intents: Sequence[Intent]) -> tuple[tuple[int, ...], _ExampleSets]:
    key = tuple(map(id, intents))
    entry = _EXAMPLES.get(key)
    if entry is not None and all(a is b for a, b in zip(entry[0], intents, strict=True)):
        return key, entry[1]
    sets = tuple((i.id, tuple(content_words(e) for e in i.examples)) for i in intents)
    if key in _EXAMPLES or len(_EXAMPLES) >= 64:  # ids reused by new objects, or too many
        _EXAMPLES.clear()
        _GUESSES.clear()
    _EXAMPLES[key] = (tuple(intents), sets)
    return key, sets


def classify_intent(text: str, intents: Sequence[Intent]) -> IntentGuess | None:
    """The best intent by example overlap, or None below :data:`INTENT_THRESHOLD`; ties go
    to the intent listed first."""
    key, example_sets = _example_sets(intents)
    memo = (key, text)
    if memo in _GUESSES:
        return _GUESSES[memo]
    words = content_words(text)
    best: IntentGuess | None = None
    for label, examples in example_sets:
        score = max((dice(words, example) for example in examples), default=0.0)
        if score >= INTENT_THRESHOLD and (best is None or score > best.score):
            best = IntentGuess(label, round(score, 6))
    if len(_GUESSES) >= _CACHE_LIMIT:
        _GUESSES.clear()
    _GUESSES[memo] = best
    return best
