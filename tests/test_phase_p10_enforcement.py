"""P10: hard constraints (GLOBAL ones always), both lanes, and the remediation loop with P9."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from processors.phases.enforcement import Decision, constraints_to_check, enforce
from processors.phases.generation import generate
from processors.phases.planning import plan_response
from schemas.domain.enforcement import EnforcementLane, JudgeVerdict, RuleJudgement
from schemas.domain.outcome import OutcomeCategory, Resolution, TurnOutcome
from schemas.domain.plan import ResponsePlan, ResponseType
from schemas.domain.rules import AppliedRule, RuleVerdict
from schemas.domain.scenario import ContributionKind, ScenarioContribution
from schemas.pack.agent_pack import AgentPack
from schemas.pack.rules import Rule
from sinks.pack_files import load_pack
from streams.settings import TaskMode

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
STANDARD = {"customer_tier": "standard", "order_id": "A-10023", "order_total": 6000.0}
OPEN = TurnOutcome(resolution=Resolution.RESOLVED)
ANSWER = ResponsePlan(response_type=ResponseType.ANSWER)


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def applied(*ids: str) -> list[AppliedRule]:
    return [AppliedRule(rule_id=i, score=1.0, verdict=RuleVerdict.APPLIES) for i in ids]


async def test_global_hard_constraints_are_checked_even_when_not_retrieved(pack: AgentPack) -> None:
    checked = {r.id for r in constraints_to_check(pack, [])}
    assert {"refund_within_tier_limit", "no_card_numbers", "no_restock_promises"} <= checked
    assert "address_change_before_shipping" not in checked  # SCENARIO scope, not applied
    assert "address_change_before_shipping" in {
        r.id for r in constraints_to_check(pack, applied("address_change_before_shipping"))
    }
    out = await enforce(
        "We can refund 5000 USD today.",
        ANSWER,
        [],
        pack,
        STANDARD,
        attempt=1,
        max_attempts=3,
        outcome=OPEN,
    )
    assert [v.rule_id for v in out.result.violations] == ["refund_within_tier_limit"]


async def test_a_too_large_refund_is_regenerated_until_it_passes(pack: AgentPack) -> None:
    contributions = [
        ScenarioContribution(
            scenario_id="refund",
            step_id="confirm_refund",
            kind=ContributionKind.CONFIRM,
            template_id="confirm_refund",
        )
    ]
    rules = applied("confirm_refund_summary")
    plan = plan_response(contributions, rules, pack)
    variables = {**STANDARD, "max_refund_amount": 5000}

    first = await generate(plan, variables, pack, mode=TaskMode.HEURISTIC, channel="webchat")
    assert "5000.00 USD" in first.text
    check = await enforce(
        first.text, plan, rules, pack, variables, attempt=1, max_attempts=3, outcome=first.outcome
    )
    assert check.decision is Decision.REGENERATE
    assert [h.rule_id for h in check.hints] == ["refund_within_tier_limit"]
    assert check.result.remediated and not check.result.passed

    second = await generate(
        plan, variables, pack, mode=TaskMode.HEURISTIC, channel="webchat", hints=check.hints
    )
    assert "5000" not in second.text and second.text != first.text
    recheck = await enforce(
        second.text, plan, rules, pack, variables, attempt=2, max_attempts=3, outcome=second.outcome
    )
    assert recheck.decision is Decision.PASS and recheck.result.passed
    assert "confirm" in recheck.text.lower()
    # hard rules without an expression are recorded honestly in heuristic mode
    verdicts = {j.rule_id: j.verdict for j in recheck.result.judgements}
    assert verdicts["no_restock_promises"] is JudgeVerdict.NOT_EVALUATED


async def test_a_reply_that_keeps_violating_ends_in_the_policy_fallback(pack: AgentPack) -> None:
    text = "Good news: your refund of $5,000 is approved."
    first = await enforce(text, ANSWER, [], pack, STANDARD, attempt=1, max_attempts=2, outcome=OPEN)
    assert first.decision is Decision.REGENERATE
    last = await enforce(text, ANSWER, [], pack, STANDARD, attempt=2, max_attempts=2, outcome=OPEN)
    assert last.decision is Decision.FALLBACK
    assert last.result.fallback_used and not last.result.passed
    assert last.outcome.categories == [OutcomeCategory.POLICY_RESTRICTION]
    assert last.text.startswith("I'm not able to help with that here, but a colleague can.")


async def test_an_expression_that_cannot_be_evaluated_is_a_violation(pack: AgentPack) -> None:
    broken = Rule(
        id="broken",
        condition_text="c",
        action_text="a",
        is_hard_constraint=True,
        enforcement_expression="order_total / zero > 1",
    )
    custom = pack.model_copy(update={"rules": [*pack.rules, broken]})
    out = await enforce(
        "Hello.",
        ANSWER,
        [],
        custom,
        {**STANDARD, "zero": 0},
        attempt=1,
        max_attempts=1,
        outcome=OPEN,
    )
    (violation,) = out.result.violations
    assert violation.rule_id == "broken" and violation.lane is EnforcementLane.EXPRESSION
    assert violation.detail.startswith("cannot verify")
    assert out.decision is Decision.FALLBACK


class Judge:
    def __init__(self, verdicts: dict[str, JudgeVerdict] | Exception) -> None:
        self.verdicts = verdicts

    async def judge(
        self, text: str, rules: Sequence[Rule], variables: Mapping[str, object]
    ) -> list[RuleJudgement]:
        if isinstance(self.verdicts, Exception):
            raise self.verdicts
        return [
            RuleJudgement(rule_id=r, verdict=v, reason="judged") for r, v in self.verdicts.items()
        ]


async def test_rules_without_expression_go_to_the_judge(pack: AgentPack) -> None:
    judge = Judge({"no_restock_promises": JudgeVerdict.VIOLATED})
    out = await enforce(
        "It is back next Monday.",
        ANSWER,
        [],
        pack,
        STANDARD,
        attempt=1,
        max_attempts=2,
        outcome=OPEN,
        judge=judge,
    )
    assert [(v.rule_id, v.lane) for v in out.result.violations] == [
        ("no_restock_promises", EnforcementLane.LLM_JUDGE)
    ]
    unanswered = {j.rule_id: j for j in out.result.judgements}["no_legal_or_medical_advice"]
    assert unanswered.verdict is JudgeVerdict.NOT_EVALUATED

    down = await enforce(
        "Hello.",
        ANSWER,
        [],
        pack,
        STANDARD,
        attempt=1,
        max_attempts=2,
        outcome=OPEN,
        judge=Judge(RuntimeError("llm down")),
    )
    assert down.decision is Decision.PASS
    assert all(j.verdict is JudgeVerdict.NOT_EVALUATED for j in down.result.judgements)


class OffTopic:
    calls = 0

    async def check(self, text: str, plan: ResponsePlan) -> str | None:
        OffTopic.calls += 1
        return "does not answer the question"


async def test_relevance_is_skipped_for_legitimate_refusals(pack: AgentPack) -> None:
    refuse = ResponsePlan(response_type=ResponseType.REFUSE)
    out = await enforce(
        "I can't help with that.",
        refuse,
        [],
        pack,
        STANDARD,
        attempt=1,
        max_attempts=2,
        outcome=OPEN,
        relevance=OffTopic(),
    )
    assert out.decision is Decision.PASS and OffTopic.calls == 0
    safety = TurnOutcome(
        categories=[OutcomeCategory.SAFETY_REFUSAL], resolution=Resolution.UNRESOLVED
    )
    out = await enforce(
        "I can't help with that.",
        ANSWER,
        [],
        pack,
        STANDARD,
        attempt=1,
        max_attempts=2,
        outcome=safety,
        relevance=OffTopic(),
    )
    assert out.decision is Decision.PASS and OffTopic.calls == 0
    out = await enforce(
        "Nice weather.",
        ANSWER,
        [],
        pack,
        STANDARD,
        attempt=1,
        max_attempts=2,
        outcome=OPEN,
        relevance=OffTopic(),
    )
    assert [v.lane for v in out.result.violations] == [EnforcementLane.RELEVANCE]


async def test_hard_must_avoid_phrases_are_violations(pack: AgentPack) -> None:
    out = await enforce(
        "Please send your card number.",
        ANSWER,
        [],
        pack,
        STANDARD,
        attempt=1,
        max_attempts=2,
        outcome=OPEN,
    )
    assert ("no_card_numbers", EnforcementLane.EXPRESSION) in {
        (v.rule_id, v.lane) for v in out.result.violations
    }
