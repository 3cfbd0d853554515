"""P8: the global response type, merged contributions, templates and rule phrases."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.phases.planning import plan_response, response_type
from schemas.domain.outcome import OutcomeCategory
from schemas.domain.plan import ResponseType
from schemas.domain.rules import AppliedRule, RuleVerdict
from schemas.domain.scenario import ContributionKind, ScenarioContribution
from schemas.pack.agent_pack import AgentPack
from sinks.pack_files import load_pack

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def contribution(
    kind: ContributionKind, step: str = "s", template: str | None = None
) -> ScenarioContribution:
    return ScenarioContribution(scenario_id="refund", step_id=step, kind=kind, template_id=template)


ASK, INFORM, CONFIRM, HINT = (
    ContributionKind.ASK,
    ContributionKind.INFORM,
    ContributionKind.CONFIRM,
    ContributionKind.ACTION_HINT,
)


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        ([], ResponseType.ANSWER),
        ([INFORM], ResponseType.ANSWER),
        ([HINT], ResponseType.ANSWER),
        ([ASK], ResponseType.ASK),
        ([ASK, INFORM], ResponseType.MIXED),
        ([CONFIRM, ASK], ResponseType.MIXED),
        ([CONFIRM], ResponseType.CONFIRM),
        ([INFORM, CONFIRM], ResponseType.CONFIRM),
    ],
)
def test_type_follows_the_contributions(
    kinds: list[ContributionKind], expected: ResponseType
) -> None:
    contributions = [contribution(k, step=f"s{i}") for i, k in enumerate(kinds)]
    assert response_type(contributions) is expected


def test_escalation_beats_refusal_beats_contributions() -> None:
    asks = [contribution(ASK)]
    refusal = [OutcomeCategory.SAFETY_REFUSAL]
    assert response_type(asks, refusal, escalate=True) is ResponseType.ESCALATE
    assert response_type(asks, refusal) is ResponseType.REFUSE
    assert response_type(asks, [OutcomeCategory.SYSTEM_ERROR]) is ResponseType.ASK


def test_plan_merges_contributions_picks_templates_and_injects_rule_phrases(
    pack: AgentPack,
) -> None:
    contributions = [
        contribution(ASK, "ask_reason", "ask_refund_reason"),
        contribution(INFORM, "check_eligibility"),
        contribution(ASK, "ask_reason", "ask_refund_reason"),  # duplicate
    ]
    applied = [
        AppliedRule(rule_id=r, score=1.0, verdict=RuleVerdict.APPLIES)
        for r in ("confirm_refund_summary", "no_invented_vouchers", "be_polite")
    ]
    plan = plan_response(contributions, applied, pack)
    assert plan.response_type is ResponseType.MIXED
    assert [(c.step_id, c.kind) for c in plan.contributions] == [
        ("check_eligibility", INFORM),
        ("ask_reason", ASK),
    ]
    assert [t.template_id for t in plan.templates] == ["ask_refund_reason"]
    assert "{order_id}" in plan.templates[0].text
    assert plan.must_include == ["confirm"]
    assert plan.must_avoid[:2] == ["discount code", "promo code"]
    assert "calm down" in plan.must_avoid


def test_a_refusal_plans_the_packs_fallback_template_instead_of_the_next_question(
    pack: AgentPack,
) -> None:
    plan = plan_response(
        [contribution(ASK, "ask_order_id", "ask_order_id")],
        [],
        pack,
        categories=[OutcomeCategory.OUT_OF_SCOPE],
    )
    assert plan.response_type is ResponseType.REFUSE
    assert plan.contributions == []
    assert [t.template_id for t in plan.templates] == ["out_of_scope_fallback"]
