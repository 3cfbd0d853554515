"""P8/P9 with declared responses: an intent's template (a greeting, a farewell never said
with a pending question) and an informational rule's action text; the pack validator
checks the references."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.pack.errors import Severity
from processors.phases.generation import generate
from processors.phases.planning import plan_response
from schemas.domain.rules import AppliedRule, RuleVerdict
from schemas.domain.scenario import ContributionKind, ScenarioContribution
from schemas.pack.agent_pack import AgentPack
from schemas.pack.fields import CustomerDataField
from sinks.pack_files import load_pack, validate_pack
from streams.settings import TaskMode
from tests.test_pack_validate import copy_pack, errors_of

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
ASK = ScenarioContribution(
    scenario_id="refund", step_id="ask_order_id", kind=ContributionKind.ASK,
    template_id="ask_order_id", field_keys=["order_id"],
)  # fmt: skip


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def rule(rule_id: str, score: float) -> AppliedRule:
    return AppliedRule(rule_id=rule_id, score=score, verdict=RuleVerdict.APPLIES)


def template_ids(
    pack: AgentPack,
    contributions: list[ScenarioContribution],
    rules: list[AppliedRule],
    intent: str | None = None,
) -> list[str]:
    plan = plan_response(contributions, rules, pack, intent=intent)
    return [t.template_id for t in plan.templates]


def test_a_greeting_intent_says_its_template_before_the_steps_question(pack: AgentPack) -> None:
    assert template_ids(pack, [], [], intent="greeting") == ["greeting_reply"]
    assert template_ids(pack, [ASK], [], intent="greeting") == ["greeting_reply", "ask_order_id"]


def test_a_farewell_is_never_planned_with_a_pending_question(pack: AgentPack) -> None:
    assert template_ids(pack, [], [], intent="goodbye") == ["goodbye_reply"]
    assert template_ids(pack, [ASK], [], intent="goodbye") == ["ask_order_id"]


def test_an_informational_rule_answers_only_when_no_step_speaks_and_it_scores(
    pack: AgentPack,
) -> None:
    assert template_ids(pack, [], [rule("payment_methods", 0.85)]) == ["payment_methods"]
    assert template_ids(pack, [], [rule("payment_methods", 0.3)]) == []  # min_k kept it
    assert template_ids(pack, [ASK], [rule("payment_methods", 0.85)]) == ["ask_order_id"]
    assert template_ids(pack, [], [rule("be_polite", 0.9)]) == []  # an instruction, not words


async def test_the_rules_words_are_the_answer(pack: AgentPack) -> None:
    plan = plan_response([], [rule("payment_methods", 0.85)], pack)
    out = await generate(plan, {}, pack, mode=TaskMode.HEURISTIC, channel="webchat")
    assert out.text.startswith("You can pay with Visa, Mastercard, American Express or PayPal.")


def test_the_validator_checks_declared_responses_and_amount_fields(tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    intents = pack_dir / "intents.yaml"
    text = intents.read_text()
    intents.write_text(text.replace("greeting_reply", "greeting_replyy"))
    errors = errors_of(validate_pack(pack_dir))
    assert [(e.file, e.code) for e in errors] == [("intents.yaml", "unknown_template")]
    assert "did you mean 'greeting_reply'" in errors[0].message
    assert errors[0].line == text.splitlines().index("    response_template_id: greeting_reply") + 1
    with pytest.raises(ValueError, match="amount_terms only applies to NUMBER"):
        CustomerDataField.model_validate(
            {"key": "x", "scope": "CASE", "type": "STRING", "amount_terms": ["credit"]}
        )
    with pytest.raises(ValueError, match="not in allowed_values"):
        CustomerDataField.model_validate(
            {
                "key": "plan",
                "scope": "CASE",
                "type": "STRING",
                "allowed_values": ["basic"],
                "extraction": {"synonyms": {"gold": ["top"]}},
            }
        )


def test_a_confirmation_template_that_names_nothing_is_a_warning(tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    templates = pack_dir / "templates.yaml"
    text = templates.read_text()
    start = text.index("  - id: confirm_refund")
    end = text.index("  - id: refund_issued")
    templates.write_text(
        text[:start] + "  - id: confirm_refund\n    text: Shall I go ahead?\n" + text[end:]
    )
    found = [(p.file, p.code, p.severity) for p in validate_pack(pack_dir)]
    assert ("scenarios/refund.yaml", "unnamed_confirmation", Severity.WARNING) in found
