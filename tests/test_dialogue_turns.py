"""Whole turns of the example pack in one process (real embedding model, Qdrant local mode,
the pack's own tools): the demo's "Yes please, go ahead." is a confirmation, a greeting and a
farewell get the pack's own words, a "thanks" inside a flow keeps the question, and an
informational rule answers where no scenario does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.domain.dialogue import ReadingKind
from schemas.domain.outcome import OutcomeCategory
from schemas.domain.scenario import ScenarioAction
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import TurnResponse
from streams.demo import SCRIPT
from tests.test_security_helpers import Turns


@pytest.fixture(scope="module")
def turns() -> Iterator[Turns]:
    created = Turns.create()
    created.add_pack()
    yield created
    created.ports.close()


async def conversation(
    turns: Turns, *messages: str, channel_id: str
) -> list[tuple[TurnResponse, TurnRecord]]:
    turns.forget()
    return [
        await turns.say(message, turn_id=f"{channel_id}-{i}", channel_id=channel_id)
        for i, message in enumerate(messages)
    ]


def bare_phrases(text: str) -> list[str]:
    """Sentences that are only one of the example pack's must_include phrases."""
    phrases = {"order number", "confirm"}
    return [s for s in text.replace("!", ".").split(".") if s.strip().lower() in phrases]


async def test_the_demos_second_turn_is_a_confirmation_not_a_goodbye(turns: Turns) -> None:
    (said, first), (answer, second) = await conversation(turns, *SCRIPT, channel_id="demo")
    checks = [(e.attempt, e.passed) for e in first.context.enforcement]
    assert checks == [(1, False), (2, True)]  # 900 USD broke the tier limit, then dropped
    assert said.text is not None and "the refund for order A-10023?" in said.text
    assert first.context.dialogue is not None
    assert first.context.dialogue.kind is ReadingKind.NEW_TOPIC
    reading = second.context.dialogue
    assert reading is not None
    assert (reading.kind, reading.step_id, reading.affirmed) == (
        ReadingKind.AFFIRM,
        "confirm_refund",
        True,
    )
    assert second.context.canonical_intent != "goodbye"
    assert [(d.scenario_id, d.action) for d in second.context.scenario_decisions] == [
        ("refund", ScenarioAction.COMPLETE)
    ]
    assert [c.tool for c in second.context.tool_calls if c.success] == ["create_refund"]
    assert answer.text is not None and answer.text.startswith("Done: refund")
    assert "nice day" not in answer.text and bare_phrases(answer.text) == []


async def test_hi_gets_the_packs_greeting(turns: Turns) -> None:
    ((answer, record),) = await conversation(turns, "Hi", channel_id="hi")
    assert record.context.canonical_intent == "greeting"
    assert answer.text is not None and "Welcome to Acme Shop" in answer.text
    assert record.context.outcome is not None
    assert OutcomeCategory.KNOWLEDGE_GAP not in record.context.outcome.categories
    assert bare_phrases(answer.text) == []


async def test_thanks_bye_gets_the_packs_farewell_without_a_bare_phrase(turns: Turns) -> None:
    ((answer, record),) = await conversation(turns, "thanks, bye", channel_id="bye")
    assert record.context.canonical_intent == "goodbye"
    assert answer.text is not None and "Have a nice day!" in answer.text
    assert "Order number." not in answer.text and bare_phrases(answer.text) == []


async def test_a_thanks_inside_a_flow_keeps_the_question_and_no_farewell(turns: Turns) -> None:
    (_, asked), (answer, thanked) = await conversation(
        turns, "I want a refund", "thanks", channel_id="thanks"
    )
    assert [d.entered_step_id for d in asked.context.scenario_decisions] == ["ask_order_id"]
    assert thanked.context.dialogue is not None
    assert thanked.context.dialogue.kind is ReadingKind.NO_ANSWER
    assert [(d.scenario_id, d.action) for d in thanked.context.scenario_decisions] == [
        ("refund", ScenarioAction.CONTINUE)
    ]
    assert answer.text is not None and "order number" in answer.text
    assert "nice day" not in answer.text


async def test_an_informational_rule_answers_where_no_scenario_does(turns: Turns) -> None:
    ((answer, record),) = await conversation(
        turns, "which payment methods do you accept?", channel_id="pay"
    )
    assert record.context.scenario_decisions == []
    assert answer.text is not None and "PayPal" in answer.text
    assert record.context.outcome is not None
    assert OutcomeCategory.KNOWLEDGE_GAP not in record.context.outcome.categories


async def test_a_topic_switch_pauses_the_flow_with_its_data_and_it_resumes(turns: Turns) -> None:
    (_, refund), (_, switch), (_, back) = await conversation(
        turns,
        "I want a refund for order A-10023, it arrived broken",
        "actually, how do I return an item?",
        "it's damaged",
        channel_id="switch",
    )
    assert [d.entered_step_id for d in refund.context.scenario_decisions] == ["confirm_refund"]
    assert switch.context.dialogue is not None
    assert switch.context.dialogue.kind is ReadingKind.SWITCH
    actions = {d.scenario_id: d.action for d in switch.context.scenario_decisions}
    assert actions == {"refund": ScenarioAction.PAUSE, "return_item": ScenarioAction.START}
    kept = switch.context.customer_data
    assert kept is not None
    assert {"refund_reason", "refund_eligible", "max_refund_amount"} <= set(kept.variables)
    actions = {d.scenario_id: d.action for d in back.context.scenario_decisions}
    assert actions == {"return_item": ScenarioAction.COMPLETE, "refund": ScenarioAction.CONTINUE}
    resumed = next(d for d in back.context.scenario_decisions if d.scenario_id == "refund")
    assert resumed.contribution is not None
    assert resumed.contribution.step_id == "confirm_refund"
