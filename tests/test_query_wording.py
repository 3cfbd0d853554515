"""P4.1 wording (processors/retrieval/query_wording.py): foreign words and typos mended for the
embedded text, English and correctly spelt messages left alone."""

from __future__ import annotations

from processors.retrieval.query_wording import Vocabulary, reword, slip_distance, vocabulary_of
from processors.retrieval.wording_glossary import GLOSSARY, fold

PACK_WORDS = vocabulary_of(
    [
        "I want a refund for my order",
        "Where is my package? The delivery is late",
        "Please change the address of my order",
        "I keep asking and nobody answers, I think this is a joke",
        "thank you, that is all, goodbye",
    ]
)


def test_an_english_correctly_spelt_message_is_embedded_unchanged() -> None:
    message = "Where is my package? I placed order A-10023 on Monday."
    assert reword(message, PACK_WORDS).text == message


def test_foreign_phrases_become_english_and_foreign_function_words_are_dropped() -> None:
    wording = reword("je veux annuler ma commande A-10023, merci", PACK_WORDS)
    assert wording.text == "i want cancel order A-10023, thanks"
    assert ("annuler", "cancel") in wording.glossed
    assert set(wording.dropped) == {"ma"}


def test_glossary_phrases_win_over_their_words_and_ignore_accents() -> None:
    assert reword("Au revoir!", PACK_WORDS).text == "goodbye!"
    assert reword("ZAHLERSTAND und Zählerstand", PACK_WORDS).text.count("meter reading") == 2


def test_a_typo_is_read_as_the_pack_word_it_slipped_from() -> None:
    wording = reword("wher is my pacakge, the adress changed", PACK_WORDS)
    assert wording.corrected == (("pacakge", "package"), ("adress", "address"))
    assert "package" in wording.text and "address" in wording.text


def test_a_real_word_one_substitution_away_or_an_inflection_is_not_a_typo() -> None:
    # "thank" is a pack word one substitution from "think"; "keeps" inflects "keep"
    wording = reword("I thunk it keeps asking", PACK_WORDS)
    assert wording.corrected == ()
    assert slip_distance("think", "thank", 1) == 2
    assert slip_distance("pacakge", "package", 1) == 1


def test_words_the_pack_uses_are_never_rewritten() -> None:
    vocabulary = Vocabulary({"pedido": 3, "order": 1})
    assert reword("mi pedido", vocabulary).text == "pedido"  # "mi" is a function word


def test_folding_keeps_one_character_per_character() -> None:
    for text in ("Straße", "ÇA SENT", "İstanbul", "déménage"):
        assert len(fold(text)) == len(text)
    assert all(key == fold(key) for key in GLOSSARY)
