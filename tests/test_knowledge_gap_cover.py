"""A KNOWLEDGE_GAP answer is never sent while a retrieved scenario or rule covers the request
("covers": processors/phases/planning.py's docstring), on whole first turns of the example
pack (real model, Qdrant local mode, the pack's tools) for every message of the labelled set
and the first unseen-wording set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from processors.turn.retrieval_stage import selected
from schemas.domain.outcome import OutcomeCategory
from schemas.domain.retrieval import RetrievalType
from tests.test_security_helpers import Turns

DATA = Path(__file__).resolve().parents[1] / "bench" / "data"
SETS = ("acme_retrieval_set.yaml", "acme_unseen_wordings.yaml")


@pytest.fixture(scope="module")
def turns() -> Iterator[Turns]:
    created = Turns.create()
    created.add_pack()
    yield created
    created.ports.close()


async def test_no_knowledge_gap_is_sent_while_a_scenario_or_rule_covers_the_request(
    turns: Turns,
) -> None:
    (pack,) = turns.packs.values()
    says = {r.id for r in pack.rules if r.says_action_text and r.enabled}
    threshold = pack.agent.dialogue.start_threshold
    messages = [
        str(m["text"])
        for name in SETS
        for m in yaml.safe_load((DATA / name).read_text(encoding="utf-8"))["messages"]
    ]
    covered_wrongly: list[tuple[str, str]] = []
    gaps = 0
    for i, message in enumerate(messages):
        turns.forget()
        _, record = await turns.say(message, turn_id=f"kg-{i}", channel_id=f"kg-{i}")
        context = record.context
        assert context.outcome is not None
        if OutcomeCategory.KNOWLEDGE_GAP not in context.outcome.categories:
            continue
        gaps += 1
        entry = {s.id for s in pack.scenarios if context.canonical_intent in s.entry_intents}
        scenarios = next(
            selected(r) for r in context.retrievals if r.retrieval_type is RetrievalType.SCENARIOS
        )
        if any(d.contribution is not None for d in context.scenario_decisions):
            covered_wrongly.append((message, "a scenario moved"))
        if any(s.object_id in entry for s in scenarios):
            covered_wrongly.append((message, "a selected scenario lists the intent"))
        if any(
            a.rule_id in says and a.via_relationship is None and a.score >= threshold
            for a in context.applied_rules
        ):
            covered_wrongly.append((message, "an answering rule applied"))
    assert covered_wrongly == []
    assert gaps < len(messages)  # the check saw answers of both kinds
