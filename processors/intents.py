"""The heuristic intent guess: Dice overlap of content words between a message and each
intent's example phrases. P2's sensor uses it for its intent guess, P4 for the canonical
intent (:mod:`processors.retrieval.intent`), so it lives below both phases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

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


@lru_cache(maxsize=64)
def _example_sets(
    intents: tuple[tuple[str, tuple[str, ...]], ...],
) -> tuple[tuple[str, tuple[frozenset[str], ...]], ...]:
    return tuple((label, tuple(content_words(e) for e in examples)) for label, examples in intents)


def classify_intent(text: str, intents: Sequence[Intent]) -> IntentGuess | None:
    """The best intent by example overlap, or None below :data:`INTENT_THRESHOLD`; ties go
    to the intent listed first."""
    words = content_words(text)
    best: IntentGuess | None = None
    for label, examples in _example_sets(tuple((i.id, tuple(i.examples)) for i in intents)):
        score = max((dice(words, example) for example in examples), default=0.0)
        if score >= INTENT_THRESHOLD and (best is None or score > best.score):
            best = IntentGuess(label, round(score, 6))
    return best
