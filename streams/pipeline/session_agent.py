"""The session agent: the one-turn-in-flight gate, P1-P3 and P4.1, and the turn's effects:
its response and P11's session and customer-data persistence. It consumes two
co-partitioned topics:

* ``turn.requested`` — a request is dropped if already seen, queued if a turn of its session
  is in flight, else admitted: P1-P3 run, the query is embedded, and the four retrieval
  requests and the context go out;
* ``turn.completed`` — the finished turn (or a failed one) of the session in flight: the
  response is written first, then the session state and persistent customer data, then the
  gate opens. Requests that waited meanwhile are coalesced into the next turn (recorded in
  its ``coalesced_turn_ids``), so turn N+1 always starts from turn N's state.

Why here: every effect of a turn is then made by one agent, in one handler, with no await
between the writes, and each is idempotent by turn id. The response table's changelog *is*
the response topic, so "was this turn answered?" is read from the answer itself (and from
the seen-turns table once the gate opened); a replayed completion writes no second response
and no second state change. No rejection is ever answered under an admitted or answered
turn id (:func:`processors.turn.gate.may_answer`), so the last response of a session with
the turn's id is the turn's own.

What the gate does is decided by the plain functions of :mod:`processors.turn.gate`; this
agent reads and writes the tables and sends what they decide.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from processors.llm_budget import turn_llm_budget
from processors.phases.identification import IdentificationPorts
from processors.turn.gate import (
    Admitted,
    Queued,
    Seen,
    is_in_flight,
    may_answer,
    on_request,
    release,
)
from processors.turn.ids import TurnIds
from processors.turn.persist import (
    error_response,
    next_session,
    persistent_customer_data,
    turn_response,
)
from processors.turn.retrieval_stage import request_retrieval
from processors.turn.understand import UnknownAgentError, coalesce, understand
from schemas.codec import CodecError, decode_as, encode
from schemas.domain.errors import TurnError
from schemas.domain.phase import Phase
from schemas.domain.turn_record import TurnRecord
from schemas.events.completed_turn import CompletedTurn
from schemas.events.pipeline_state import SeenTurn
from schemas.events.turn_envelope import TurnEnvelope
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import TurnResponse
from streams import metrics, tracing
from streams.pipeline.base import Pipeline, raw_record
from streams.pipeline.decoded import DecodedTable, Rescan
from streams.pipeline.heap import BURST, release_free_heap
from streams.pipeline.rejects import RawRecord, input_from_record, rejection
from streams.pipeline.table_ports import (
    GateDirectory,
    RegistryPacks,
    TableCustomerData,
    TableSessions,
    customer_table_key,
    session_table_key,
)
from streams.pipeline.topology import required
from streams.topics import TURN_COMPLETED, TURN_REQUESTED, TURNS_SEEN_CHANGELOG, seen_turn_key

logger = logging.getLogger(__name__)

WATCHDOG_TICK_S = 1.0
STALL_MARGIN_S = 5.0
"""Time a turn gets beyond its pack's LLM budget for its queues and CPU work."""
SEEN_SWEEP_S = 300.0
"""How often expired seen-turn ids are dropped from the local store."""
SEEN_FOR = timedelta(milliseconds=TURNS_SEEN_CHANGELOG.retention_ms or 0)
"""How long an answered turn id is remembered: the request topic's retention (a request can
be read again, or resent, for that long), which is also its changelog's retention."""


class SessionAgent:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.t = pipeline.topology
        self._requested = self.t.name(TURN_REQUESTED)
        self._completed = self.t.name(TURN_COMPLETED)
        self.sessions = required(self.t.sessions, "session state")
        self.customers = required(self.t.customers, "customer data")
        self.seen = DecodedTable(required(self.t.seen, "seen turns"), SeenTurn)
        self._started = datetime.now(UTC)
        self._nudged: dict[bytes, datetime] = {}
        self._rescan = Rescan(self.p.gates.table) if self.p.gates is not None else None

    async def handle(self, event: Any) -> None:
        topic = event.message.topic
        if topic == self._requested:
            await self._on_request(event)
        elif topic == self._completed:
            await self._on_completed(self.p.decode(event, CompletedTurn))

    # -- requests ---------------------------------------------------------------------------

    async def _reject(
        self, record: RawRecord, reason: str, detail: str, request: TurnRequested | None
    ) -> None:
        """Dead-letter a request that is not admitted, and answer it with an error unless
        its turn id is admitted or answered in that session: then the error would stand as
        that turn's answer, so the record (a forgery or a garbled resend) is only
        dead-lettered, saying so."""
        addressed = (request.turn_id, request.input) if request else input_from_record(record)
        if addressed is None or record.key is None:
            await self.p.dead_letter(record, reason, detail)
            return
        turn_id, given = addressed
        if not may_answer(self.p.gate(record.key), turn_id, self._seen(record.key, turn_id)):
            logger.warning("not answering a rejected record under the admitted turn %s", turn_id)
            why = f"{detail} (not answered: turn {turn_id} is admitted or answered)"
            await self.p.dead_letter(record, reason, why)
            return
        await self.p.dead_letter(record, reason, detail)
        self.p.respond(
            record.key, rejection(turn_id, given, Phase.IDENTIFICATION, reason, detail[:500])
        )

    async def _on_request(self, event: Any) -> None:
        record = raw_record(event)
        limit = self.t.settings.max_message_bytes
        request: TurnRequested | None = None
        try:
            request = decode_as(record.value, TurnRequested)
        except CodecError as exc:
            if len(record.value) <= limit:
                await self._reject(record, f"codec.{exc.reason.value}", str(exc), None)
                return
        if len(record.value) > limit:
            detail = f"record of {len(record.value)} bytes is over the {limit}-byte limit"
            await self._reject(record, "too_large", detail, request)
            return
        assert request is not None
        key = request.input.session_key.encode()
        if record.key != key:
            detail = f"record key {record.key!r} is not the session key {key!r}"
            await self._reject(record, "wrong_key", detail, request)
            return
        if self.p.runtime.versions.newest(request.input.tenant_id, request.input.agent_id) is None:
            detail = f"no pack loaded for {request.input.tenant_id}/{request.input.agent_id}"
            await self._reject(record, "unknown_agent", detail, request)
            return
        seen = self._seen(key, request.turn_id)
        decision = on_request(self.p.gate(key), request, seen, datetime.now(UTC))
        if isinstance(decision, Admitted):
            if decision.again:
                # A replay of the turn in flight (after a crash, or a nudge of a stalled
                # turn): drive it again; every later stage drops what it has already seen.
                logger.info("driving turn %s again", request.turn_id)
            await self._admit(key, decision)
        elif isinstance(decision, Seen):
            logger.info("dropping replayed request %s", request.turn_id)
        elif isinstance(decision, Queued):
            self.p.set_gate(key, decision.gate)
        else:
            await self._reject(record, decision.reason, decision.detail, request)

    def _seen(self, key: bytes, turn_id: str) -> bool:
        """Whether the session answered ``turn_id`` within the request topic's retention."""
        return self.seen.table.get(seen_turn_key(key, turn_id)) is not None

    async def _admit(self, key: bytes, admitted: Admitted) -> None:
        """Start (or drive again) the turn of ``admitted.batch``."""
        gate = admitted.gate
        batch = list(admitted.batch)
        first = batch[0]
        self.p.set_gate(key, gate)
        tracing.tag(turn_id=first.turn_id)
        directory = GateDirectory.of(gate)
        given = first.input
        ports = IdentificationPorts(
            directory=directory,
            ids=TurnIds(first.turn_id, given.tenant_id, given.channel.value, given.channel_id),
            sessions=TableSessions(self.sessions),
            customer_data=TableCustomerData(self.customers),
            packs=RegistryPacks(self.p.runtime),
        )
        deps = self.p.deps
        try:
            understood = await understand(
                first.turn_id, coalesce(first, batch[1:], datetime.now(UTC)), ports, deps
            )
        except UnknownAgentError as exc:  # retired while the request waited
            self.p.respond(
                key,
                rejection(first.turn_id, given, Phase.IDENTIFICATION, "unknown_agent", str(exc)),
            )
            await self._release(key)
            return
        context = understood.context
        resolved = context.input
        if resolved.session_id is not None:
            directory.sessions[resolved.agent_id] = resolved.session_id
        current = self.p.gate(key)
        if (directory.customer_id, directory.sessions) != (current.customer_id, current.sessions):
            # a new customer or session; a returning one costs no second gate record
            self.p.set_gate(
                key,
                current.model_copy(
                    update={"customer_id": directory.customer_id, "sessions": directory.sessions}
                ),
            )
        context, requests = await request_retrieval(
            first.turn_id, key.decode(), understood, self.p.runtime.embeddings, deps
        )
        for request in requests:
            await self.p.send(self.t.retrieval_requested[request.retrieval_type], key, request)
        envelope = TurnEnvelope(
            turn_id=first.turn_id,
            session_key=key.decode(),
            phase=Phase.CUSTOMER_DATA,
            context=context,
            emitted_at=datetime.now(UTC),
        )
        await self.p.send(self.t.context, key, envelope)

    # -- the stall watchdog ------------------------------------------------------------------

    async def resume_stalled(self) -> None:
        """Drive again every turn in flight that was admitted before this worker started
        (its last steps may have died with the previous process) or that has made no
        progress for ``turn_stall_s`` (see :meth:`_stall_after`). A turn a handler of this
        worker is working on is busy, not stalled: waiting on its model is bounded by its
        LLM budget, and driving it again would only multiply the calls sent to a provider
        that is already slow. Stages in another process heartbeat there; here a turn of
        theirs counts from its admission. The request is published again, and the session
        agent treats a request of the turn in flight as "drive it again". Effects stay once,
        because every later stage drops what it has already seen."""
        try:
            await self._resume_stalled()
        except Exception:
            logger.exception("stall watchdog tick failed")

    async def _resume_stalled(self) -> None:
        gates, rescan = self.p.gates, self._rescan
        recovered = rescan.due() if rescan is not None else None
        if gates is not None and rescan is not None and recovered is not None:
            # after a recovery the gates came from the changelog, not through the agent
            self.p.in_flight_index.clear()
            scanned = 0
            async for key, gate in gates.scan():
                self.p.track(key, gate)
                scanned += 1
            rescan.done(recovered)
            if scanned >= BURST:
                release_free_heap()  # what the recovery and the scan freed
        now = datetime.now(UTC)
        for key, (request, since) in list(self.p.in_flight_index.items()):
            if self.p.busy.get(key):
                continue  # a stage of this worker is working on it (or waiting on its model)
            stall = self._stall_after(request)
            nudged = self._nudged.get(key)
            last = max(since, self.p.progress.get(key, since))
            due = since < self._started or now - last > stall
            if not due or (nudged is not None and now - nudged < stall):
                continue
            self._nudged[key] = now
            logger.warning("turn %s stalled since %s: driving it again", request.turn_id, since)
            await self.p.send(self.t.requested, key, request)
        for key in [k for k in self._nudged if k not in self.p.in_flight_index]:
            del self._nudged[key]

    def _stall_after(self, request: TurnRequested) -> timedelta:
        """How long a turn may go without progress: ``turn_stall_s``, or longer where the
        agent's pack allows its turns more time on the model (the worker checked at start
        that ``turn_stall_s`` exceeds the process settings' own turn budget)."""
        stall = self.t.settings.turn_stall_s
        newest = self.p.runtime.versions.newest(request.input.tenant_id, request.input.agent_id)
        if newest is not None:
            budget = turn_llm_budget(self.p.deps.settings_for(newest[1]))
            stall = max(stall, budget.seconds + STALL_MARGIN_S)
        return timedelta(seconds=stall)

    # -- effects and release ----------------------------------------------------------------

    async def _on_completed(self, completed: CompletedTurn) -> None:
        key = completed.session_key.encode()
        gate = self.p.gate(key)
        record = completed.record
        if not is_in_flight(gate, record.turn_id):
            logger.info("dropping replayed completion of %s", record.turn_id)
            return
        context = record.context
        now = datetime.now(UTC)
        tracing.tag(turn_id=record.turn_id)
        with tracing.phase_span(Phase.PERSISTENCE.value):
            if not self._answered(key, record.turn_id):
                self.p.respond(key, completion_response(record, now))
                metrics.observe_record(record)
            if context.response_text is not None:
                pack = self.p.pack_for(context)
                tenant = record.tenant_id
                self.sessions[session_table_key(tenant, record.session_id)] = encode(
                    next_session(record.turn_id, context, pack, now)
                )
                self.customers[customer_table_key(tenant, record.customer_id)] = encode(
                    persistent_customer_data(context, pack, now)
                )
            # The effects must be in Kafka before the gate opens: records of different
            # topics are not ordered, and a crash that kept the release but lost the response
            # would drop the replayed completion as done. Found by the SIGKILL test under load.
            await self.t.app.producer.flush()
        gate = self.p.gate(key)  # requests may have joined the waiting list meanwhile
        if is_in_flight(gate, record.turn_id):
            await self._release(key)

    def _answered(self, key: bytes, turn_id: str) -> bool:
        """Whether the turn in flight ``turn_id`` was answered: its response is the session's
        last (no rejection is ever written under an admitted id), or the gate already
        recorded it as seen (a crash lost the release after that)."""
        return self.p.answered(key, turn_id) or self._seen(key, turn_id)

    async def fail_in_flight(self, key: bytes, phase: Phase, code: str, message: str) -> None:
        """End the session's turn in flight from the gate alone (a stage of this process
        crashed on a record that is not a turn envelope): its error response, unless it
        was answered already, and the gate opens."""
        current = self.p.gate(key).in_flight
        if current is None:
            return
        logger.warning("turn %s failed in %s: %s %s", current.turn_id, phase.value, code, message)
        if not self._answered(key, current.turn_id):
            self.p.respond(key, rejection(current.turn_id, current.input, phase, code, message))
        await self._release(key)

    async def _release(self, key: bytes) -> None:
        """Open the gate after the turn in flight, record its ids as seen, and admit what
        waited for it."""
        released = release(self.p.gate(key), datetime.now(UTC))
        seen = SeenTurn(at=datetime.now(UTC))
        for turn_id in released.finished:  # before the gate: a lost release is then answered
            self.seen.set(seen_turn_key(key, turn_id), seen)
        if released.next is None:
            self.p.set_gate(key, released.gate)
            return
        with tracing.new_trace("session", turn_id=released.next.batch[0].turn_id):
            await self._admit(key, released.next)  # the next turn's own trace

    async def sweep_seen(self) -> None:
        """Drop the seen-turn ids older than :data:`SEEN_FOR` from the local store. Their
        changelog is ``compact,delete`` with the same retention, so Kafka drops them too and a
        recovery does not bring them back for long; a timer cannot write tombstones (Faust
        writes a table only inside the stream of its partition). The scan yields to the
        event loop every thousand keys."""
        try:
            await self._sweep_seen(datetime.now(UTC) - SEEN_FOR)
        except Exception:
            logger.exception("seen-turns sweep failed")

    async def _sweep_seen(self, cutoff: datetime) -> None:
        store = self.seen.table.data
        for count, key in enumerate(list(store.keys())):
            if count % 1000 == 999:
                await asyncio.sleep(0)
            raw = store.get(key)
            if raw is not None and decode_as(raw, SeenTurn).at < cutoff:
                del store[key]


def completion_response(record: TurnRecord, now: datetime) -> TurnResponse:
    """The answer of a finished turn, or the error response of a failed one (no text)."""
    context = record.context
    if context.response_text is not None:
        return turn_response(record.turn_id, context, now)
    error = (
        context.errors[-1]
        if context.errors
        else TurnError(
            phase=Phase.PERSISTENCE, code="no_answer", message="the turn ended without an answer"
        )
    )
    return error_response(record.turn_id, context.input, error, now)
