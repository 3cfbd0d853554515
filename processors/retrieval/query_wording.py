"""P4.1 wording: the message as the retrieval model can read it, typos and foreign words mended.

Why: the embedding model is English and spelling-sensitive. Measured on messages written
from intent descriptions only (``bench/intent_wording.py``): a misspelt content word
("pacakge", "complant") or a foreign phrase ("je veux annuler ma commande") moves the
message next to the pack's shortest phrases (greetings) instead of its topic. BM25 already
reads a misspelt token as the indexed one (``BM25Index.closest``); this module does the same
for the text that is embedded, so both halves of the hybrid score see the mended message.

:func:`reword`, word by word (a word is a run of letters; digits, ids and punctuation are
kept as they are):

1. **Glossary** (:mod:`processors.retrieval.wording_glossary`, six languages): a foreign
   word or phrase (longest first, accents and case ignored) is replaced by its English
   meaning ("annuler" -> "cancel", "au revoir" -> "goodbye").
2. **Foreign function words** that are in one of the sensor's non-English stopword profiles
   and are no English word ("je", "ma", "ich", "mein") are dropped: they carry no topic and
   only pull the embedding toward "some other language".
3. **Typos**: a word of :data:`MIN_TYPO_LENGTH` letters or more that the pack's own texts do
   not use is replaced by the pack word one edit away (two from :data:`LONG_WORD` letters
   on) with the same first letter, fewest edits first, then the word the pack uses most,
   then alphabetically. Unlike BM25's rule (which matches stems, where a wrong match costs
   little) an edit here is an insertion, a deletion or a swap of neighbours, and a
   substitution counts two: a correctly spelt English word the pack does not use is mostly
   one *substitution* from a pack word ("think" / "thank", "bring" / "being", "waiting" /
   "writing": seen on the labelled set), while typing slips drop, double or swap letters
   ("adress", "meeter", "pacakge"). An inflection of a pack word ("keeps", "placed",
   "answers") is no typo either and stays (BM25 stems it). Words the pack uses, English
   stopwords and short words are never touched.

A message that needs none of this is returned unchanged, so an English, correctly spelt
message embeds exactly as before. The caller embeds :attr:`Wording.text`; the mended words
are recorded in the query text the retrieval requests carry.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from processors.retrieval.lexical import STOPWORDS, edit_distance
from processors.retrieval.wording_glossary import GLOSSARY, fold
from processors.stopwords import LANGUAGE_PROFILES
from schemas.pack.agent_pack import AgentPack

__all__ = ["MIN_TYPO_LENGTH", "Vocabulary", "Wording", "pack_vocabulary", "reword"]

MIN_TYPO_LENGTH = 5
"""As BM25's ``FUZZY_MIN_LENGTH``: shorter words are too short to tell a typo from a word."""
LONG_WORD = 8
"""From this length on, two edits are allowed."""

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_ENGLISH = frozenset(LANGUAGE_PROFILES["en"]) | STOPWORDS
_FOREIGN_FUNCTION_WORDS = frozenset(
    fold(w)
    for lang, profile in LANGUAGE_PROFILES.items()
    if lang != "en"
    for w in profile
    if fold(w) not in _ENGLISH and fold(w) not in GLOSSARY
)
_MAX_PHRASE = max(len(k.split()) for k in GLOSSARY)
_NEVER_DROPPED = frozenset({"ciao"})
"""Profile words that are a greeting or farewell in themselves: the model reads them."""
_INFLECTIONS = ("s", "es", "d", "ed", "ing", "ly", "er", "y")
_CLOSEST_LIMIT = 8192
"""Words whose closest pack word a vocabulary remembers (then it starts again)."""


def slip_distance(a: str, b: str, limit: int) -> int:
    """Edits from ``a`` to ``b``: insertion, deletion and swap of neighbours cost 1, a
    substitution 2 (module docstring, step 3); ``limit + 1`` once it must exceed ``limit``."""
    return edit_distance(a, b, limit, substitution=2)


def _inflected(a: str, b: str) -> bool:
    """One word is the other plus an inflection ("keep" / "keeps", "place" / "placed")."""
    short, long_ = sorted((a, b), key=len)
    return long_.startswith(short) and long_[len(short) :] in _INFLECTIONS


class Vocabulary:
    """The words a pack's indexed texts use (folded), with how often."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = dict(counts)
        grouped: dict[str, list[str]] = {}
        for term in self.counts:
            grouped.setdefault(term[0], []).append(term)
        self._by_initial = {k: tuple(v) for k, v in grouped.items()}
        self._closest: dict[str, str | None] = {}
        """Answers so far: a word's closest pack word depends only on the vocabulary."""

    def __contains__(self, word: str) -> bool:
        return word in self.counts

    def closest(self, word: str) -> str | None:
        """The pack word a misspelt ``word`` stands for (module docstring, step 3)."""
        if word in self.counts or len(word) < MIN_TYPO_LENGTH or word in _ENGLISH:
            return None
        if word in self._closest:
            return self._closest[word]
        found = self._search(word)
        if len(self._closest) >= _CLOSEST_LIMIT:
            self._closest.clear()
        self._closest[word] = found
        return found

    def _search(self, word: str) -> str | None:
        limit = 1 if len(word) < LONG_WORD else 2
        best: tuple[int, int, str] | None = None
        for term in self._by_initial.get(word[0], ()):
            if abs(len(term) - len(word)) > limit or _inflected(word, term):
                continue
            edits = slip_distance(word, term, limit)
            if edits <= limit:
                key = (edits, -self.counts[term], term)
                best = key if best is None or key < best else best
        return best[2] if best is not None else None


def vocabulary_of(texts: Iterable[str]) -> Vocabulary:
    counts = Counter(fold(w) for text in texts for w in _WORD.findall(text))
    return Vocabulary(dict(counts))


def _pack_texts(pack: AgentPack) -> list[str]:
    texts = [t for i in pack.intents for t in (*i.examples, i.description)]
    texts += [t for r in pack.rules if r.enabled for t in (r.condition_text, *r.examples)]
    texts += [t for s in pack.scenarios for t in (s.name, s.description, *s.entry_examples)]
    texts += [t for g in pack.glossary for t in (g.term, g.definition, *g.synonyms)]
    return texts


_VOCABULARIES: dict[int, tuple[AgentPack, Vocabulary]] = {}
"""Per loaded pack object (a pack is never changed in place: a new version is a new object)."""


def pack_vocabulary(pack: AgentPack) -> Vocabulary:
    """The vocabulary of what retrieval indexes for ``pack`` (cached per pack object)."""
    entry = _VOCABULARIES.get(id(pack))
    if entry is not None and entry[0] is pack:
        return entry[1]
    found = vocabulary_of(_pack_texts(pack))
    if len(_VOCABULARIES) >= 256:
        _VOCABULARIES.clear()
    _VOCABULARIES[id(pack)] = (pack, found)
    return found


@dataclass(frozen=True)
class Wording:
    """The mended message and what was mended (``(original, replacement)``, "" = dropped)."""

    text: str
    glossed: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    corrected: tuple[tuple[str, str], ...] = ()


def reword(message: str, vocabulary: Vocabulary) -> Wording:
    """The message with the glossary, function-word and typo steps of the module docstring."""
    matches = list(_WORD.finditer(message))
    folded = [fold(m.group(0)) for m in matches]
    out: list[str] = []
    glossed: list[tuple[str, str]] = []
    dropped: list[str] = []
    corrected: list[tuple[str, str]] = []
    cursor = 0
    i = 0
    while i < len(matches):
        match = matches[i]
        span_end, replacement, used = match.end(), None, 1
        for n in range(min(_MAX_PHRASE, len(matches) - i), 0, -1):
            phrase = " ".join(folded[i : i + n])
            english = GLOSSARY.get(phrase)
            if english is not None and phrase not in vocabulary and phrase not in _ENGLISH:
                span_end, replacement, used = matches[i + n - 1].end(), english, n
                glossed.append((message[match.start() : span_end], english))
                break
        if replacement is None:
            word = folded[i]
            if (
                word in _FOREIGN_FUNCTION_WORDS
                and word not in vocabulary
                and word not in _NEVER_DROPPED
            ):
                replacement = ""
                dropped.append(match.group(0))
            elif (fixed := vocabulary.closest(word)) is not None:
                replacement = fixed
                corrected.append((match.group(0), fixed))
        if replacement is not None:
            out.append(message[cursor : match.start()])
            out.append(replacement)
            cursor = span_end
        i += used
    if not (glossed or dropped or corrected):
        return Wording(message)
    out.append(message[cursor:])
    text = " ".join("".join(out).split())
    return Wording(text, tuple(glossed), tuple(dropped), tuple(corrected))
