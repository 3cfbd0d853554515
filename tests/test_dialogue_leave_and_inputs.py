"""P6/P8 unit tests on the example pack: a goodbye inside a flow pauses it with no question,
a short thanks does not; a step missing a tool input asks for it or says it cannot do it; a
scenario that retrieval and the intent agree on starts however weak (so no "I don't know")."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.phases.dialogue import read_turn
from processors.phases.planning import plan_response
from processors.phases.scenarios import ask_for_missing_inputs, expected_fields, orchestrate
from processors.retrieval.model import Retrieved
from schemas.domain.dialogue import ReadingKind
from schemas.domain.scenario import ContributionKind, ScenarioAction, ScenarioDecision
from schemas.domain.session import ActiveScenario, ScenarioStatus, SessionState
from schemas.pack.agent_pack import AgentPack
from sinks.pack_files import load_pack

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def session_in(scenario_id: str, step_id: str) -> SessionState:
    return SessionState(
        session_id="s", tenant_id="acme-shop", agent_id="support", customer_id="c",
        turn_count=1, pack_version=1, updated_at=NOW,
        scenarios=[ActiveScenario(
            scenario_id=scenario_id, scenario_version=1, current_step_id=step_id,
            status=ScenarioStatus.ACTIVE,
        )],
    )  # fmt: skip


def test_thanks_bye_inside_a_flow_pauses_it_and_says_the_farewell_without_the_question(
    pack: AgentPack,
) -> None:
    session = session_in("refund", "ask_order_id")
    reading = read_turn(session, pack, "goodbye", 0.4, [], {}, (), message="thanks, bye")
    assert (reading.reading.kind, reading.leave) == (ReadingKind.SWITCH, True)
    result = orchestrate(session, pack, "goodbye", None, [], NOW, reading=reading)
    assert [(d.scenario_id, d.action) for d in result.decisions] == [
        ("refund", ScenarioAction.PAUSE)
    ]
    assert result.session.scenarios[0].status is ScenarioStatus.PAUSED
    plan = plan_response(result.contributions, [], pack, intent="goodbye", paused=True)
    assert [t.template_id for t in plan.templates] == ["goodbye_reply", "resume_later"]
    # the next message resumes the flow where it was
    later = orchestrate(result.session, pack, None, None, [], NOW)
    assert [(d.action, d.contribution and d.contribution.step_id) for d in later.decisions] == [
        (ScenarioAction.CONTINUE, "ask_order_id")
    ]


@pytest.mark.parametrize("reply", ["thanks", "ok thanks", "great, cheers"])
def test_a_short_thanks_inside_a_flow_does_not_end_it(pack: AgentPack, reply: str) -> None:
    session = session_in("refund", "ask_order_id")
    reading = read_turn(session, pack, "goodbye", 0.4, [], {}, (), message=reply)
    assert (reading.reading.kind, reading.leave) == (ReadingKind.NO_ANSWER, False)


def look_up(pack: AgentPack) -> ScenarioDecision:
    session = session_in("order_tracking", "look_up")
    (decision,) = orchestrate(session, pack, None, None, [], NOW).decisions
    assert decision.contribution is not None
    assert decision.contribution.kind is ContributionKind.ACTION_HINT
    return decision


def test_an_action_step_missing_an_input_the_customer_can_give_asks_for_it(
    pack: AgentPack,
) -> None:
    (asked,), blocked = ask_for_missing_inputs([look_up(pack)], pack, {"customer_id": "C-1001"})
    assert not blocked
    assert asked.contribution is not None
    assert (asked.contribution.kind, asked.contribution.field_keys) == (
        ContributionKind.ASK,
        ["order_id"],
    )
    assert asked.contribution.template_id == "ask_order_id"  # the pack's own question
    assert "order_id" in expected_fields(session_in("order_tracking", "look_up"), pack)


def test_an_action_step_missing_a_protected_input_says_it_cannot_do_it(pack: AgentPack) -> None:
    decisions, blocked = ask_for_missing_inputs([look_up(pack)], pack, {"order_id": "A-10024"})
    assert blocked  # customer_id is protected: the customer's word for it is never taken
    assert "customer_id" not in expected_fields(session_in("order_tracking", "look_up"), pack)
    plan = plan_response([d.contribution for d in decisions if d.contribution], [], pack,
                         blocked=True)  # fmt: skip
    assert [t.template_id for t in plan.templates] == ["capability_gap_fallback"]


def test_a_scenario_retrieval_and_intent_agree_on_starts_however_weak(pack: AgentPack) -> None:
    empty = session_in("refund", "ask_order_id").model_copy(update={"scenarios": []})
    weak = [Retrieved("order_tracking", 0.2, 0.2, 0.0, "", {})]
    reading = read_turn(empty, pack, "order_status", 0.1, weak, {}, (), message="hm, parcel?")
    assert reading.start == "order_tracking"
    other = read_turn(empty, pack, "complaint", 0.1, weak, {}, (), message="hm, parcel?")
    assert other.start is None  # retrieval alone, and this weak, is no cover
