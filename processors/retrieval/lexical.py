"""Lexical features: the tokens BM25 matches on.

Deliberately light (no NLP dependency): NFKC + casefold, unicode word runs (apostrophes
dropped so "don't" -> "dont", "customer's" -> "customers"), a small English stopword list,
and suffix stripping. Documents and queries go through the same function, so an aggressive
stem only merges words; it never makes a match impossible.
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
