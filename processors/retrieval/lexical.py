"""Lexical features: the tokens BM25 matches on, and their character n-grams.

Deliberately light (no NLP dependency): NFKC + casefold, unicode word runs (apostrophes
dropped so "don't" -> "dont", "customer's" -> "customers"), a small English stopword list
(with the chat shorthand "u", "pls", "rn", "thx" that carries no topic), and suffix stripping.
Documents and queries go through the same function, so an aggressive stem only merges words;
it never makes a match impossible.

**Typo tolerance** (:func:`edit_distance`): a query token that no document has is matched to
an indexed token one edit away (two for tokens of 8 letters or more) that starts with the same
letter, where an edit is an insertion, a deletion, a substitution or a swap of two neighbours
("refnd" -> "refund", "cancle" -> "cancel", "pacakge" -> "package"). The BM25 index does the
matching (``BM25Index.closest``); :func:`letter_pairs` only narrows the candidates. A correctly
spelt word the pack does not use ("express", "company") stays unknown: it is two or more
edits from every indexed token, or starts with another letter.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W_]+")
_APOSTROPHES = str.maketrans("", "", "'\u2019\u02bc")

_STOPWORD_TEXT = """
    a an and are as at be been being but by can could did do does doing dont for from get got
    had has have having he hello her hers hey hi him his how i if im in into is it its ive just
    me my myself please thank thanks
    u ur pls plz rn thx ty tbh btw lol
    of on or our ours she should so some such than that the their theirs them then there
    these they this those to too very was we were what when where which while who whom why
    will with would you your yours
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# (suffix, replacement), first match wins; plurals are stripped before the others.
_PLURALS = (("sses", "ss"), ("ies", "y"), ("s", ""))
_SUFFIXES = (
    ("ations", ""),
    ("ation", ""),
    ("ments", ""),
    ("ment", ""),
    ("ing", ""),
    ("ed", ""),
    ("ly", ""),
)
_MIN_STEM = 3


def stem(word: str) -> str:
    """Strip one plural and one derivational suffix, then undouble a final consonant, so that
    refund/refunds/refunded/refunding and cancel/cancelled/cancellation share a stem."""
    for suffix, repl in _PLURALS:
        if word.endswith(suffix) and not word.endswith(("ss", "us", "is")):
            candidate = word[: len(word) - len(suffix)] + repl
            if len(candidate) >= _MIN_STEM:
                word = candidate
            break
    for suffix, repl in _SUFFIXES:
        if word.endswith(suffix):
            candidate = word[: len(word) - len(suffix)] + repl
            if len(candidate) >= _MIN_STEM:
                word = candidate
            break
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "aeiousy0123456789":
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Text -> stemmed, stopword-free tokens, in order (duplicates kept: BM25 counts them)."""
    norm = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    return [stem(w) for w in _WORD.findall(norm) if w not in STOPWORDS]


_FRAME = "#"


def letter_pairs(token: str) -> frozenset[str]:
    """The token's letter bigrams, framed by ``#`` so first and last letters count too."""
    framed = f"{_FRAME}{token}{_FRAME}"
    return frozenset(framed[i : i + 2] for i in range(len(framed) - 1))


def edit_distance(a: str, b: str, limit: int, substitution: int = 1) -> int:
    """Optimal-string-alignment distance (insert, delete, substitute, swap neighbours)
    between ``a`` and ``b``, or ``limit + 1`` as soon as it must exceed ``limit``; a
    substitution costs ``substitution`` (the query wording step counts it as two)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else substitution
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, previous = previous, current
    return previous[-1]
