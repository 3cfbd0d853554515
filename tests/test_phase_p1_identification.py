"""P1: customer and session resolution, loads, and scenario version reconciliation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.phases.identification import (
    IdentificationPorts,
    PackSnapshot,
    ReconcileAction,
    identify,
    reconcile_scenarios,
)
from schemas.domain.customer_data import CustomerDataStore
from schemas.domain.session import ActiveScenario, ScenarioStatus, SessionState
from schemas.domain.turn_context import TurnContext
from schemas.domain.turn_input import Channel, TurnInput
from schemas.pack.agent_pack import AgentPack
from sinks.pack_files import load_pack

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


@dataclass
class Directory:
    customers: dict[tuple[str, Channel, str], str] = field(default_factory=dict)
    sessions: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def find(self, tenant_id: str, channel: Channel, channel_id: str) -> str | None:
        return self.customers.get((tenant_id, channel, channel_id))

    def create(self, tenant_id: str, channel: Channel, channel_id: str, customer_id: str) -> None:
        self.customers[(tenant_id, channel, channel_id)] = customer_id

    def open_session(self, tenant_id: str, agent_id: str, customer_id: str) -> str | None:
        return self.sessions.get((tenant_id, agent_id, customer_id))


class Ids:
    def new_customer_id(self) -> str:
        return "cust-new"

    def new_session_id(self) -> str:
        return "sess-new"


@dataclass
class Tables:
    pack: AgentPack
    sessions: dict[str, SessionState] = field(default_factory=dict)
    stores: dict[str, CustomerDataStore] = field(default_factory=dict)

    def load_session(self, tenant_id: str, session_id: str) -> SessionState | None:
        return self.sessions.get(session_id)

    def load_store(self, tenant_id: str, customer_id: str) -> CustomerDataStore | None:
        return self.stores.get(customer_id)

    def load_pack(self, tenant_id: str, agent_id: str) -> PackSnapshot:
        return PackSnapshot(self.pack, 7)


class Loader:
    def __init__(self, fn: object) -> None:
        self.fn = fn

    def load(self, a: str, b: str) -> object:
        return self.fn(a, b)  # type: ignore[operator]


def message(**extra: str) -> TurnInput:
    return TurnInput(
        tenant_id="acme-shop",
        agent_id="support",
        channel=Channel.WHATSAPP,
        channel_id="+15550100",
        message="I want a refund",
        **extra,  # type: ignore[arg-type]
    )


def ports(tables: Tables, directory: Directory) -> IdentificationPorts:
    return IdentificationPorts(
        directory,
        Ids(),
        Loader(tables.load_session),  # type: ignore[arg-type]
        Loader(tables.load_store),  # type: ignore[arg-type]
        Loader(tables.load_pack),  # type: ignore[arg-type]
    )


def session(*scenarios: ActiveScenario) -> SessionState:
    return SessionState(
        session_id="sess-1",
        tenant_id="acme-shop",
        agent_id="support",
        customer_id="cust-1",
        turn_count=3,
        scenarios=list(scenarios),
        updated_at=NOW,
    )


def test_new_customer_is_created_with_a_new_session_and_empty_data(pack: AgentPack) -> None:
    directory = Directory()
    result = identify(message(), ports(Tables(pack), directory), NOW)
    assert (result.customer_id, result.customer_created) == ("cust-new", True)
    assert result.session_created and result.session.session_id == "sess-new"
    assert result.session.turn_count == 0 and result.session.pack_version == 7
    assert result.customer_data.variables == {}
    assert directory.customers[("acme-shop", Channel.WHATSAPP, "+15550100")] == "cust-new"


def test_known_customer_resumes_the_open_session_with_its_data(pack: AgentPack) -> None:
    directory = Directory(
        {("acme-shop", Channel.WHATSAPP, "+15550100"): "cust-1"},
        {("acme-shop", "support", "cust-1"): "sess-1"},
    )
    store = CustomerDataStore(tenant_id="acme-shop", customer_id="cust-1", updated_at=NOW)
    tables = Tables(pack, {"sess-1": session()}, {"cust-1": store})
    result = identify(message(), ports(tables, directory), NOW)
    assert not result.customer_created and not result.session_created
    assert result.session.turn_count == 3 and result.customer_data is store
    context = result.into(TurnContext(input=message(), received_at=NOW))
    assert context.input.customer_id == "cust-1" and context.input.session_id == "sess-1"
    assert context.pack_version == 7 and context.session is not None


def test_gateway_session_id_wins_over_the_directory(pack: AgentPack) -> None:
    directory = Directory({("acme-shop", Channel.WHATSAPP, "+15550100"): "cust-1"})
    tables = Tables(pack, {"sess-1": session()})
    result = identify(message(session_id="sess-1"), ports(tables, directory), NOW)
    assert result.session.session_id == "sess-1" and not result.session_created


def refund_at(step: str, version: int = 1, status: ScenarioStatus = ScenarioStatus.ACTIVE):
    return ActiveScenario(
        scenario_id="refund",
        scenario_version=version,
        current_step_id=step,
        status=status,
        completed_step_ids=["ask_order_id", "gone_step"],
    )


def bumped(pack: AgentPack, drop_step: str | None = None) -> AgentPack:
    scenarios = []
    for scenario in pack.scenarios:
        if scenario.id == "refund":
            steps = [s for s in scenario.steps if s.id != drop_step]
            transitions = [
                t for t in scenario.transitions if drop_step not in (t.from_step, t.to_step)
            ]
            scenario = scenario.model_copy(
                update={"version": 2, "steps": steps, "transitions": transitions}
            )
        scenarios.append(scenario)
    return pack.model_copy(update={"scenarios": scenarios})


def test_version_change_keeps_a_step_that_still_exists(pack: AgentPack) -> None:
    new, changes = reconcile_scenarios(session(refund_at("ask_reason")), bumped(pack))
    (active,) = new.scenarios
    assert (active.scenario_version, active.current_step_id) == (2, "ask_reason")
    assert active.completed_step_ids == ["ask_order_id"]  # unknown step ids dropped
    assert [c.action for c in changes] == [ReconcileAction.KEPT]


def test_version_change_restarts_at_the_entry_step_when_the_step_is_gone(
    pack: AgentPack,
) -> None:
    new, changes = reconcile_scenarios(
        session(refund_at("confirm_refund")), bumped(pack, "confirm_refund")
    )
    (active,) = new.scenarios
    assert (active.scenario_version, active.current_step_id) == (2, "ask_order_id")
    assert active.completed_step_ids == [] and active.status is ScenarioStatus.ACTIVE
    assert changes[0].action is ReconcileAction.RESTARTED
    assert (changes[0].from_version, changes[0].to_version) == (1, 2)


def test_version_change_can_cancel_instead_of_restarting(pack: AgentPack) -> None:
    new, changes = reconcile_scenarios(
        session(refund_at("confirm_refund")),
        bumped(pack, "confirm_refund"),
        on_missing_step="cancel",
    )
    assert new.scenarios[0].status is ScenarioStatus.CANCELLED
    assert changes[0].action is ReconcileAction.CANCELLED


def test_removed_scenario_is_cancelled_and_finished_ones_are_left_alone(pack: AgentPack) -> None:
    without_refund = pack.model_copy(
        update={"scenarios": [s for s in pack.scenarios if s.id != "refund"]}
    )
    new, changes = reconcile_scenarios(session(refund_at("ask_reason")), without_refund)
    assert new.scenarios[0].status is ScenarioStatus.CANCELLED and changes[0].to_version is None
    done = refund_at("issue_refund", status=ScenarioStatus.COMPLETED)
    same, none = reconcile_scenarios(session(done), bumped(pack))
    assert none == [] and same.scenarios == [done]


def test_identify_reconciles_a_loaded_session(pack: AgentPack) -> None:
    tables = Tables(bumped(pack), {"sess-1": session(refund_at("ask_reason"))})
    result = identify(message(session_id="sess-1"), ports(tables, Directory()), NOW)
    assert result.session.scenarios[0].scenario_version == 2
    assert [c.action for c in result.reconciliations] == [ReconcileAction.KEPT]
