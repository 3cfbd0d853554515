"""P5: pre-filter, score-band / LLM filter, then relationship expansion, with a trace."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processors.llm import LlmResult, LlmTask
from processors.phases.rule_selection import (
    RuleSelection,
    ScenarioScope,
    Stage,
    record_fires,
    select_rules_async,
)
from processors.retrieval.model import Retrieved
from schemas.domain.phase import Phase
from schemas.domain.rules import RelationshipKind, RuleVerdict
from schemas.domain.session import ActiveScenario, RuleFires, ScenarioStatus, SessionState
from schemas.pack.agent_pack import AgentPack
from schemas.pack.rules import Relationship, Rule
from sinks.pack_files import load_pack
from streams.settings import PhaseSettings, TaskMode

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2024, 5, 1, tzinfo=UTC)
MESSAGE = "I want a refund for my order"


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def select(
    candidates: Sequence[Retrieved],
    pack: AgentPack,
    session: SessionState,
    scope: ScenarioScope | None = None,
    settings: PhaseSettings | None = None,
    llm: LlmTask | None = None,
) -> RuleSelection:
    """P5 as a turn runs it (``select_rules_async``), for a message the filter may read."""
    return asyncio.run(
        select_rules_async(candidates, pack, session, scope, settings, llm, message=MESSAGE)
    )


def hits(**scores: float) -> list[Retrieved]:
    return [Retrieved(rule_id, score, score, 0.0, "", {}) for rule_id, score in scores.items()]


def session(turn_count: int = 4, fires: Mapping[str, RuleFires] | None = None, *steps: str):
    scenarios = [
        ActiveScenario(
            scenario_id=ref.split(".")[0],
            scenario_version=1,
            current_step_id=ref.split(".")[1],
            status=ScenarioStatus.ACTIVE,
        )
        for ref in steps
    ]
    return SessionState(
        session_id="s",
        tenant_id="acme-shop",
        agent_id="support",
        customer_id="c",
        turn_count=turn_count,
        scenarios=scenarios,
        rule_fires=dict(fires or {}),
        updated_at=NOW,
    )


def dropped(selection: RuleSelection, rule_id: str) -> str:
    return next(t.reason for t in selection.trace if t.rule_id == rule_id and not t.kept)


def with_rules(pack: AgentPack, rules: list[Rule], rels: list[Relationship]) -> AgentPack:
    return pack.model_copy(update={"rules": rules, "relationships": rels})


def rule(rule_id: str, priority: int = 0, **extra: object) -> Rule:
    return Rule(id=rule_id, condition_text="c", action_text="a", priority=priority, **extra)  # type: ignore[arg-type]


# -- pre-filter -------------------------------------------------------------------------------


def test_scenario_and_step_rules_need_their_scenario_or_step_active(pack: AgentPack) -> None:
    candidates = hits(tracking_link=0.9, neutral_refund_reason=0.9, be_polite=0.9)
    outside = select(candidates, pack, session())
    assert outside.rule_ids == ["be_polite"]
    assert "not active" in dropped(outside, "tracking_link")
    assert "not current" in dropped(outside, "neutral_refund_reason")
    inside = select(
        candidates, pack, session(4, None, "order_tracking.look_up", "refund.ask_reason")
    )
    assert set(inside.rule_ids) == {"tracking_link", "neutral_refund_reason", "be_polite"}


def test_paused_scenarios_do_not_scope_rules(pack: AgentPack) -> None:
    state = session(4, None, "order_tracking.look_up")
    paused = state.model_copy(
        update={"scenarios": [state.scenarios[0].model_copy(update={"status": "PAUSED"})]}
    )
    assert select(hits(tracking_link=0.9), pack, paused).rule_ids == []


def test_cooldown_drops_a_rule_until_enough_turns_passed(pack: AgentPack) -> None:
    fired = {"greet_by_name": RuleFires(fire_count=0, last_fired_turn=2)}
    soon = select(hits(greet_by_name=0.9), pack, session(10, fired))
    assert soon.rule_ids == [] and "cooldown" in dropped(soon, "greet_by_name")
    later = select(hits(greet_by_name=0.9), pack, session(22, fired))
    assert later.rule_ids == ["greet_by_name"]


def test_max_fires_per_session_drops_a_rule_that_fired_enough(pack: AgentPack) -> None:
    fired = {"human_on_request": RuleFires(fire_count=1, last_fired_turn=1)}
    selection = select(hits(human_on_request=0.9), pack, session(5, fired))
    assert selection.rule_ids == [] and "max 1" in dropped(selection, "human_on_request")


def test_disabled_and_unknown_rules_are_dropped(pack: AgentPack) -> None:
    small = with_rules(pack, [rule("off", enabled=False)], [])
    selection = select(hits(off=0.9, ghost=0.9), small, session())
    assert selection.applied == []
    assert dropped(selection, "off") == "disabled" and dropped(selection, "ghost") == "unknown rule"


def test_record_fires_feeds_the_next_turns_pre_filter(pack: AgentPack) -> None:
    first = select(hits(human_on_request=0.9), pack, session(0))
    after = record_fires(session(0), first.applied)
    assert after.rule_fires["human_on_request"] == RuleFires(fire_count=1, last_fired_turn=1)
    assert select(hits(human_on_request=0.9), pack, after).applied == []


# -- filter -----------------------------------------------------------------------------------


def test_score_bands_give_verdicts_and_drop_the_unrelated(pack: AgentPack) -> None:
    selection = select(
        hits(be_polite=0.8, acknowledge_complaints=0.3, no_restock_promises=0.1), pack, session()
    )
    verdicts = {a.rule_id: a.verdict for a in selection.applied}
    assert verdicts == {
        "be_polite": RuleVerdict.APPLIES,
        "acknowledge_complaints": RuleVerdict.UNSURE,
    }
    assert "NOT_RELATED" in dropped(selection, "no_restock_promises")


class Judge:
    """An LLM port that answers the filter with fixed verdicts and records the rules asked."""

    def __init__(self, **by_rule: RuleVerdict) -> None:
        self.by_rule = by_rule
        self.asked: list[str] = []

    async def complete_json(
        self,
        *,
        phase: Phase,
        system: str,
        user: str,
        schema_name: str,
        schema: Mapping[str, Any],
        settings: PhaseSettings | None = None,
    ) -> LlmResult:
        self.asked.extend(rule["rule_id"] for rule in json.loads(user)["rules"])
        verdicts = [{"rule_id": r, "verdict": v.value} for r, v in self.by_rule.items()]
        return LlmResult(data={"verdicts": verdicts}, usage=[], attempts=1)


def test_the_llm_filter_port_is_used_in_llm_mode_only(pack: AgentPack) -> None:
    judge = Judge(be_polite=RuleVerdict.NOT_RELATED)
    llm = PhaseSettings(mode=TaskMode.LLM)
    selection = select(
        hits(be_polite=0.9, acknowledge_complaints=0.9),
        pack,
        session(),
        settings=llm,
        llm=judge,
    )
    assert judge.asked == ["be_polite", "acknowledge_complaints"]
    assert [(a.rule_id, a.verdict) for a in selection.applied] == [
        ("acknowledge_complaints", RuleVerdict.UNSURE)  # no verdict given: UNSURE, kept
    ]
    heuristic = select(hits(be_polite=0.9), pack, session(), llm=judge)
    assert heuristic.rule_ids == ["be_polite"]
    assert judge.asked == ["be_polite", "acknowledge_complaints"]  # not asked again


def test_expansion_only_sees_rules_the_filter_kept(pack: AgentPack) -> None:
    selection = select(hits(refund_within_tier_limit=0.1), pack, session())
    assert selection.applied == []
    assert not [t for t in selection.trace if t.stage is Stage.EXPANSION]


# -- expansion --------------------------------------------------------------------------------


def test_implies_and_depends_on_pull_in_rules_transitively(pack: AgentPack) -> None:
    selection = select(hits(refund_within_tier_limit=0.8), pack, session())
    via = {a.rule_id: (a.via_relationship, a.via_rule_id) for a in selection.applied}
    assert via == {
        "refund_within_tier_limit": (None, None),
        "refund_not_above_order_total": (RelationshipKind.IMPLIES, "refund_within_tier_limit"),
        "look_up_order_first": (RelationshipKind.DEPENDS_ON, "refund_not_above_order_total"),
    }
    assert all(a.verdict is RuleVerdict.APPLIES for a in selection.applied)
    assert selection.rule_ids[0] == "refund_within_tier_limit"  # priority order


def test_a_rule_whose_dependency_cannot_apply_is_dropped(pack: AgentPack) -> None:
    small = with_rules(
        pack,
        [rule("needs"), rule("base", enabled=False)],
        [Relationship(source="needs", kind=RelationshipKind.DEPENDS_ON, target="base")],
    )
    selection = select(hits(needs=0.9), small, session())
    assert selection.applied == [] and "depends on base" in dropped(selection, "needs")


def test_excludes_keeps_the_higher_priority_rule(pack: AgentPack) -> None:
    selection = select(
        hits(escalate_when_frustrated=0.6, self_service_returns=0.9), pack, session()
    )
    assert "self_service_returns" not in selection.rule_ids
    assert "excluded by escalate_when_frustrated" in dropped(selection, "self_service_returns")
    assert "be_polite" in selection.rule_ids  # implied by escalate_when_frustrated


def test_specializes_supersedes_the_general_rule(pack: AgentPack) -> None:
    selection = select(hits(damaged_items_90_days=0.7, return_window_30_days=0.8), pack, session())
    assert selection.rule_ids == ["damaged_items_90_days"]
    assert "superseded" in dropped(selection, "return_window_30_days")


def test_related_is_recorded_but_adds_nothing(pack: AgentPack) -> None:
    selection = select(hits(no_invented_vouchers=0.8), pack, session())
    assert selection.rule_ids == ["no_invented_vouchers"]
    notes = [t for t in selection.trace if "related to no_invented_vouchers" in t.reason]
    assert [n.rule_id for n in notes] == ["acknowledge_complaints"]


def test_rules_added_through_a_dropped_origin_are_dropped_too(pack: AgentPack) -> None:
    small = with_rules(
        pack,
        [rule("a", 1), rule("b", 5), rule("c")],
        [
            Relationship(source="a", kind=RelationshipKind.IMPLIES, target="c"),
            Relationship(source="b", kind=RelationshipKind.EXCLUDES, target="a"),
        ],
    )
    selection = select(hits(a=0.9, b=0.9), small, session())
    assert selection.rule_ids == ["b"]
    assert "origin a" in dropped(selection, "c")


def test_expanded_rules_still_pass_the_pre_filter(pack: AgentPack) -> None:
    small = with_rules(
        pack,
        [rule("a"), rule("scoped", scope="SCENARIO", scope_id="refund")],
        [Relationship(source="a", kind=RelationshipKind.IMPLIES, target="scoped")],
    )
    assert select(hits(a=0.9), small, session()).rule_ids == ["a"]
    scope = ScenarioScope(frozenset({"refund"}))
    assert set(select(hits(a=0.9), small, session(), scope).rule_ids) == {"a", "scoped"}
