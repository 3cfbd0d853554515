"""The yes/no lexicon: how a customer's answer to a confirmation reads, in several languages.

Why one module: the sensor (P2) reads a yes/no for a BOOLEAN field it was asked for and the
dialogue state (P6) reads whether a reply affirms or denies the step that waits; both must
agree on the words. Matching is on whole lower-cased words (and phrases of several words);
a deny word wins over an affirm word ("no, not yet" is no, "yes... no wait" is no), because
acting on a wrong yes costs more than asking again. A pack adds its own words in
``agent.yaml`` (``dialogue.affirm`` / ``dialogue.deny``).

Languages: en, es, fr, de, pt, it, nl.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["ACKNOWLEDGE", "AFFIRM", "DENY", "affirmation", "is_acknowledgement", "words"]

AFFIRM: frozenset[str] = frozenset(
    {
        # en
        "yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "correct", "right",
        "confirm", "confirmed", "absolutely", "definitely", "go ahead", "please do",
        "do it", "sounds good", "that's right", "that is right", "of course",
        # es
        "sí", "si", "claro", "vale", "correcto", "de acuerdo", "adelante", "por supuesto",
        # fr
        "oui", "ouais", "d'accord", "bien sûr", "exact", "allez-y", "volontiers",
        # de
        "ja", "genau", "richtig", "klar", "gerne", "einverstanden", "jawohl", "stimmt",
        # pt
        "sim", "certo", "claro que sim", "pode", "pode ser", "com certeza", "isso",
        # it
        "va bene", "esatto", "certamente",
        # nl
        "ja hoor", "prima", "akkoord", "klopt",
    }
)  # fmt: skip
DENY: frozenset[str] = frozenset(
    {
        # en
        "no", "n", "nope", "nah", "not", "don't", "dont", "never", "cancel", "stop",
        "wrong", "incorrect", "wait", "not yet", "no thanks",
        # es
        "todavía no", "incorrecto", "espera", "nunca",
        # fr
        "non", "pas", "attendez", "jamais",
        # de
        "nein", "nicht", "falsch", "noch nicht", "warte", "nie",
        # pt
        "não", "nao", "errado", "espere",
        # it
        "sbagliato", "aspetta",
        # nl
        "nee", "niet", "fout",
    }
)  # fmt: skip
ACKNOWLEDGE: frozenset[str] = frozenset(
    {
        "thanks", "thank you", "thx", "ty", "cheers", "great", "cool", "fine", "alright",
        "gracias", "merci", "danke", "obrigado", "obrigada", "grazie", "bedankt", "perfect",
        "perfecto", "parfait", "perfekt", "perfeito", "hmm", "ah", "oh",
    }
)  # fmt: skip
"""Short replies that acknowledge without answering: they keep a flow where it is."""

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


@lru_cache(maxsize=4096)
def _phrase(entry: str) -> str | None:
    """A lexicon entry as it is looked for in the space-joined words (None: no words);
    cached, as the entries are the same every turn."""
    found = words(entry)
    return f" {' '.join(found)} " if found else None


def _hits(text_words: list[str], lexicon: Iterable[str]) -> bool:
    joined = f" {' '.join(text_words)} "
    return any(p is not None and p in joined for p in map(_phrase, lexicon))


def affirmation(
    text: str, extra_affirm: Iterable[str] = (), extra_deny: Iterable[str] = ()
) -> bool | None:
    """True for a yes, False for a no, None when the text says neither (module docstring)."""
    found = words(text)
    if _hits(found, (*DENY, *extra_deny)):
        return False
    if _hits(found, (*AFFIRM, *extra_affirm)):
        return True
    return None


def is_acknowledgement(text: str) -> bool:
    """A reply made only of acknowledgement and yes words ("ok thanks", "great, cheers")."""
    found = words(text)
    known = {w for entry in (*ACKNOWLEDGE, *AFFIRM) for w in words(entry)}
    return bool(found) and len(found) <= 5 and all(w in known for w in found)
