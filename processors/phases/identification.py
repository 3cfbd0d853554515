"""P1 identification: who is writing, in which session, with which pack and data.

Why ports: the customer directory, the session and customer-data tables and the pack cache
live in Kafka tables or databases; the phase only decides, so it stays a function that tests
call with in-memory fakes. Order (pipeline-execution-model 6.1): customer resolution first
(tenant + channel + channel_id; created when new), then session, customer data and pack,
which are independent. :func:`identify` loads them one after the other
(in a worker they are lookups in the worker's own tables).

Session id: ``turn_input.session_id`` when the gateway knows it, else the directory's open
session of the customer on this agent, else a new id from the ``ids`` port (no hidden
clock or randomness). A session id that has no stored state starts a new session.

**Scenario version reconciliation** (:func:`reconcile_scenarios`), for every ACTIVE or PAUSED
scenario of the session whose version differs from the pack's:

* the scenario is gone from the pack -> CANCELLED (status CANCELLED, version kept);
* its current step still exists -> KEPT: same step, new version; completed and skipped step
  ids that no longer exist are dropped;
* its current step is gone -> RESTARTED at the entry step with the new version and no
  completed/skipped steps (``on_missing_step="cancel"`` cancels it instead: for packs whose
  flows must not be restarted silently).

COMPLETED and CANCELLED scenarios are history and are not touched. Each change is returned
as a :class:`ScenarioReconciliation` so the turn record can say what happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from schemas.domain.customer_data import CustomerDataStore
from schemas.domain.session import ActiveScenario, ScenarioStatus, SessionState
from schemas.domain.turn_context import TurnContext
from schemas.domain.turn_input import Channel, TurnInput
from schemas.pack.agent_pack import AgentPack

__all__ = [
    "CustomerDataSource",
    "CustomerDirectory",
    "IdSource",
    "Identification",
    "IdentificationPorts",
    "PackSnapshot",
    "PackSource",
    "ReconcileAction",
    "ScenarioReconciliation",
    "SessionStore",
    "identify",
    "reconcile_scenarios",
]

MissingStepPolicy = Literal["restart", "cancel"]


@dataclass(frozen=True)
class PackSnapshot:
    """The pack a turn runs with, and its published version."""

    pack: AgentPack
    version: int


class CustomerDirectory(Protocol):
    """Maps a channel address to a customer, and a customer to their open session."""

    def find(self, tenant_id: str, channel: Channel, channel_id: str) -> str | None: ...

    def create(self, tenant_id: str, channel: Channel, channel_id: str, customer_id: str) -> None:
        """Register ``customer_id`` for the address (idempotent for the same id)."""

    def open_session(self, tenant_id: str, agent_id: str, customer_id: str) -> str | None: ...


class IdSource(Protocol):
    """New ids, passed in so a retried P1 can be made to produce the same ones."""

    def new_customer_id(self) -> str: ...

    def new_session_id(self) -> str: ...


class SessionStore(Protocol):
    def load(self, tenant_id: str, session_id: str) -> SessionState | None: ...


class CustomerDataSource(Protocol):
    def load(self, tenant_id: str, customer_id: str) -> CustomerDataStore | None: ...


class PackSource(Protocol):
    def load(self, tenant_id: str, agent_id: str) -> PackSnapshot: ...


@dataclass(frozen=True)
class IdentificationPorts:
    directory: CustomerDirectory
    ids: IdSource
    sessions: SessionStore
    customer_data: CustomerDataSource
    packs: PackSource


class ReconcileAction(StrEnum):
    KEPT = "KEPT"
    RESTARTED = "RESTARTED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class ScenarioReconciliation:
    scenario_id: str
    from_version: int
    to_version: int | None
    action: ReconcileAction
    from_step_id: str
    to_step_id: str | None
    reason: str


@dataclass(frozen=True)
class Identification:
    """P1's result; :meth:`into` copies it onto the turn's context."""

    customer_id: str
    customer_created: bool
    session: SessionState
    session_created: bool
    customer_data: CustomerDataStore
    pack: AgentPack
    pack_version: int
    reconciliations: list[ScenarioReconciliation] = field(default_factory=list)

    def into(self, context: TurnContext) -> TurnContext:
        given = context.input.model_copy(
            update={"customer_id": self.customer_id, "session_id": self.session.session_id}
        )
        return context.model_copy(
            update={
                "input": given,
                "session": self.session,
                "customer_data": self.customer_data,
                "pack_version": self.pack_version,
            }
        )


@dataclass(frozen=True)
class _Resolved:
    customer_id: str
    customer_created: bool
    session_id: str


def _resolve(turn_input: TurnInput, directory: CustomerDirectory, ids: IdSource) -> _Resolved:
    """Customer, then session id: the sequential part of P1."""
    tenant, channel, address = turn_input.tenant_id, turn_input.channel, turn_input.channel_id
    customer_id = turn_input.customer_id or directory.find(tenant, channel, address)
    created = customer_id is None
    if customer_id is None:
        customer_id = ids.new_customer_id()
        directory.create(tenant, channel, address, customer_id)
    session_id = (
        turn_input.session_id
        or directory.open_session(tenant, turn_input.agent_id, customer_id)
        or ids.new_session_id()
    )
    return _Resolved(customer_id, created, session_id)


def _finish(
    turn_input: TurnInput,
    resolved: _Resolved,
    session: SessionState | None,
    store: CustomerDataStore | None,
    snapshot: PackSnapshot,
    now: datetime,
    on_missing_step: MissingStepPolicy,
) -> Identification:
    session_created = session is None
    if session is None:
        session = SessionState(
            session_id=resolved.session_id,
            tenant_id=turn_input.tenant_id,
            agent_id=turn_input.agent_id,
            customer_id=resolved.customer_id,
            turn_count=0,
            pack_version=snapshot.version,
            updated_at=now,
        )
    if store is None:
        store = CustomerDataStore(
            tenant_id=turn_input.tenant_id, customer_id=resolved.customer_id, updated_at=now
        )
    session, changes = reconcile_scenarios(session, snapshot.pack, on_missing_step=on_missing_step)
    if session.pack_version != snapshot.version:
        session = session.model_copy(update={"pack_version": snapshot.version})
    return Identification(
        customer_id=resolved.customer_id,
        customer_created=resolved.customer_created,
        session=session,
        session_created=session_created,
        customer_data=store,
        pack=snapshot.pack,
        pack_version=snapshot.version,
        reconciliations=changes,
    )


def identify(
    turn_input: TurnInput,
    ports: IdentificationPorts,
    now: datetime,
    *,
    on_missing_step: MissingStepPolicy = "restart",
) -> Identification:
    """P1 by the rules of the module docstring; the three loads run one after the other."""
    resolved = _resolve(turn_input, ports.directory, ports.ids)
    session = ports.sessions.load(turn_input.tenant_id, resolved.session_id)
    store = ports.customer_data.load(turn_input.tenant_id, resolved.customer_id)
    snapshot = ports.packs.load(turn_input.tenant_id, turn_input.agent_id)
    return _finish(turn_input, resolved, session, store, snapshot, now, on_missing_step)


def reconcile_scenarios(
    session: SessionState,
    pack: AgentPack,
    *,
    on_missing_step: MissingStepPolicy = "restart",
) -> tuple[SessionState, list[ScenarioReconciliation]]:
    """Map the session's open scenarios onto the pack's versions (module docstring)."""
    by_id = {scenario.id: scenario for scenario in pack.scenarios}
    open_states = (ScenarioStatus.ACTIVE, ScenarioStatus.PAUSED)
    scenarios: list[ActiveScenario] = []
    changes: list[ScenarioReconciliation] = []
    for active in session.scenarios:
        scenario = by_id.get(active.scenario_id)
        if active.status not in open_states or (
            scenario is not None and scenario.version == active.scenario_version
        ):
            scenarios.append(active)
            continue
        old = active.scenario_version
        if scenario is None:
            scenarios.append(active.model_copy(update={"status": ScenarioStatus.CANCELLED}))
            changes.append(
                ScenarioReconciliation(
                    active.scenario_id,
                    old,
                    None,
                    ReconcileAction.CANCELLED,
                    active.current_step_id,
                    None,
                    "scenario removed from the pack",
                )
            )
            continue
        steps = {step.id for step in scenario.steps}
        if active.current_step_id in steps:
            kept = active.model_copy(
                update={
                    "scenario_version": scenario.version,
                    "completed_step_ids": _only(active.completed_step_ids, steps),
                    "skipped_step_ids": _only(active.skipped_step_ids, steps),
                }
            )
            scenarios.append(kept)
            changes.append(
                ScenarioReconciliation(
                    active.scenario_id,
                    old,
                    scenario.version,
                    ReconcileAction.KEPT,
                    active.current_step_id,
                    active.current_step_id,
                    "current step still exists",
                )
            )
        elif on_missing_step == "cancel":
            scenarios.append(active.model_copy(update={"status": ScenarioStatus.CANCELLED}))
            changes.append(
                ScenarioReconciliation(
                    active.scenario_id,
                    old,
                    scenario.version,
                    ReconcileAction.CANCELLED,
                    active.current_step_id,
                    None,
                    "current step removed; policy cancel",
                )
            )
        else:
            restarted = active.model_copy(
                update={
                    "scenario_version": scenario.version,
                    "current_step_id": scenario.entry_step_id,
                    "completed_step_ids": [],
                    "skipped_step_ids": [],
                }
            )
            scenarios.append(restarted)
            changes.append(
                ScenarioReconciliation(
                    active.scenario_id,
                    old,
                    scenario.version,
                    ReconcileAction.RESTARTED,
                    active.current_step_id,
                    scenario.entry_step_id,
                    "current step removed; restarted at the entry step",
                )
            )
    if not changes:
        return session, []
    return session.model_copy(update={"scenarios": scenarios}), changes


def _only(step_ids: Sequence[str], existing: set[str]) -> list[str]:
    return [step_id for step_id in step_ids if step_id in existing]
