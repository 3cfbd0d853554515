"""P1's ports over the pipeline's tables: the gate record is the customer directory of its
channel identity; sessions and customer data are tables keyed ``tenant:id``."""

from __future__ import annotations

from dataclasses import dataclass, field

from faust.types import TableT

from processors.phases.identification import PackSnapshot
from processors.turn.understand import UnknownAgentError
from schemas.codec import decode_as
from schemas.domain.customer_data import CustomerDataStore
from schemas.domain.session import SessionState
from schemas.domain.turn_input import Channel
from schemas.events.pipeline_state import SessionGate
from streams.pipeline.runtime import PipelineRuntime


def session_table_key(tenant_id: str, session_id: str) -> bytes:
    return f"{tenant_id}:{session_id}".encode()


def customer_table_key(tenant_id: str, customer_id: str) -> bytes:
    return f"{tenant_id}:{customer_id}".encode()


@dataclass
class GateDirectory:
    """The customer directory of one channel identity, read from and written back to its
    gate record (P1 resolves one identity per turn)."""

    customer_id: str | None
    sessions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, gate: SessionGate) -> GateDirectory:
        return cls(gate.customer_id, dict(gate.sessions))

    def find(self, tenant_id: str, channel: Channel, channel_id: str) -> str | None:
        return self.customer_id

    def create(self, tenant_id: str, channel: Channel, channel_id: str, customer_id: str) -> None:
        self.customer_id = customer_id

    def open_session(self, tenant_id: str, agent_id: str, customer_id: str) -> str | None:
        return self.sessions.get(agent_id)


@dataclass(frozen=True)
class TableSessions:
    table: TableT[bytes, bytes]

    def load(self, tenant_id: str, session_id: str) -> SessionState | None:
        raw = self.table.get(session_table_key(tenant_id, session_id))
        return decode_as(raw, SessionState) if raw is not None else None


@dataclass(frozen=True)
class TableCustomerData:
    table: TableT[bytes, bytes]

    def load(self, tenant_id: str, customer_id: str) -> CustomerDataStore | None:
        raw = self.table.get(customer_table_key(tenant_id, customer_id))
        return decode_as(raw, CustomerDataStore) if raw is not None else None


@dataclass(frozen=True)
class RegistryPacks:
    """The agent's newest *indexed* pack version: a version still being indexed is not
    used yet, so retrieval and the pack a turn runs with agree. A retired agent (its pack
    deleted from the config topic) is unknown."""

    runtime: PipelineRuntime

    def load(self, tenant_id: str, agent_id: str) -> PackSnapshot:
        newest = self.runtime.versions.newest(tenant_id, agent_id)
        if newest is None or self.runtime.registry.get(tenant_id, agent_id) is None:
            raise UnknownAgentError(f"no pack loaded for tenant {tenant_id!r} agent {agent_id!r}")
        version, pack = newest
        return PackSnapshot(pack, version)
