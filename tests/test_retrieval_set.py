"""The labelled retrieval set (bench/data/acme_retrieval_set.yaml) and the P4 quality targets.

The integrity tests are fast and load no model; the last two run the bench's evaluation (once)
on the real embedder and check the quality targets of the retrieval issue (no timing asserts).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.retrieval import ROOT, LabelledSet, evaluate, load_set
from schemas.pack import AgentPack
from sinks.pack_files import load_pack
from streams.settings import RetrievalSettings

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


UNSEEN = {
    "acme": ROOT / "bench" / "data" / "acme_unseen_wordings.yaml",
    "brightwatt": ROOT / "bench" / "data" / "brightwatt_unseen_wordings.yaml",
    "acme_2": ROOT / "bench" / "data" / "acme_unseen_wordings_2.yaml",
    "brightwatt_2": ROOT / "bench" / "data" / "brightwatt_unseen_wordings_2.yaml",
}


@pytest.mark.parametrize("path", UNSEEN.values(), ids=UNSEEN.keys())
def test_unseen_wordings_label_known_intents_and_copy_no_example(path: Path) -> None:
    """The unseen-wording sets (written from intent descriptions, see their headers) label
    intents only, each intent at least twice, and no message is a near copy of a phrase the
    pack indexes."""
    unseen = load_set(path)
    pack = load_pack(unseen.pack_dir)
    assert unseen.intent_only and len(unseen.examples) >= 36
    counts = Counter(ex.intent for ex in unseen.examples)
    assert set(counts) == {i.id for i in pack.intents}
    assert min(counts.values()) >= 2
    phrases = [p for i in pack.intents for p in i.examples]
    phrases += [p for s in pack.scenarios for p in s.entry_examples]
    phrases += [p for r in pack.rules for p in r.examples]
    copies = [
        (ex.text, phrase)
        for ex in unseen.examples
        for phrase in phrases
        if difflib.SequenceMatcher(None, _normal(ex.text), _normal(phrase)).ratio()
        >= NEAR_COPY_RATIO
    ]
    assert copies == []


@pytest.fixture(scope="module")
def report(labelled: LabelledSet) -> dict[str, Any]:
    """One bench evaluation on the real model and the real pack, default settings."""
    result = evaluate(labelled, settings=RetrievalSettings())
    assert result["counts"]["messages"] == len(labelled.examples)
    return result


def _misses(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [m for m in report["misses"] if m["kind"] == kind]


def test_rule_recall_target_on_the_real_model(report: dict[str, Any]) -> None:
    """Rule recall >= 0.90 (the retrieval issue's target). Precision is not a target (P5
    filters what P4 retrieves), but a floor keeps recall from being bought by handing P5
    every rule (0.34 measured when the target was first met)."""
    assert report["rule_recall"] >= 0.90, _misses(report, "rules")
    assert report["rule_precision"] >= 0.30


def test_intent_target_on_the_real_model(report: dict[str, Any]) -> None:
    """Intent top-1 >= 0.90 (the retrieval issue's target): 136 of 151 (0.901) since intents
    are also indexed on their description, 134 before. A thin margin, kept honest by
    ``bench/intent_heldout.py``: the change was judged on leave-one-out over the pack's own
    example phrases (41 -> 46 of 71), which never reads this set."""
    assert report["intent_top1"] >= 0.90, _misses(report, "intent")


def test_unseen_wordings_stay_within_three_points_on_the_real_model(
    report: dict[str, Any],
) -> None:
    """Intent top-1 on the acme unseen-wording set is within 3 points of the labelled set
    (0.896 vs 0.901 when written; the 0.90 bar for the unseen set itself is one message short,
    see the README's wording table)."""
    unseen = evaluate(load_set(UNSEEN["acme"]), settings=RetrievalSettings())
    assert report["intent_top1"] - unseen["intent_top1"] <= 0.03, unseen["misses"]
