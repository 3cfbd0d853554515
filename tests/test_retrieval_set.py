"""The labelled retrieval set (bench/data/acme_retrieval_set.yaml) and the P4 quality targets.

The integrity tests are fast and load no model; the last test runs the bench's evaluation on
the real embedder and checks the quality targets of the retrieval issue (no timing asserts).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter

import pytest

from bench.retrieval import LabelledSet, evaluate, load_set
from processors.pack import load_pack
from schemas.pack import AgentPack

NEAR_COPY_RATIO = 0.9
"""Character-level similarity (difflib) at which a message counts as a copy of a phrase."""


@pytest.fixture(scope="module")
def labelled() -> LabelledSet:
    return load_set()


@pytest.fixture(scope="module")
def pack(labelled: LabelledSet) -> AgentPack:
    return load_pack(labelled.pack_dir)


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.casefold()))


def test_set_size_and_unique_messages(labelled: LabelledSet) -> None:
    texts = [_normal(ex.text) for ex in labelled.examples]
    assert len(texts) >= 60
    assert [t for t, n in Counter(texts).items() if n > 1] == []


def test_every_label_names_an_object_of_the_pack(labelled: LabelledSet, pack: AgentPack) -> None:
    intents = {i.id for i in pack.intents}
    rules = {r.id for r in pack.rules if r.enabled}
    scenarios = {s.id for s in pack.scenarios}
    assert labelled.always_applicable <= rules
    for ex in labelled.examples:
        assert ex.intent in intents, ex.text
        assert ex.rules <= rules, (ex.text, sorted(ex.rules - rules))
        assert not ex.rules & labelled.always_applicable, ex.text
        assert ex.scenario is None or ex.scenario in scenarios, ex.text


def test_every_intent_appears_at_least_twice(labelled: LabelledSet, pack: AgentPack) -> None:
    counts = Counter(ex.intent for ex in labelled.examples)
    assert {i.id: counts[i.id] for i in pack.intents if counts[i.id] < 2} == {}


def test_no_message_copies_an_example_phrase(labelled: LabelledSet, pack: AgentPack) -> None:
    phrases = [p for i in pack.intents for p in i.examples]
    phrases += [p for s in pack.scenarios for p in s.entry_examples]
    phrases += [p for r in pack.rules for p in r.examples]
    normal = {_normal(p) for p in phrases}
    copies = [
        (ex.text, phrase)
        for ex in labelled.examples
        for phrase in normal
        if difflib.SequenceMatcher(None, _normal(ex.text), phrase).ratio() >= NEAR_COPY_RATIO
    ]
    assert copies == []


@pytest.mark.xfail(
    strict=True,
    reason="known gap, tracked in the retrieval issue: with today's defaults intent top-1 is "
    "0.82 and rule recall 0.59 on this set (targets 0.90); strict, so reaching the targets "
    "fails this test until the marker is removed",
)
def test_quality_targets_on_the_real_model(labelled: LabelledSet) -> None:
    report = evaluate(labelled)
    misses = {
        kind: [m for m in report["misses"] if m["kind"] == kind] for kind in ("intent", "rules")
    }
    assert report["counts"]["messages"] == len(labelled.examples)
    assert report["intent_top1"] >= 0.90, misses["intent"]
    assert report["rule_recall"] >= 0.90, misses["rules"]
