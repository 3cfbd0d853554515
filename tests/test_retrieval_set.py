"""The labelled retrieval set is well formed: enough messages, real ids, no copied phrases."""

from __future__ import annotations

from collections import Counter

from bench.retrieval import DEFAULT_PACK, DEFAULT_SET, load_set
from processors.pack import load_pack

PACK = load_pack(DEFAULT_PACK)
MESSAGES = load_set(DEFAULT_SET)


def _normal(text: str) -> str:
    return " ".join(text.lower().replace("?", " ").replace("!", " ").replace(",", " ").split())


def test_set_has_at_least_sixty_messages() -> None:
    assert len(MESSAGES) >= 60


def test_every_label_names_an_object_of_the_pack() -> None:
    intents = {intent.id for intent in PACK.intents}
    rules = {rule.id for rule in PACK.rules}
    scenarios = {scenario.id for scenario in PACK.scenarios}
    for message in MESSAGES:
        assert message.intent in intents, message.text
        assert message.rules <= rules, message.text
        assert message.scenario is None or message.scenario in scenarios, message.text


def test_no_message_copies_an_example_phrase_of_the_pack() -> None:
    examples = {_normal(phrase) for intent in PACK.intents for phrase in intent.examples}
    examples |= {
        _normal(phrase) for scenario in PACK.scenarios for phrase in scenario.entry_examples
    }
    copied = [message.text for message in MESSAGES if _normal(message.text) in examples]
    assert copied == []


def test_every_intent_of_the_pack_is_labelled_at_least_twice() -> None:
    counts = Counter(message.intent for message in MESSAGES)
    assert {intent.id for intent in PACK.intents if counts[intent.id] < 2} == set()
