"""P9: heuristic composition, safe rendering, outcomes, channel formatting, LLM mode."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from processors.llm import LlmError, LlmResult
from processors.phases.generation import format_for_channel, generate, render
from schemas.domain.outcome import OutcomeCategory, Resolution
from schemas.domain.phase import Phase
from schemas.domain.plan import PlannedTemplate, ResponsePlan, ResponseType
from schemas.domain.scenario import ContributionKind, ScenarioContribution
from schemas.domain.usage import TokenUsage
from schemas.pack.agent_pack import AgentPack
from sinks.pack_files import load_pack
from streams.settings import TaskMode

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
H = TaskMode.HEURISTIC


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def template_plan(
    pack: AgentPack, *ids: str, kind: ResponseType = ResponseType.ANSWER, **extra: Any
) -> ResponsePlan:
    texts = {t.id: t.text for t in pack.templates}
    return ResponsePlan(
        response_type=kind,
        templates=[PlannedTemplate(template_id=i, text=texts[i]) for i in ids],
        **extra,
    )


async def test_templates_are_rendered_with_variables_and_number_formats(pack: AgentPack) -> None:
    plan = template_plan(pack, "confirm_refund", kind=ResponseType.CONFIRM)
    out = await generate(
        plan,
        {"refund_amount": 80, "max_refund_amount": 80, "order_id": "A-10024"},
        pack,
        mode=H,
        channel="webchat",
    )
    assert out.text == (
        "I checked order A-10024: I can refund up to 80.00 USD to your original payment "
        "method. The refund amount is 80.00 USD. Please confirm: shall I go ahead with the "
        "refund for order A-10024?"
    )
    assert out.outcome.resolution is Resolution.PARTIAL
    assert out.usage == []


async def test_a_sentence_with_a_missing_variable_is_left_out(pack: AgentPack) -> None:
    plan = template_plan(pack, "refund_not_eligible")
    out = await generate(plan, {"order_id": "A-10023"}, pack, mode=H, channel="webchat")
    assert "{" not in out.text and "eligibility_note" not in out.text
    assert out.text == "I can pass it to a colleague who can take a closer look."
    assert out.outcome.resolution is Resolution.PARTIAL


@pytest.mark.parametrize(
    "hostile",
    [
        "{order_id.__class__}",
        "{order_id.__class__.__mro__}",
        "{order_id[0]}",
        "{order_id!r}",
        "{__import__}",
        "{order_id:{order_id}}",
    ],
)
async def test_format_attributes_are_never_executed(pack: AgentPack, hostile: str) -> None:
    plan = ResponsePlan(
        response_type=ResponseType.ANSWER,
        templates=[
            PlannedTemplate(template_id="t", text=f"Order {{order_id}} found. Look: {hostile}.")
        ],
    )
    out = await generate(plan, {"order_id": "A-10023"}, pack, mode=H, channel="webchat")
    assert out.text == "Order A-10023 found."
    assert "class" not in out.text and "str" not in out.text


def test_render_substitutes_once_and_keeps_escaped_braces() -> None:
    assert render("{{literal}} {name}", {"name": "{secret}"}) == "{literal} {secret}"
    assert render("{flag} {items}", {"flag": True, "items": ["a", "b"]}) == "yes a, b"


async def test_must_avoid_sentences_are_dropped_and_must_include_is_never_a_bare_sentence(
    pack: AgentPack,
) -> None:
    plan = ResponsePlan(
        response_type=ResponseType.ANSWER,
        contributions=[
            ScenarioContribution(
                scenario_id="x",
                step_id="a",
                kind=ContributionKind.INFORM,
                text="Please calm down. Your order is on its way.",
            ),
        ],
        must_include=["order number"],
        must_avoid=["calm down"],
    )
    out = await generate(plan, {}, pack, mode=H, channel="webchat")
    assert out.text == "Your order is on its way."
    assert out.outcome.resolution is Resolution.RESOLVED


async def test_refusal_escalation_and_gaps_have_their_categories(pack: AgentPack) -> None:
    refuse = ResponsePlan(response_type=ResponseType.REFUSE)
    out = await generate(refuse, {}, pack, mode=H, channel="webchat")
    assert out.outcome.categories == [OutcomeCategory.OUT_OF_SCOPE]
    assert out.outcome.resolution is Resolution.UNRESOLVED
    assert out.text.startswith("I can help with Acme orders")

    safety = await generate(
        refuse, {}, pack, mode=H, channel="webchat", categories=[OutcomeCategory.SAFETY_REFUSAL]
    )
    assert safety.outcome.categories == [OutcomeCategory.SAFETY_REFUSAL]

    escalate = await generate(
        ResponsePlan(response_type=ResponseType.ESCALATE), {}, pack, mode=H, channel="webchat"
    )
    assert escalate.outcome.resolution is Resolution.REDIRECTED
    assert "colleague" in escalate.text

    gap = await generate(
        ResponsePlan(response_type=ResponseType.ANSWER), {}, pack, mode=H, channel="webchat"
    )
    assert gap.outcome.categories == [OutcomeCategory.KNOWLEDGE_GAP]
    assert gap.text.startswith("I don't know that for sure")

    broken = await generate(
        ResponsePlan(response_type=ResponseType.ANSWER),
        {},
        pack,
        mode=H,
        channel="webchat",
        categories=[OutcomeCategory.SYSTEM_ERROR],
    )
    assert broken.outcome.categories == [OutcomeCategory.SYSTEM_ERROR]
    assert broken.text.startswith("Sorry, I can't reach our order system")


def test_channel_formatting() -> None:
    long = " ".join(f"Sentence number {i} is here." for i in range(40))
    sms = format_for_channel(long, "sms")
    assert len(sms) <= 320 and sms.endswith(".")
    assert format_for_channel(long, "webchat") == long
    voice = format_for_channel("**Great**, see [the portal](https://x.example).\n- item", "phone")
    assert voice == "Great, see the portal. item"


class FakeLlm:
    def __init__(self, reply: dict[str, Any] | Exception) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    async def complete_json(
        self,
        *,
        phase: Phase,
        system: str,
        user: str,
        schema_name: str,
        schema: Mapping[str, Any],
        settings: object = None,
    ) -> LlmResult:
        self.prompts.append(system + user)
        if isinstance(self.reply, Exception):
            raise self.reply
        usage = [TokenUsage(phase=phase, model="m", prompt_tokens=3, completion_tokens=2)]
        return LlmResult(data=self.reply, usage=usage, attempts=1)


async def test_llm_mode_uses_the_model_and_falls_back_to_the_heuristic(pack: AgentPack) -> None:
    plan = template_plan(pack, "tracking_update")
    variables = {"order_id": "A-10024", "tracking_status": "in transit", "email": "d@x.example"}
    good = FakeLlm(
        {"text": "Your parcel A-10024 is in transit.", "categories": [], "resolution": "RESOLVED"}
    )
    out = await generate(plan, variables, pack, mode=TaskMode.LLM, channel="webchat", llm=good)
    assert out.text == "Your parcel A-10024 is in transit." and len(out.usage) == 1
    assert "d@x.example" not in good.prompts[0]  # sensitive fields stay out of prompts

    failing = FakeLlm(LlmError("generation: APITimeoutError after 3 attempts"))
    out = await generate(plan, variables, pack, mode=TaskMode.LLM, channel="webchat", llm=failing)
    assert out.text == "Your order A-10024 is in transit."
    assert out.llm_error is not None and "APITimeoutError" in out.llm_error
