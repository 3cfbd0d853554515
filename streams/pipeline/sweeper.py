"""The idle-state sweeper: timers that delete idle sessions, customer data and finished
retrieval joins from the tables of the partitions this worker owns.

What is expired is decided by :mod:`processors.turn.expiry`; this module only reads the
tables and deletes. Each deletion writes a tombstone to the key's changelog partition
(``streams.pipeline.stores``), so neither a restart from the changelogs nor one from the
local store brings it back; the one exception is the last response, whose changelog is the
customer-facing response topic (delete policy, its own retention): it is deleted locally
only, and Kafka's retention drops it from the topic.

A decision and its deletions run with no ``await`` between them, on the event loop the
agents run on, so no turn can be admitted halfway: a session with a turn in flight, waiting
requests, or a handler of this worker working on it is never touched. The scan yields to the
event loop every thousand keys, and waits for the producer whenever the tombstones it
queued fill half of Faust's producer buffer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from faust.types import TableT

from processors.turn.expiry import (
    idle_longer,
    join_expired,
    last_activity,
    session_expired,
    ttl_of,
    turn_pending,
)
from schemas.domain.customer_data import CustomerDataStore
from schemas.domain.session import SessionState
from schemas.events.pipeline_state import RetrievalJoin, SessionGate
from schemas.events.turn_response import TurnResponse
from streams.pipeline.base import Pipeline
from streams.pipeline.decoded import DecodedTable, decode_or_none
from streams.pipeline.heap import BURST, release_free_heap
from streams.pipeline.table_ports import customer_table_key, session_table_key

logger = logging.getLogger(__name__)

YIELD_EVERY = 1000
STUCK_S = 30.0
"""A producer that sent nothing for this long stops the sweep (a busy one takes a moment)."""
MAX_SWEEP_S = 3600.0
"""The sweep interval: a twentieth of the shortest TTL (an entry lives at most 5 % past its
TTL), at most this, at least a second. A sweep decodes every local gate, its session states
and last response: at the 7-day default it runs hourly."""


class SweptStore(Protocol):
    """What :mod:`streams.pipeline.stores` adds to Faust's stores."""

    def local_items(self) -> Any: ...

    def get(self, key: bytes) -> bytes | None: ...

    def home(self, key: bytes) -> int | None: ...

    def expire(self, key: bytes, *, tombstone: bool = True) -> bool: ...


def store_of(table: TableT[bytes, bytes] | None) -> SweptStore | None:
    return None if table is None else cast(SweptStore, table.data)


def sweep_interval(*ttls: timedelta | None) -> float:
    known = [t.total_seconds() for t in ttls if t is not None]
    return min(MAX_SWEEP_S, max(1.0, min(known) / 20)) if known else MAX_SWEEP_S


@dataclass
class Swept:
    """What one sweep deleted."""

    sessions: int = 0
    session_states: int = 0
    responses: int = 0
    customers: int = 0
    joins: int = 0
    paused: bool = False
    """The sweep did not run (or stopped): the worker was rebalancing or recovering."""

    def deleted(self) -> int:
        return self.sessions + self.session_states + self.responses + self.customers + self.joins


def _customers_of(tenant: str, gate: SessionGate) -> set[bytes]:
    """The customer-data keys a pending turn of ``gate`` may read or write."""
    ids = {gate.customer_id} if gate.customer_id else set()
    for request in [gate.in_flight, *gate.in_flight_later, *gate.waiting]:
        if request is not None and request.input.customer_id:
            ids.add(request.input.customer_id)
    return {customer_table_key(tenant, c) for c in ids}


class Sweeper:
    def __init__(
        self, pipeline: Pipeline, joins: DecodedTable[RetrievalJoin] | None = None
    ) -> None:
        self.p = pipeline
        self.t = pipeline.topology
        settings = self.t.settings
        self.session_ttl = ttl_of(settings.session_idle_ttl_s)
        self.customer_ttl = ttl_of(settings.customer_data_idle_ttl_s)
        self.joins = joins
        self.interval = sweep_interval(self.session_ttl, self.customer_ttl)

    async def sweep(self) -> None:
        """The timer: never raises (a failed sweep is logged and tried again next time)."""
        try:
            swept = await self.sweep_once(datetime.now(UTC))
        except Exception:
            logger.exception("idle-state sweep failed")
            return
        if swept.deleted() >= BURST:
            release_free_heap()  # the sweep's decoded sessions and sent tombstones
        if swept.deleted():
            logger.info("idle-state sweep: %s", swept)

    def _paused(self) -> bool:
        """While partitions move or tables recover, a local delete could be undone by the
        records recovery still applies: the sweep waits for the next tick."""
        app = self.t.app
        return bool(getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False))

    async def _yield(self, count: int) -> bool:
        """Yield to the event loop every thousand keys, and let the producer catch up with
        the tombstones; False when the sweep must stop."""
        if count % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        if not await self._drain():
            return False
        return not self._paused()

    async def _drain(self) -> bool:
        """Wait while more than half of what Faust's buffer holds without complaint waits
        in it (``max_messages``, 100: above it every agent's next record logs "producer
        buffer full"): a sweep of 100k sessions queued ~400k tombstones at once (memory,
        the commits timing out, every turn's own writes queued behind them). False when
        the producer stops, or sends nothing for :data:`STUCK_S` (the broker is away): the
        sweep stops and the next one goes on."""
        buffer = self.t.app.producer.buffer
        backlog = buffer.max_messages // 2
        if buffer.size <= backlog:
            return True
        loop = asyncio.get_running_loop()
        give_up = loop.time() + STUCK_S
        while buffer.size > backlog:
            if buffer.state != "running":
                return False
            if await buffer.flush_atmost(buffer.size - backlog):  # waits 0.1 s at most
                give_up = loop.time() + STUCK_S
            elif loop.time() > give_up:
                return False
        return True

    async def sweep_once(self, now: datetime) -> Swept:
        swept = Swept()
        if self.session_ttl is None and self.customer_ttl is None:
            return swept  # expiry off: no scan at all
        if self._paused():
            swept.paused = True
            return swept
        if self.t.gates is not None:
            pending = await self._sweep_sessions(now, swept)
            if pending is not None:
                await self._sweep_customers(now, pending, swept)
        if self.t.joins is not None:
            await self._sweep_joins(now, swept)
        swept.paused = self._paused()
        return swept

    async def _sweep_sessions(self, now: datetime, swept: Swept) -> set[bytes] | None:
        """Expire idle sessions; return the customer keys of the pending turns (None: the
        scan was cut short, so they are not all known)."""
        gates, responses = store_of(self.t.gates), store_of(self.t.responses)
        sessions = store_of(self.t.sessions)
        assert gates is not None and responses is not None and sessions is not None
        pending: set[bytes] = set()
        for count, key in enumerate([k for _, k, _ in gates.local_items()]):
            if not await self._yield(count):
                return None
            gate = decode_or_none(gates.get(key), SessionGate)  # now, not when the scan began
            if gate is None:
                continue
            tenant = key.decode(errors="replace").split(":", 1)[0]
            if turn_pending(gate) or self.p.busy.get(key):
                pending |= _customers_of(tenant, gate)
                continue
            if self.session_ttl is None:
                continue  # sessions never expire: the scan only finds the pending customers
            state_keys = [session_table_key(tenant, sid) for sid in gate.sessions.values()]
            states: list[SessionState | None] = [
                decode_or_none(sessions.get(k), SessionState) for k in state_keys
            ]
            response: TurnResponse | None = decode_or_none(responses.get(key), TurnResponse)
            active = last_activity(
                [response.responded_at if response else None]
                + [s.updated_at for s in states if s is not None]
            )
            if not session_expired(gate, active, now, self.session_ttl):
                continue
            for state_key, state in zip(state_keys, states, strict=True):
                # a session id the gateway gave may be shared with another identity
                if (state is None or idle_longer(state.updated_at, now, self.session_ttl)) and (
                    sessions.expire(state_key)
                ):
                    swept.session_states += 1
            if responses.expire(key, tombstone=False):
                swept.responses += 1
            gates.expire(key)  # last: a sweep cut short finds the gate and finishes
            self._forget(key)
            swept.sessions += 1
        await self._sweep_lone_responses(now, swept)
        return pending

    async def _sweep_lone_responses(self, now: datetime, swept: Swept) -> None:
        """Responses of identities that never had a gate (requests rejected before
        admission): local deletes once older than the session TTL."""
        gates, responses = store_of(self.t.gates), store_of(self.t.responses)
        assert gates is not None and responses is not None
        if self.session_ttl is None:
            return
        for count, key in enumerate([k for _, k, _ in responses.local_items()]):
            if not await self._yield(count):
                return
            if gates.home(key) is not None:
                continue
            response = decode_or_none(responses.get(key), TurnResponse)
            at = response.responded_at if response is not None else None
            if idle_longer(at, now, self.session_ttl) and responses.expire(key, tombstone=False):
                self._forget(key)
                swept.responses += 1

    async def _sweep_customers(self, now: datetime, pending: set[bytes], swept: Swept) -> None:
        customers = store_of(self.t.customers)
        if customers is None or self.customer_ttl is None:
            return
        for count, key in enumerate([k for _, k, _ in customers.local_items()]):
            if not await self._yield(count):
                return
            if key in pending:
                continue
            data = decode_or_none(customers.get(key), CustomerDataStore)
            at = data.updated_at if data is not None else None
            if idle_longer(at, now, self.customer_ttl) and customers.expire(key):
                swept.customers += 1

    async def _sweep_joins(self, now: datetime, swept: Swept) -> None:
        joins = store_of(self.t.joins)
        if joins is None or self.session_ttl is None:
            return
        for count, key in enumerate([k for _, k, _ in joins.local_items()]):
            if not await self._yield(count):
                return
            join = decode_or_none(joins.get(key), RetrievalJoin)
            if join is not None and join_expired(join, now, self.session_ttl):
                joins.expire(key)
                if self.joins is not None:
                    self.joins.forget(key)
                swept.joins += 1

    def _forget(self, key: bytes) -> None:
        """Drop what this process keeps on the side for the session."""
        for decoded in (self.p.gates, self.p.responses):
            if decoded is not None:
                decoded.forget(key)
        self.p.in_flight_index.pop(key, None)
        self.p.progress.pop(key, None)
