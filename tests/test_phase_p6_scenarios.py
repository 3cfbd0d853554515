"""P6: start, continue with step skipping, pause, complete, cancel; a refund over turns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from processors.phases.customer_data import apply_values, update_customer_data
from processors.phases.scenarios import expected_fields, orchestrate
from processors.phases.sensor import mask_customer_data, sense
from schemas.domain.customer_data import CustomerDataStore, VariableSource
from schemas.domain.scenario import ContributionKind, ScenarioAction
from schemas.domain.session import ScenarioStatus, SessionState
from schemas.pack.agent_pack import AgentPack
from sinks.pack_files import load_pack

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def new_session() -> SessionState:
    return SessionState(
        session_id="s",
        tenant_id="acme-shop",
        agent_id="support",
        customer_id="c",
        turn_count=0,
        updated_at=NOW,
    )


def empty_store() -> CustomerDataStore:
    return CustomerDataStore(tenant_id="acme-shop", customer_id="c", updated_at=NOW)


def with_data(pack: AgentPack, **values: object) -> CustomerDataStore:
    return apply_values(
        empty_store(), pack.fields, values, NOW, source=VariableSource.TOOL, confidence=1.0
    ).store


def turn(pack: AgentPack, session: SessionState, store: CustomerDataStore, text: str, at: datetime):
    """P2 -> P3 -> P6 for one message; the sensor's intent stands in for P4's canonical one."""
    mask = mask_customer_data(pack.fields, store)
    snap = sense(
        text, mask, pack.glossary, [], pack.intents, expected_fields=expected_fields(session, pack)
    )
    store = update_customer_data(store, pack.fields, snap, at).store
    result = orchestrate(session, pack, snap.new_intent_label, store, [], at)
    # what P11 would persist: the turn is counted
    return result, result.session.model_copy(update={"turn_count": session.turn_count + 1}), store


def test_order_id_and_reason_in_one_message_skip_both_questions(pack: AgentPack) -> None:
    result, session, _ = turn(
        pack, new_session(), empty_store(), "I want a refund, order A-10023 arrived broken", NOW
    )
    (decision,) = result.decisions
    assert decision.action is ScenarioAction.START
    assert decision.skipped_step_ids == ["ask_order_id", "ask_reason"]
    assert decision.entered_step_id == "check_eligibility"
    assert decision.contribution is not None
    assert decision.contribution.kind is ContributionKind.ACTION_HINT
    assert session.scenarios[0].skipped_step_ids == ["ask_order_id", "ask_reason"]


def test_without_the_data_the_scenario_asks_the_entry_question(pack: AgentPack) -> None:
    result, _, _ = turn(pack, new_session(), empty_store(), "I want a refund", NOW)
    (decision,) = result.decisions
    assert decision.entered_step_id == "ask_order_id" and decision.skipped_step_ids == []
    assert decision.contribution is not None
    assert decision.contribution.kind is ContributionKind.ASK
    assert decision.contribution.field_keys == ["order_id"]


def test_refund_flow_across_turns_carries_the_session_over(pack: AgentPack) -> None:
    session, store = new_session(), empty_store()
    # turn 1: order and reason at once; P7 would then run check_refund_eligibility
    r1, session, store = turn(pack, session, store, "Refund for order A-10023 please", NOW)
    assert r1.decisions[0].entered_step_id == "ask_reason"
    t2 = NOW + timedelta(minutes=1)
    r2, session, store = turn(pack, session, store, "it arrived broken", t2)
    (d2,) = r2.decisions
    assert (d2.action, d2.from_step_id, d2.entered_step_id) == (
        ScenarioAction.CONTINUE,
        "ask_reason",
        "check_eligibility",
    )
    store = apply_values(
        store,
        pack.fields,
        {"refund_eligible": True, "max_refund_amount": 200},
        t2,
        source=VariableSource.TOOL,
        confidence=1.0,
    ).store
    # turn 3: eligibility known -> the confirmation question, then a "yes" to it
    t3 = NOW + timedelta(minutes=2)
    r3, session, store = turn(pack, session, store, "ok, so?", t3)
    (d3,) = r3.decisions
    assert d3.entered_step_id == "confirm_refund"
    assert d3.contribution is not None and d3.contribution.kind is ContributionKind.CONFIRM
    assert session.scenarios[0].completed_step_ids == ["ask_reason", "check_eligibility"]
    assert session.turn_count == 3 and session.updated_at == t3
    r4, session, store = turn(pack, session, store, "yes, go ahead", t3)
    assert r4.decisions[0].entered_step_id == "issue_refund"
    store = apply_values(
        store, pack.fields, {"refund_id": "R-1"}, t3, source=VariableSource.TOOL, confidence=1.0
    ).store
    r5, session, _ = turn(pack, session, store, "thanks", t3)
    assert r5.decisions[0].action is ScenarioAction.COMPLETE
    assert session.scenarios[0].status is ScenarioStatus.COMPLETED


def test_a_new_scenario_pauses_the_active_one_and_it_resumes_later(pack: AgentPack) -> None:
    store = with_data(pack)
    first = orchestrate(new_session(), pack, "refund_request", store, [], NOW)
    second = orchestrate(first.session, pack, "order_status", store, [], NOW)
    actions = {d.scenario_id: d.action for d in second.decisions}
    assert actions == {"refund": ScenarioAction.PAUSE, "order_tracking": ScenarioAction.START}
    status = {s.scenario_id: s.status for s in second.session.scenarios}
    assert status == {"refund": ScenarioStatus.PAUSED, "order_tracking": ScenarioStatus.ACTIVE}
    done = with_data(pack, order_id="A-10024", order_status="cancelled", tracking_status="x")
    third = orchestrate(second.session, pack, None, done, [], NOW)
    actions = {d.scenario_id: d.action for d in third.decisions}
    assert actions == {"order_tracking": ScenarioAction.COMPLETE, "refund": ScenarioAction.CONTINUE}


def test_several_scenarios_can_stay_active(pack: AgentPack) -> None:
    first = orchestrate(new_session(), pack, "refund_request", with_data(pack), [], NOW)
    both = orchestrate(
        first.session, pack, "order_status", with_data(pack), [], NOW, pause_others=False
    )
    assert {s.status for s in both.session.scenarios} == {ScenarioStatus.ACTIVE}
    assert len(both.contributions) == 2


def test_transition_priority_and_condition_pick_the_branch(pack: AgentPack) -> None:
    store = with_data(pack, order_id="A-1", order_status="cancelled", tracking_status="none")
    result = orchestrate(new_session(), pack, "order_status", store, [], NOW)
    (decision,) = result.decisions
    assert decision.action is ScenarioAction.COMPLETE  # look_up -> report_cancelled (prio 10)
    assert decision.entered_step_id == "report_cancelled"
    assert decision.contribution is not None
    assert decision.contribution.template_id == "order_cancelled_status"


def test_an_intent_transition_leaves_an_unfinished_step(pack: AgentPack) -> None:
    store = with_data(
        pack, order_id="A-1", refund_reason="late", refund_eligible=True, max_refund_amount=50
    )
    started = orchestrate(new_session(), pack, "refund_request", store, [], NOW)
    assert started.session.scenarios[0].current_step_id == "confirm_refund"
    redirected = orchestrate(started.session, pack, "speak_to_human", store, [], NOW)
    (decision,) = redirected.decisions
    assert decision.entered_step_id == "not_eligible"
    assert decision.action is ScenarioAction.COMPLETE


def test_cancel_intent_cancels_open_scenarios(pack: AgentPack) -> None:
    started = orchestrate(new_session(), pack, "refund_request", with_data(pack), [], NOW)
    cancelled = orchestrate(started.session, pack, "cancel", with_data(pack), [], NOW)
    assert [d.action for d in cancelled.decisions] == [ScenarioAction.CANCEL]
    assert cancelled.session.scenarios[0].status is ScenarioStatus.CANCELLED


def test_expected_fields_are_the_current_steps_collects(pack: AgentPack) -> None:
    started = orchestrate(new_session(), pack, "refund_request", with_data(pack), [], NOW)
    assert expected_fields(started.session, pack) == {"order_id"}
