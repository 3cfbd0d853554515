"""What every agent of the pipeline does the same way: decode, check the gate, send,
answer and reject. Agents stay short and read as the stage they run."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from pydantic import BaseModel

from processors.turn.persist import turn_record
from processors.turn.understand import UnknownAgentError
from schemas.codec import CodecError, decode_as, encode
from schemas.domain.errors import TurnError
from schemas.domain.phase import Phase
from schemas.domain.turn_context import TurnContext
from schemas.events.completed_turn import CompletedTurn
from schemas.events.pipeline_state import SessionGate
from schemas.events.turn_envelope import TurnEnvelope
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import TurnResponse
from schemas.pack.agent_pack import AgentPack
from streams import metrics, tracing
from streams.pipeline.decoded import DecodedTable
from streams.pipeline.rejects import RawRecord, deliver, letter_for, original_bound
from streams.pipeline.runtime import PipelineRuntime
from streams.pipeline.topology import Topology

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Any], Awaitable[None]]


def raw_record(event: Any) -> RawRecord:
    message = event.message
    headers = {
        k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in (message.headers or [])
    }
    return RawRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value or b"",
        headers=headers,
    )


FailInFlight = Callable[[bytes, Phase, str, str], Awaitable[None]]
"""Ends a session's turn in flight from its gate (the session agent's ``fail_in_flight``)."""


class Pipeline:
    """The topology and runtime, and the moves every stage makes."""

    def __init__(self, topology: Topology, runtime: PipelineRuntime) -> None:
        self.topology = topology
        self.runtime = runtime
        self.gates = (
            DecodedTable(topology.gates, SessionGate) if topology.gates is not None else None
        )
        self.responses = (
            DecodedTable(topology.responses, TurnResponse)
            if topology.responses is not None
            else None
        )
        self.in_flight_index: dict[bytes, tuple[TurnRequested, datetime]] = {}
        """The turns in flight of this worker's sessions, for the stall watchdog."""
        self.busy: Counter[bytes] = Counter()
        """Sessions a handler of this worker is working on right now (waiting on the model
        included): the watchdog's heartbeat, so a busy turn is never driven again."""
        self.progress: dict[bytes, datetime] = {}
        """When a handler of this worker last finished work for the session's turn."""

    @property
    def deps(self):  # type: ignore[no-untyped-def]
        return self.runtime.deps

    def gate(self, key: bytes) -> SessionGate:
        return self._gates.get(key) or SessionGate()

    def set_gate(self, key: bytes, gate: SessionGate) -> None:
        self._gates.set(key, gate)
        self.track(key, gate)

    def track(self, key: bytes, gate: SessionGate) -> None:
        """Keep :attr:`in_flight_index` in step with the gate table."""
        if gate.in_flight is not None and gate.in_flight_since is not None:
            self.in_flight_index[key] = (gate.in_flight, gate.in_flight_since)
        else:
            self.in_flight_index.pop(key, None)
            self.progress.pop(key, None)

    @property
    def _gates(self) -> DecodedTable[SessionGate]:
        if self.gates is None:
            raise RuntimeError("the session gate lives in the context role")
        return self.gates

    def in_flight(self, key: bytes, turn_id: str) -> bool:
        """Whether ``turn_id`` is the session's turn in flight: anything else reaching a
        stage is a replay of a finished turn and is dropped. A role without the gate table
        cannot tell and lets it through (the context role drops it at the end)."""
        if self.topology.gates is None:
            return True
        current = self.gate(key).in_flight
        return current is not None and current.turn_id == turn_id

    def pack_for(self, context: TurnContext) -> AgentPack:
        given = context.input
        pack = self.runtime.versions.get(given.tenant_id, given.agent_id, context.pack_version)
        if pack is None:
            raise UnknownAgentError(
                f"pack v{context.pack_version} of {given.tenant_id}/{given.agent_id} is gone"
            )
        return pack

    async def send(self, topic: faust.TopicT, key: bytes, model: BaseModel) -> None:
        """Send ``model``; with tracing on, the record carries the current span as the
        parent of the stage that reads it."""
        await topic.send(key=key, value=encode(model), headers=tracing.headers())

    async def forward(
        self,
        topic: faust.TopicT,
        envelope: TurnEnvelope,
        phase: Phase,
        context: TurnContext,
        attempt: int | None = None,
    ) -> None:
        """The turn on to the next stage, as it leaves ``phase``."""
        tracing.tag(turn_id=envelope.turn_id)
        nxt = TurnEnvelope(
            turn_id=envelope.turn_id,
            session_key=envelope.session_key,
            phase=phase,
            attempt=attempt if attempt is not None else envelope.attempt,
            context=context,
            emitted_at=datetime.now(UTC),
        )
        await self.send(topic, envelope.session_key.encode(), nxt)

    def respond(self, key: bytes, response: TurnResponse) -> None:
        """Write the response: the responses table's changelog is the response topic."""
        self._responses.set(key, response)
        admitted = self.in_flight_index.get(key)
        metrics.observe_response(
            response, admitted[1] if admitted and admitted[0].turn_id == response.turn_id else None
        )

    @property
    def _responses(self) -> DecodedTable[TurnResponse]:
        if self.responses is None:
            raise RuntimeError("responses are written by the context role")
        return self.responses

    def answered(self, key: bytes, turn_id: str) -> bool:
        last = self._responses.get(key)
        return last is not None and last.turn_id == turn_id

    async def dead_letter(self, record: RawRecord, reason: str, detail: str) -> None:
        """Dead-letter ``record``: a letter below the producer's limit, awaited until the
        broker has it (:func:`~streams.pipeline.rejects.deliver`: retried, then a minimal
        letter); never raises, so the agent neither crashes nor commits past the record."""
        metrics.DEAD_LETTERS.labels(reason).inc()
        keep = original_bound(self.topology.settings.producer_max_request_size)
        letter = letter_for(record, reason, detail, keep=keep)
        logger.warning(
            "dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
        )
        await deliver(letter, self._send_dead_letter)

    async def _send_dead_letter(self, key: bytes | None, value: bytes) -> None:
        """Produce and wait for the broker's answer: a refusal raises here. The producer's
        own ``send_and_wait``, not ``Topic.send``: that one hands the error to a second
        future nobody reads, which asyncio then logs as never retrieved."""
        topic = self.topology.dead_letter.get_topic_name()
        await self.topology.app.producer.send_and_wait(topic, key, value, None, None, None)

    async def fail_turn(
        self, key: bytes, envelope: TurnEnvelope, phase: Phase, code: str, message: str
    ) -> None:
        """End a turn that a stage could not finish: a record with the error through
        ``turn.completed``, so the context role answers it (an error response) and opens
        the session's gate as for any turn."""
        logger.warning("turn %s failed in %s: %s %s", envelope.turn_id, phase.value, code, message)
        error = TurnError(phase=phase, code=code, message=message[:2000])
        context = envelope.context.model_copy(
            update={"response_text": None, "errors": [*envelope.context.errors, error]}
        )
        now = datetime.now(UTC)
        failed = CompletedTurn(
            session_key=envelope.session_key,
            record=turn_record(envelope.turn_id, context, now),
            emitted_at=now,
        )
        await self.send(self.topology.completed, key, failed)

    def working(self, handler: Handler) -> Handler:
        """``handler`` with the heartbeat: its session counts as busy while it runs, and as
        progressed when it returns."""

        async def run(event: Any) -> None:
            key = event.message.key
            if key is None:
                await handler(event)
                return
            self.busy[key] += 1
            try:
                await handler(event)
            finally:
                self.busy[key] -= 1
                if self.busy[key] <= 0:
                    del self.busy[key]
                if key in self.in_flight_index:
                    self.progress[key] = datetime.now(UTC)

        return run

    def decode(self, event: Any, model: type[M]) -> M:
        return decode_as(event.message.value, model)

    def guard(
        self, name: str, phase: Phase, handler: Handler, fail_in_flight: FailInFlight | None = None
    ) -> Callable[[Any], Awaitable[None]]:
        """A Faust agent over ``handler``: one event at a time, and an exception becomes a
        dead letter (and an error response for the turn, when one is in flight) instead of
        a dead agent. ``fail_in_flight``: how a crash on a record that is not a turn
        envelope ends the session's turn in flight (where this process runs the gate)."""

        in_progress = metrics.STAGE_IN_PROGRESS.labels(name)
        duration = metrics.STAGE_DURATION.labels(name)
        failures = metrics.STAGE_FAILURES.labels(name)

        async def agent(stream: Any) -> None:
            async for event in stream.events():
                message = event.message
                began = time.perf_counter()
                in_progress.inc()
                with tracing.stage_span(
                    name, message.headers, topic=message.topic, partition=message.partition
                ):
                    try:
                        await handler(event)
                    except Exception as exc:
                        logger.exception("%s failed on %s", name, message.topic)
                        failures.inc()
                        tracing.failed(exc)
                        await self._on_crash(event, name, phase, exc, fail_in_flight)
                    finally:
                        in_progress.dec()
                        duration.observe(time.perf_counter() - began)

        agent.__name__ = agent.__qualname__ = name
        return agent

    async def _on_crash(
        self, event: Any, name: str, phase: Phase, exc: Exception, fail: FailInFlight | None
    ) -> None:
        record = raw_record(event)
        detail = f"{name}: {type(exc).__name__}: {exc}"
        await self.dead_letter(record, "processing_failed", detail)
        if record.key is None:
            return
        why = f"{name} failed: {type(exc).__name__}"
        try:
            envelope = decode_as(record.value, TurnEnvelope)
        except (CodecError, ValueError):
            if fail is not None:
                await fail(record.key, phase, "processing_failed", why)
            return
        if envelope.context.input.session_id is not None:
            await self.fail_turn(record.key, envelope, phase, "processing_failed", why)
