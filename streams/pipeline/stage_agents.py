"""The agents after the session agent: P4 retrieval per type, the P4 join, P5-P8, P9 and
P10. Each drops what is not its session's turn in flight (a replay of a finished turn), so
a replay costs work but never a second effect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import faust

from processors.phases.enforcement import Decision
from processors.turn.answer import after_response_tools, check_answer
from processors.turn.deps import TurnDeps
from processors.turn.join import given_up, missing, step
from processors.turn.persist import turn_record
from processors.turn.retrieval_stage import (
    failed_result,
    join,
    retrieve_one,
    timeout_result,
)
from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalType
from schemas.domain.turn_context import TurnContext
from schemas.events.completed_turn import CompletedTurn
from schemas.events.pipeline_state import RetrievalJoin
from schemas.events.retrieval import RetrievalRequested, RetrievalResult
from schemas.events.turn_envelope import TurnEnvelope
from schemas.pack.agent_pack import AgentPack
from streams import metrics, tracing
from streams.pipeline.base import Pipeline
from streams.pipeline.decoded import DecodedTable, Rescan
from streams.pipeline.topology import required
from streams.topics import TURN_CONTEXT

logger = logging.getLogger(__name__)

DEADLINE_TICK_S = 0.05
"""How often the join looks for turns past their retrieval deadline."""


class TakenUp:
    """When this worker's retrieval consumers took up each (turn, type): the join's deadline
    runs from there, so a type merely queued behind a burst is waited for, not a gap.

    In-process only: a join whose retrieval consumers run in another process does not see
    them, and gives a type up ``retrieval_queue_wait_s`` after the request instead."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, RetrievalType], datetime] = {}

    def mark(self, turn_id: str, rtype: RetrievalType, now: datetime) -> None:
        self.at[(turn_id, rtype)] = now

    def forget(self, turn_id: str) -> None:
        for rtype in RetrievalType:
            self.at.pop((turn_id, rtype), None)

    def drop_older_than(self, cutoff: datetime) -> None:
        for entry, when in list(self.at.items()):
            if when < cutoff:
                del self.at[entry]


class RetrievalAgent:
    """P4.2-P4.5 for the type of the topic it reads: one consumer per type, scaled alone."""

    def __init__(self, pipeline: Pipeline, rtype: RetrievalType, taken: TakenUp) -> None:
        self.p = pipeline
        self.rtype = rtype
        self.taken = taken

    async def handle(self, event: Any) -> None:
        request = self.p.decode(event, RetrievalRequested)
        self.taken.mark(request.turn_id, self.rtype, datetime.now(UTC))
        pack = self.p.runtime.versions.get(
            request.tenant_id, request.agent_id, request.pack_version
        )
        if pack is None:
            result = failed_result(request, "pack version not available", datetime.now(UTC))
        else:
            try:
                with tracing.phase_span(f"retrieval.{self.rtype.value}"):
                    result = await asyncio.to_thread(retrieve_one, request, pack, self.p.deps)
            except Exception as exc:  # a failed type is a gap in the join, not a dead turn
                logger.exception("%s retrieval failed", self.rtype.value)
                result = failed_result(request, f"{type(exc).__name__}: {exc}", datetime.now(UTC))
        await self.p.send(self.p.topology.retrieval_results, event.message.key, result)


class JoinAgent:
    """The P4 fan-in: the context and the four results meet in the join table; the turn
    goes on when all four are in or its deadline passed (missing types become gaps)."""

    def __init__(self, pipeline: Pipeline, taken: TakenUp) -> None:
        self.p = pipeline
        self.t = pipeline.topology
        self.taken = taken
        self._context = self.t.name(TURN_CONTEXT)
        self.joins = DecodedTable(required(self.t.joins, "retrieval join"), RetrievalJoin)
        self._pending: dict[bytes, tuple[str, datetime]] = {}
        self._rescan = Rescan(self.joins.table)

    async def handle(self, event: Any) -> None:
        key: bytes = event.message.key
        if event.message.topic == self._context:
            envelope = self.p.decode(event, TurnEnvelope)
            turn_id, result = envelope.turn_id, None
        else:
            result = self.p.decode(event, RetrievalResult)
            turn_id, envelope = result.turn_id, None
        if not self.p.in_flight(key, turn_id):
            return
        timeout_s = self.p.deps.settings.phases.retrieval.timeout_s
        outcome = step(self.joins.get(key), turn_id, envelope, result, timeout_s)
        if outcome.state is None:
            return
        self.joins.set(key, outcome.state)
        if outcome.ready is None:
            if outcome.state.deadline is not None:
                self._pending[key] = (turn_id, outcome.state.deadline)
            return
        self._pending.pop(key, None)
        self.taken.forget(turn_id)
        ready, results = outcome.ready
        pack = self.p.pack_for(ready.context)
        context = join(ready.context, results, pack)
        for gap in context.retrieval_gaps:
            metrics.RETRIEVAL_GAPS.labels(gap.retrieval_type.value, gap.reason.value).inc()
        await self.p.forward(self.t.retrieved, ready, Phase.RETRIEVAL, context)

    async def tick(self) -> None:
        """Send a timeout result for each type still missing from a join past its deadline
        (through the results topic, so the join itself stays the only writer). A failing
        tick is logged and the next one tries again: a timer that raises stops the app."""
        try:
            await self._tick()
        except Exception:
            logger.exception("join deadline tick failed")

    async def _tick(self) -> None:
        recovered = self._rescan.due()
        if recovered is not None:
            # after a recovery the pending joins came from the changelog, not the agent
            async for key, join in self.joins.scan():
                if not join.done and join.deadline is not None:
                    self._pending.setdefault(key, (join.turn_id, join.deadline))
            self._rescan.done(recovered)
        now = datetime.now(UTC)
        settings = self.p.deps.settings
        timeout = timedelta(seconds=settings.phases.retrieval.timeout_s)
        queue_wait = timedelta(seconds=settings.retrieval_queue_wait_s)
        self.taken.drop_older_than(now - queue_wait - timeout)
        for key, (turn_id, deadline) in list(self._pending.items()):
            if deadline > now:
                continue
            state = self.joins.get(key)
            if state is None or state.turn_id != turn_id or state.done:
                self._pending.pop(key, None)
                continue
            taken = {
                rtype: at
                for rtype in RetrievalType
                if (at := self.taken.at.get((turn_id, rtype))) is not None
            }
            late = given_up(state, now, taken, timeout, queue_wait)
            if late == missing(state):
                self._pending.pop(key, None)
            for rtype in late:
                self.taken.at.pop((turn_id, rtype), None)
                gave_up = timeout_result(turn_id, key.decode(), rtype, now)
                await self.p.send(self.t.retrieval_results, key, gave_up)


Stage = Callable[[TurnContext, AgentPack, TurnDeps], Awaitable[TurnContext]]


class StageAgent:
    """A stage that takes the turn in flight, runs ``stage`` with the turn's pack version and
    forwards the result to ``output`` as leaving ``phase``: P5-P8 (``decide``) and P9
    (``generate_answer``, for the first attempt and every remediation P10 sends back)."""

    def __init__(
        self, pipeline: Pipeline, stage: Stage, output: faust.TopicT, phase: Phase
    ) -> None:
        self.p = pipeline
        self._stage = stage
        self._output = output
        self._phase = phase

    async def handle(self, event: Any) -> None:
        envelope = self.p.decode(event, TurnEnvelope)
        if not self.p.in_flight(event.message.key, envelope.turn_id):
            return
        pack = self.p.pack_for(envelope.context)
        context = await self._stage(envelope.context, pack, self.p.deps)
        await self.p.forward(self._output, envelope, self._phase, context)


class EnforceAgent:
    """P10; a passed (or replaced) answer ends the turn: its record goes to ``turn.completed``,
    where the session agent answers, persists and opens the gate."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline

    async def handle(self, event: Any) -> None:
        envelope = self.p.decode(event, TurnEnvelope)
        key: bytes = event.message.key
        if not self.p.in_flight(key, envelope.turn_id):
            return
        pack = self.p.pack_for(envelope.context)
        deps = self.p.deps
        context, decision = await check_answer(envelope.context, pack, envelope.attempt, deps)
        if decision is Decision.REGENERATE:
            await self.p.forward(
                self.p.topology.planned,
                envelope,
                Phase.ENFORCEMENT,
                context,
                attempt=envelope.attempt + 1,
            )
            return
        context = await after_response_tools(context, pack, deps)
        now = datetime.now(UTC)
        completed = CompletedTurn(
            session_key=envelope.session_key,
            record=turn_record(envelope.turn_id, context, now),
            emitted_at=now,
        )
        await self.p.send(self.p.topology.completed, key, completed)
