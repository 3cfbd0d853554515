"""P6's dialogue state: a turn inside a running scenario is first read as an answer to the
waiting step; scenario choice weighs retrieval, intent and the fields given; paused
scenarios keep their data; failed ACTION steps run again; reserved cancel ids give way to a
pack's own cancel flow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from processors.phases.customer_data import (
    apply_values,
    customer_variables,
    update_customer_data,
)
from processors.phases.dialogue import read_turn, scenario_evidence
from processors.phases.scenarios import expected_fields, orchestrate
from processors.phases.sensor import mask_customer_data, sense
from processors.phases.tools import bindings_due
from processors.retrieval.model import Retrieved
from processors.turn.decide import new_case, open_case_fields, with_pack_yes_no
from schemas.domain.customer_data import CustomerDataStore, VariableSource
from schemas.domain.dialogue import ReadingKind
from schemas.domain.scenario import ContributionKind, ScenarioAction
from schemas.domain.session import ActiveScenario, ScenarioStatus, SessionState
from schemas.domain.turn_context import TurnContext
from schemas.pack.agent_pack import AgentPack
from schemas.pack.dialogue import DialogueOptions
from schemas.pack.language import Intent
from schemas.pack.scenarios import Scenario, Step, StepKind
from schemas.pack.tools import SideEffect
from sinks.pack_files import load_pack
from tests.pipeline_support import customer_says

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def session_in(scenario_id: str, step_id: str, done: list[str] | None = None) -> SessionState:
    return SessionState(
        session_id="s",
        tenant_id="acme-shop",
        agent_id="support",
        customer_id="c",
        turn_count=2,
        updated_at=NOW,
        scenarios=[
            ActiveScenario(
                scenario_id=scenario_id,
                scenario_version=1,
                current_step_id=step_id,
                status=ScenarioStatus.ACTIVE,
                completed_step_ids=done or [],
            )
        ],
    )


def store_with(pack: AgentPack, at: datetime = NOW, **values: object) -> CustomerDataStore:
    empty = CustomerDataStore(tenant_id="acme-shop", customer_id="c", updated_at=at)
    return apply_values(
        empty, pack.fields, values, at, source=VariableSource.TOOL, confidence=1.0
    ).store


def scored(**scores: float) -> list[Retrieved]:
    return [Retrieved(k, v, v, 0.0, "", {}) for k, v in scores.items()]


def said(
    pack: AgentPack, session: SessionState, store: CustomerDataStore, text: str
) -> tuple[CustomerDataStore, dict[str, object], list[str]]:
    """P2 + P3 of a reply: the store after it and the values it gave (field -> value)."""
    snap = sense(
        text,
        mask_customer_data(pack.fields, store),
        [],
        [],
        expected_fields=expected_fields(session, pack),
    )
    values = customer_variables(store)
    after = update_customer_data(store, pack.fields, snap, NOW + timedelta(minutes=1)).store
    new = customer_variables(after)
    given = {k: new[k] for k in snap.candidate_variables if k in new}
    changed = [k for k in given if k in values and values[k] != new[k]]
    return after, given, changed


def test_scenario_choice_weighs_retrieval_and_fields_over_the_first_intent_match(
    pack: AgentPack,
) -> None:
    # the intent names the informational tracking flow, retrieval and the fields the refund
    session = SessionState(
        session_id="s", tenant_id="acme-shop", agent_id="support", customer_id="c",
        turn_count=0, updated_at=NOW,
    )  # fmt: skip
    reading = read_turn(
        session,
        pack,
        "order_status",
        0.446,
        scored(refund=0.471, order_tracking=0.329),
        {"order_id": "A-10023", "refund_reason": "damaged"},
        (),
    )
    assert reading.reading.kind is ReadingKind.NEW_TOPIC
    assert reading.start == "refund"
    evidence = {e.scenario_id: e for e in reading.reading.evidence}
    assert evidence["refund"].filled_fields == ["refund_reason"]  # order_id: every flow's
    assert evidence["refund"].score == pytest.approx(0.571)
    assert evidence["order_tracking"].informational and evidence["order_tracking"].score > 0.6
    result = orchestrate(session, pack, "order_status", store_with(pack), [], NOW, reading=reading)
    assert [(d.scenario_id, d.action) for d in result.decisions] == [
        ("refund", ScenarioAction.START)
    ]


def test_an_informational_scenario_gives_way_to_the_action_the_message_asks_for(
    pack: AgentPack,
) -> None:
    evidence = scenario_evidence(
        pack, "order_status", 0.6, scored(refund=0.55), {}, DialogueOptions()
    )
    assert [e.scenario_id for e in evidence][:2] == ["order_tracking", "refund"]
    assert evidence[0].informational and not evidence[1].informational
    session = session_in("refund", "ask_order_id").model_copy(update={"scenarios": []})
    reading = read_turn(session, pack, "order_status", 0.6, scored(refund=0.55), {}, ())
    assert reading.start == "refund"


def test_below_the_threshold_without_its_intent_no_scenario_starts(pack: AgentPack) -> None:
    session = session_in("refund", "ask_order_id").model_copy(update={"scenarios": []})
    reading = read_turn(session, pack, "payment_issue", 0.4, scored(refund=0.41), {}, ())
    assert reading.start is None


def test_a_reply_that_answers_the_waiting_step_starts_nothing_else(pack: AgentPack) -> None:
    session = session_in("refund", "ask_reason", ["ask_order_id"])
    store = store_with(pack, order_id="A-10023")
    after, given, changed = said(pack, session, store, "it arrived broken")
    assert given == {"refund_reason": "damaged"}
    # return_item's evidence 1 - 0.55 * 0.8 = 0.56: a topic, but not above 0.5 + 0.15
    reading = read_turn(session, pack, "return_item", 0.45, scored(return_item=0.2), given, changed)
    assert reading.reading.kind is ReadingKind.ANSWER
    assert reading.start is None and reading.walk_intent is None
    result = orchestrate(session, pack, "return_item", after, [], NOW, reading=reading)
    assert [(d.scenario_id, d.action) for d in result.decisions] == [
        ("refund", ScenarioAction.CONTINUE)
    ]
    assert result.decisions[0].entered_step_id == "check_eligibility"


def test_the_same_evidence_without_an_answer_switches_and_pauses(pack: AgentPack) -> None:
    session = session_in("refund", "ask_reason", ["ask_order_id"])
    store = store_with(pack, order_id="A-10023")
    reading = read_turn(session, pack, "return_item", 0.45, scored(return_item=0.2), {}, ())
    assert (reading.reading.kind, reading.start) == (ReadingKind.SWITCH, "return_item")
    result = orchestrate(session, pack, "return_item", store, [], NOW, reading=reading)
    actions = {d.scenario_id: d.action for d in result.decisions}
    assert actions == {"refund": ScenarioAction.PAUSE, "return_item": ScenarioAction.START}


def test_a_short_thanks_keeps_the_step_waiting(pack: AgentPack) -> None:
    session = session_in("refund", "ask_reason", ["ask_order_id"])
    store = store_with(pack, order_id="A-10023")
    after, given, changed = said(pack, session, store, "ok thanks")
    assert given == {}
    reading = read_turn(session, pack, "goodbye", 0.35, scored(order_tracking=0.1), given, changed)
    assert reading.reading.kind is ReadingKind.NO_ANSWER
    result = orchestrate(session, pack, "goodbye", after, [], NOW, reading=reading)
    (decision,) = result.decisions
    assert decision.action is ScenarioAction.CONTINUE
    assert decision.contribution is not None
    assert (decision.contribution.step_id, decision.contribution.kind) == (
        "ask_reason",
        ContributionKind.ASK,
    )


@pytest.mark.parametrize(
    "reply, kind, value",
    [
        ("Yes please, go ahead.", ReadingKind.AFFIRM, True),
        ("sí, adelante", ReadingKind.AFFIRM, True),
        ("oui, d'accord", ReadingKind.AFFIRM, True),
        ("Nein, noch nicht", ReadingKind.DENY, False),
        ("não, obrigado", ReadingKind.DENY, False),
        ("No, not now", ReadingKind.DENY, False),
    ],
)
def test_a_reply_to_a_confirmation_reads_as_yes_or_no_whatever_intent_it_resembles(
    pack: AgentPack, reply: str, kind: ReadingKind, value: bool
) -> None:
    session = session_in(
        "refund", "confirm_refund", ["ask_order_id", "ask_reason", "check_eligibility"]
    )
    store = store_with(pack, order_id="A-10023", refund_reason="damaged", refund_eligible=True)
    _, given, changed = said(pack, session, store, reply)
    reading = read_turn(session, pack, "goodbye", 0.2, scored(change_address=0.21), given, changed)
    assert (reading.reading.kind, reading.reading.affirmed) == (kind, value)
    assert reading.reading.fields == ["refund_confirmed"]
    assert reading.walk_intent is None  # "Yes please" is no goodbye


def test_a_correction_at_the_confirmation_changes_the_value_instead_of_declining(
    pack: AgentPack,
) -> None:
    session = session_in(
        "refund", "confirm_refund", ["ask_order_id", "ask_reason", "check_eligibility"]
    )
    store = store_with(pack, order_id="A-10023", refund_reason="damaged", refund_eligible=True)
    _, given, changed = said(pack, session, store, "no, it was the wrong item")
    assert given == {"refund_reason": "wrong_item", "refund_confirmed": False}
    reading = read_turn(session, pack, None, 0.0, [], given, changed)
    assert reading.reading.kind is ReadingKind.CORRECTION
    assert reading.reading.fields == ["refund_reason"]
    assert "refund_confirmed" in reading.retract


def test_a_start_keeps_what_the_paused_scenario_collected(pack: AgentPack) -> None:
    before = NOW - timedelta(minutes=5)
    store = store_with(
        pack, before, order_id="A-10023", refund_reason="damaged", max_refund_amount=80,
        refund_eligible=True, rma_number="R-1",
    )  # fmt: skip
    paused = (
        session_in("refund", "confirm_refund")
        .scenarios[0]
        .model_copy(update={"status": ScenarioStatus.PAUSED})
    )
    session = session_in("order_tracking", "lookup").model_copy(update={"scenarios": [paused]})
    keep = open_case_fields(session, pack)
    fresh = new_case(store, NOW, said_now=set(), keep=keep)
    assert {"order_id", "refund_reason", "max_refund_amount", "refund_eligible"} <= set(
        fresh.variables
    )
    assert "rma_number" not in fresh.variables  # of no open scenario: an earlier case


def test_an_action_step_whose_tool_failed_runs_its_tools_again(pack: AgentPack) -> None:
    session = session_in("refund", "check_eligibility", ["ask_order_id", "ask_reason"])
    store = store_with(pack, order_id="A-10023", refund_reason="damaged")  # no verdict yet
    result = orchestrate(session, pack, "refund_request", store, [], NOW)
    (decision,) = result.decisions
    assert (decision.action, decision.entered_step_id) == (
        ScenarioAction.CONTINUE,
        "check_eligibility",
    )
    assert "check_refund_eligibility" in {d.tool_id for d in bindings_due(pack, [], [decision])}


def with_cancel_flow(pack: AgentPack, **dialogue: object) -> AgentPack:
    flow = Scenario(
        id="cancel_subscription",
        name="Cancel the subscription",
        entry_intents=["cancel"],
        entry_step_id="ask_phone",
        steps=[Step(id="ask_phone", kind=StepKind.QUESTION, collects=["phone"])],
    )
    intent = Intent(id="cancel", examples=["cancel my subscription"])
    agent = pack.agent.model_copy(
        update={"dialogue": DialogueOptions.model_validate(dialogue)} if dialogue else {}
    )
    return pack.model_copy(
        update={
            "agent": agent,
            "intents": [*pack.intents, intent],
            "scenarios": [*pack.scenarios, flow],
        }
    )


def test_a_packs_own_cancel_intent_starts_its_cancellation_scenario(pack: AgentPack) -> None:
    own = with_cancel_flow(pack)
    session = session_in("refund", "ask_reason", ["ask_order_id"])
    store = store_with(pack, order_id="A-10023")
    result = orchestrate(session, own, "cancel", store, [], NOW)
    actions = {d.scenario_id: d.action for d in result.decisions}
    assert actions == {
        "refund": ScenarioAction.PAUSE,
        "cancel_subscription": ScenarioAction.START,
    }
    # without such a scenario the reserved id cancels, as before
    cancelled = orchestrate(session, pack, "cancel", store, [], NOW)
    assert [d.action for d in cancelled.decisions] == [ScenarioAction.CANCEL]


def test_reserved_cancel_ids_are_the_packs_to_choose(pack: AgentPack) -> None:
    session = session_in("refund", "ask_reason", ["ask_order_id"])
    store = store_with(pack, order_id="A-10023")
    none_reserved = with_cancel_flow(pack, cancel_intents=[])
    result = orchestrate(session, none_reserved, "stop", store, [], NOW)
    assert [d.action for d in result.decisions] == [ScenarioAction.CONTINUE]
    own_word = with_cancel_flow(pack, cancel_intents=["forget_it"])
    result = orchestrate(session, own_word, "forget_it", store, [], NOW)
    assert [d.action for d in result.decisions] == [ScenarioAction.CANCEL]


def test_a_failed_write_that_may_have_happened_runs_again_only_when_asked(
    pack: AgentPack,
) -> None:
    done = ["ask_order_id", "ask_reason", "check_eligibility", "confirm_refund"]
    session = session_in("refund", "issue_refund", done)
    store = store_with(pack, order_id="A-10023", refund_confirmed=True)  # no refund_id yet
    once = pack.model_copy(
        update={
            "tools": [
                t.model_copy(update={"side_effect": SideEffect.NON_IDEMPOTENT_WRITE, "retries": 0})
                if t.id == "create_refund"
                else t
                for t in pack.tools
            ]
        }
    )
    held = orchestrate(session, once, None, store, [], NOW, retry_writes=False)
    assert held.decisions[0].entered_step_id is None
    assert bindings_due(once, [], held.decisions) == []
    asked = orchestrate(session, once, None, store, [], NOW, retry_writes=True)
    assert [d.tool_id for d in bindings_due(once, [], asked.decisions)] == ["create_refund"]
    # an idempotent write (the example pack's create_refund) runs again either way
    again = orchestrate(session, pack, None, store, [], NOW, retry_writes=False)
    assert [d.tool_id for d in bindings_due(pack, [], again.decisions)] == ["create_refund"]


def test_a_bare_value_never_switches_however_well_another_flow_matches_it(
    pack: AgentPack,
) -> None:
    session = session_in("return_item", "ask_order_id")
    given = {"order_id": "A-10023"}
    strong = scored(refund=0.7)  # "Please refund order A-10023" is a refund example
    bare = read_turn(session, pack, "refund_request", 0.3, strong, given, (), message="A-10023")
    assert (bare.reading.kind, bare.start) == (ReadingKind.ANSWER, None)
    asked = "A-10023, but actually I want my money back for the broken kettle instead"
    switch = read_turn(session, pack, "refund_request", 0.3, strong, given, (), message=asked)
    assert (switch.reading.kind, switch.start) == (ReadingKind.SWITCH, "refund")


def test_a_yes_that_resembles_never_mind_confirms_and_does_not_cancel(pack: AgentPack) -> None:
    own = with_cancel_flow(pack, cancel_intents=["goodbye"])
    session = session_in("refund", "confirm_refund", ["ask_order_id", "ask_reason"])
    given = {"refund_confirmed": True}
    weak = read_turn(session, own, "goodbye", 0.3, [], given, (), message="yes, go ahead")
    assert weak.reading.kind is ReadingKind.AFFIRM
    strong = read_turn(session, own, "goodbye", 0.8, [], {}, (), message="forget it, bye")
    assert strong.reading.kind is ReadingKind.CANCEL


def test_a_correction_goes_back_to_its_step_and_forgets_what_was_computed_from_it(
    pack: AgentPack,
) -> None:
    session = session_in(
        "refund", "confirm_refund", ["ask_order_id", "ask_reason", "check_eligibility"]
    )
    given = {"refund_reason": "wrong_item", "refund_confirmed": False}
    reading = read_turn(session, pack, None, 0.0, [], given, ["refund_reason"])
    assert reading.rewind_to == "ask_reason"
    assert {"refund_confirmed", "refund_eligible", "max_refund_amount"} <= reading.retract
    assert "order_id" not in reading.retract and "refund_reason" not in reading.retract
    store = store_with(pack, order_id="A-10023", refund_reason="wrong_item")
    result = orchestrate(session, pack, None, store, [], NOW, reading=reading)
    (decision,) = result.decisions
    assert (decision.from_step_id, decision.entered_step_id) == ("ask_reason", "check_eligibility")


def test_a_question_a_rule_answers_in_words_starts_no_flow(pack: AgentPack) -> None:
    session = session_in("refund", "ask_order_id").model_copy(update={"scenarios": []})
    evidence = scored(refund=0.6)
    answered = read_turn(session, pack, "refund_request", 0.6, evidence, {}, (), answer_score=0.9)
    assert answered.start is None
    flow = read_turn(session, pack, "refund_request", 0.6, evidence, {}, (), answer_score=0.7)
    assert flow.start == "refund"


def test_the_packs_own_yes_and_no_words_answer_a_confirmation(pack: AgentPack) -> None:
    own = pack.model_copy(
        update={
            "agent": pack.agent.model_copy(
                update={"dialogue": DialogueOptions(affirm=["make it so"], deny=["hold off"])}
            )
        }
    )
    session = session_in("refund", "confirm_refund", ["ask_order_id", "ask_reason"])
    store = store_with(pack, order_id="A-10023")

    def answer(text: str) -> object:
        context = TurnContext(
            input=customer_says("v1", text), received_at=NOW, session=session, customer_data=store
        )
        found = with_pack_yes_no(context, own, store, NOW)
        return customer_variables(found).get("refund_confirmed")

    assert answer("make it so") is True
    assert answer("yes, but hold off until Friday") is False  # the pack's no wins
    assert answer("what is the weather") is None
    assert answer("yes") is None  # the sensor's own words: nothing to add here
