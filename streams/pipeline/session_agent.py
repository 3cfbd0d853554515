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
the response topic, so "was this turn answered?" is read from the answer itself; a replayed
completion writes no second response and no second state change.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from processors.llm_budget import turn_llm_budget
from processors.phases.identification import IdentificationPorts
from processors.turn.ids import TurnIds
from processors.turn.persist import (
    error_response,
    next_session,
    persistent_customer_data,
    turn_response,
)
from processors.turn.retrieval_stage import query_features, retrieval_requests
from processors.turn.timing import timed
from processors.turn.understand import UnknownAgentError, coalesce, understand
from schemas.codec import CodecError, decode_as, encode
from schemas.domain.errors import TurnError
from schemas.domain.phase import Phase
from schemas.domain.turn_record import TurnRecord
from schemas.events.completed_turn import CompletedTurn
from schemas.events.pipeline_state import MAX_RECENT_TURNS, MAX_WAITING, SessionGate
from schemas.events.turn_envelope import TurnEnvelope
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import TurnResponse
from schemas.fields import MAX_MESSAGE_CHARS
from streams import metrics, tracing
from streams.pipeline.base import Pipeline, raw_record
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
from streams.topics import TURN_COMPLETED, TURN_REQUESTED

logger = logging.getLogger(__name__)

WATCHDOG_TICK_S = 1.0
STALL_MARGIN_S = 5.0
"""Time a turn gets beyond its pack's LLM budget for its queues and CPU work."""
WATCHDOG_RESCAN = 5
"""Every this many ticks the watchdog re-reads the whole gate table: after a restart or a
rebalance the gates come back from the changelog, not through the agent."""


class SessionAgent:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.t = pipeline.topology
        self._requested = self.t.name(TURN_REQUESTED)
        self._completed = self.t.name(TURN_COMPLETED)
        self.sessions = required(self.t.sessions, "session state")
        self.customers = required(self.t.customers, "customer data")
        pipeline.release = self._release
        self._started = datetime.now(UTC)
        self._nudged: dict[bytes, datetime] = {}
        self._ticks = 0

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
        """Dead-letter a request that is not admitted, and answer it with an error."""
        await self.p.dead_letter(record, reason, detail)
        addressed = (request.turn_id, request.input) if request else input_from_record(record)
        if addressed is None or record.key is None:
            return
        turn_id, given = addressed
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
        gate = self.p.gate(key)
        if gate.in_flight is not None and gate.in_flight.turn_id == request.turn_id:
            # A replay of the turn in flight (after a crash, or a nudge of a stalled turn):
            # drive it again; every later stage drops what it has already seen.
            logger.info("driving turn %s again", request.turn_id)
            await self._admit(key, gate, [gate.in_flight, *gate.in_flight_later], gate.waiting)
            return
        if _seen(gate, request.turn_id):
            logger.info("dropping replayed request %s", request.turn_id)
            return
        if gate.in_flight is not None:
            if len(gate.waiting) >= MAX_WAITING:
                await self._reject(
                    record, "session_backlog_full", "too many waiting messages", request
                )
                return
            self.p.set_gate(key, gate.model_copy(update={"waiting": [*gate.waiting, request]}))
            return
        await self._admit(key, gate, [request], [])

    async def _admit(
        self,
        key: bytes,
        gate: SessionGate,
        batch: list[TurnRequested],
        rest: list[TurnRequested],
    ) -> None:
        """Start (or drive again) the turn of ``batch``; ``rest`` keeps waiting."""
        first = batch[0]
        gate = gate.model_copy(
            update={
                "in_flight": first,
                "in_flight_coalesced": [r.turn_id for r in batch[1:]],
                "in_flight_later": batch[1:],
                "in_flight_since": datetime.now(UTC),
                "waiting": rest,
            }
        )
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
            await self._release(key, self.p.gate(key))
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
        deadline_s = deps.settings_for(understood.pack).phases.retrieval.timeout_s
        timings = dict(context.timings_ms)
        with timed(timings, "retrieval.embedding", time.perf_counter):
            vector = (await self.p.runtime.embeddings.embed([understood.query]))[0]
        context = context.model_copy(update={"timings_ms": timings})
        features = query_features(understood.query, vector)
        requests = retrieval_requests(
            first.turn_id, key.decode(), context, features, deps, deadline_s
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
        self._ticks += 1
        gates = self.p.gates
        if self._ticks % WATCHDOG_RESCAN == 1 and gates is not None:
            self.p.in_flight_index.clear()
            for key in list(gates.table.keys()):
                found = gates.get(key)
                if found is not None:
                    self.p.track(key, found)
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
        if not _is_in_flight(gate, record.turn_id):
            logger.info("dropping replayed completion of %s", record.turn_id)
            return
        context = record.context
        now = datetime.now(UTC)
        tracing.tag(turn_id=record.turn_id)
        with tracing.phase_span(Phase.PERSISTENCE.value):
            if not self.p.answered(key, record.turn_id):
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
        if _is_in_flight(gate, record.turn_id):
            await self._release(key, gate)

    async def _release(self, key: bytes, gate: SessionGate) -> None:
        """Open the gate after the turn in flight, and admit what waited for it."""
        finished = [gate.in_flight.turn_id, *gate.in_flight_coalesced] if gate.in_flight else []
        released = gate.model_copy(
            update={
                "in_flight": None,
                "in_flight_coalesced": [],
                "in_flight_later": [],
                "in_flight_since": None,
                "recent_turn_ids": [*gate.recent_turn_ids, *finished][-MAX_RECENT_TURNS:],
            }
        )
        if released.waiting:
            batch, rest = _fitting(list(released.waiting))
            with tracing.new_trace("session", turn_id=batch[0].turn_id):  # the next turn's own
                await self._admit(key, released, batch, rest)
        else:
            self.p.set_gate(key, released)


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


def _is_in_flight(gate: SessionGate, turn_id: str) -> bool:
    return gate.in_flight is not None and gate.in_flight.turn_id == turn_id


def _seen(gate: SessionGate, turn_id: str) -> bool:
    """A request already answered, in flight (alone or coalesced) or waiting."""
    if turn_id in gate.recent_turn_ids or turn_id in gate.in_flight_coalesced:
        return True
    if gate.in_flight is not None and gate.in_flight.turn_id == turn_id:
        return True
    return any(w.turn_id == turn_id for w in gate.waiting)


def _fitting(waiting: list[TurnRequested]) -> tuple[list[TurnRequested], list[TurnRequested]]:
    """The longest prefix whose messages, joined by newlines, fit in one message."""
    size = -1
    for count, request in enumerate(waiting):
        size += len(request.input.message) + 1
        if size > MAX_MESSAGE_CHARS and count > 0:
            return waiting[:count], waiting[count:]
    return waiting, []
