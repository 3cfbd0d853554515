"""The whole turn in one process, without Kafka: the same stages the stream topology runs,
chained by function calls over in-memory state.

Why it exists: it is the baseline the streaming benchmark compares against (issue 6), a
quick way to try a pack, and the reference the stream topology must agree with.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from processors.embedding import InlineEmbedder
from processors.phases.enforcement import Decision
from processors.phases.identification import IdentificationPorts, PackSnapshot
from processors.turn.answer import after_response_tools, check_answer, generate_answer
from processors.turn.decide import decide
from processors.turn.deps import TurnDeps
from processors.turn.ids import TurnIds
from processors.turn.persist import (
    next_session,
    persistent_customer_data,
    turn_record,
    turn_response,
)
from processors.turn.retrieval_stage import join, request_retrieval, retrieve_one
from processors.turn.understand import UnknownAgentError, coalesce, understand
from schemas.domain.customer_data import CustomerDataStore
from schemas.domain.session import SessionState
from schemas.domain.turn_input import Channel
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import TurnResponse
from schemas.pack.agent_pack import AgentPack


@dataclass
class MemoryState:
    """Customers, sessions, customer data and packs in dicts: the in-process ports of P1."""

    packs: dict[tuple[str, str], PackSnapshot] = field(default_factory=dict)
    customers: dict[tuple[str, str, str], str] = field(default_factory=dict)
    open_sessions: dict[tuple[str, str, str], str] = field(default_factory=dict)
    sessions: dict[tuple[str, str], SessionState] = field(default_factory=dict)
    customer_data: dict[tuple[str, str], CustomerDataStore] = field(default_factory=dict)

    def add_pack(self, pack: AgentPack, version: int = 1) -> None:
        self.packs[(pack.agent.tenant_id, pack.agent.agent_id)] = PackSnapshot(pack, version)

    # CustomerDirectory
    def find(self, tenant_id: str, channel: Channel, channel_id: str) -> str | None:
        return self.customers.get((tenant_id, channel.value, channel_id))

    def create(self, tenant_id: str, channel: Channel, channel_id: str, customer_id: str) -> None:
        self.customers[(tenant_id, channel.value, channel_id)] = customer_id

    def open_session(self, tenant_id: str, agent_id: str, customer_id: str) -> str | None:
        return self.open_sessions.get((tenant_id, agent_id, customer_id))

    def ports(self, request: TurnRequested) -> IdentificationPorts:
        given = request.input
        return IdentificationPorts(
            directory=self,
            ids=TurnIds(request.turn_id, given.tenant_id, given.channel.value, given.channel_id),
            sessions=_Sessions(self),
            customer_data=_CustomerData(self),
            packs=_Packs(self),
        )


@dataclass(frozen=True)
class _Sessions:
    state: MemoryState

    def load(self, tenant_id: str, session_id: str) -> SessionState | None:
        return self.state.sessions.get((tenant_id, session_id))


@dataclass(frozen=True)
class _CustomerData:
    state: MemoryState

    def load(self, tenant_id: str, customer_id: str) -> CustomerDataStore | None:
        return self.state.customer_data.get((tenant_id, customer_id))


@dataclass(frozen=True)
class _Packs:
    state: MemoryState

    def load(self, tenant_id: str, agent_id: str) -> PackSnapshot:
        found = self.state.packs.get((tenant_id, agent_id))
        if found is None:
            raise UnknownAgentError(f"no pack loaded for tenant {tenant_id!r} agent {agent_id!r}")
        return found


async def run_turn(
    request: TurnRequested, state: MemoryState, deps: TurnDeps
) -> tuple[TurnResponse, TurnRecord]:
    """P1-P11 for one request; raises :class:`UnknownAgentError` for an unknown agent."""
    turn_id = request.turn_id
    session_key = request.input.session_key
    understood = await understand(
        turn_id, coalesce(request, [], deps.clock()), state.ports(request), deps
    )
    pack = understood.pack
    context, requests = await request_retrieval(
        turn_id, session_key, understood, InlineEmbedder(deps.embedder), deps
    )
    results = await asyncio.gather(
        *(asyncio.to_thread(retrieve_one, r, pack, deps) for r in requests)
    )
    context = await decide(join(context, results, pack), pack, deps)
    attempt = 1
    while True:
        context = await generate_answer(context, pack, deps)
        context, decision = await check_answer(context, pack, attempt, deps)
        if decision is not Decision.REGENERATE:
            break
        attempt += 1
    context = await after_response_tools(context, pack, deps)
    now = deps.clock()
    response = turn_response(turn_id, context, now)
    given = context.input
    if given.session_id is None or given.customer_id is None:
        raise ValueError("P1 left the session or customer unresolved")
    state.sessions[(given.tenant_id, given.session_id)] = next_session(turn_id, context, pack, now)
    state.open_sessions[(given.tenant_id, given.agent_id, given.customer_id)] = given.session_id
    state.customer_data[(given.tenant_id, given.customer_id)] = persistent_customer_data(
        context, pack, now
    )
    return response, turn_record(turn_id, context, now)
