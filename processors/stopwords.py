"""Words and the stopword profiles of seven languages, shared by P2 (language detection and
the intent overlap of :mod:`processors.intents`) and P4.1 (query wording).

Why a module of its own: both phases read the same word lists, and P4 must not import P2's
sensor to get them (P2 runs before P4; the layering keeps the edge one way).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def lower_words(text: str) -> list[str]:
    """The words of ``text`` (letters, one inner apostrophe), lower-cased."""
    return [w.lower() for w in _WORD.findall(text)]


def wordset(text: str) -> frozenset[str]:
    """The space-separated words of a literal list."""
    return frozenset(text.split())


LANGUAGE_PROFILES: Mapping[str, frozenset[str]] = {
    "en": wordset(
        "a and are be can do for have hello hi i i'm in is it it's me my not of on order "
        "please thanks that the this to want was what where with would you your"
    ),
    "es": wordset(
        "al con de del dónde el en es está favor gracias hola la las lo los mi mis muy no "
        "para pedido pero por que quiero se un una y"
    ),
    "fr": wordset(
        "au avec bonjour c'est commande de des du est et je la le les ma mais merci mes mon "
        "ne où pas pour que qui très un une vous"
    ),
    "de": wordset(
        "aber auch bestellung bitte danke das dem den der die ein eine es für habe hallo ich "
        "ist mein meine mit nicht sehr sie und wo zu"
    ),
    "it": wordset(
        "che ciao con del della di dove e gli grazie ho il la lo ma mia mio molto non ordine "
        "per sono un una vorrei è"
    ),
    "pt": wordset(
        "a as com da de do e está mas meu minha muito não o obrigada obrigado olá onde os "
        "para pedido que quero um uma é"
    ),
    "nl": wordset(
        "alstublieft bedankt bestelling dat de die een en graag hallo heb heel het ik is maar "
        "met mijn niet van voor waar wil"
    ),
}
