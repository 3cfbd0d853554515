"""Turns sent through a running pipeline by one :class:`TurnClient`, as a bench sees them:
each timed from just before its ``TurnRequested`` is produced to when its ``TurnResponse``
is consumed, in the bench process, on the loop's clock; and after a stage, its lost and
duplicate answers, from the client's count of response records.

The words: a turn with no response by its deadline (an open loop's ``--drain`` after the
last send) is **unanswered** (``bench.harness.load.latency_report``): an overloaded
pipeline is still working on it. :meth:`StreamTurns.settled` then waits for the backlog:
a turn still without a response once the pipeline's consumer group has consumed and
committed every record of its topics (:func:`pipeline_backlog`, twice in a row) is
**lost**. If the wait ran out first, which turns are lost is not known: ``lost`` is None
and ``still_unanswered`` says how many turns were left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from bench.harness.load import Turn, answered_count, latency_report, turn_input
from bench.harness.procwatch import cpu_ms_per_turn
from streams.settings import Settings
from streams.topics import pipeline_group
from streams.turn_client import TurnClient

POLL_S = 1.0
CAUGHT_UP_POLLS = 2
"""Polls in a row with no backlog before a turn still unanswered counts as lost."""

Backlog = Callable[[], Awaitable[int]]
"""Records the pipeline has not consumed and committed yet."""


@asynccontextmanager
async def pipeline_backlog(settings: Settings) -> AsyncIterator[Backlog]:
    """The pipeline group's backlog over every partition of the topics it committed on (a
    partition it never committed counts from its first offset, so a partition the load
    reached first is not missed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None)
    await admin.start()
    await consumer.start()
    group = pipeline_group(settings.topic_prefix)

    async def backlog() -> int:
        committed = await admin.list_consumer_group_offsets(group)
        await consumer.topics()  # fresh metadata: every partition of every topic
        partitions = [
            TopicPartition(topic, p)
            for topic in {tp.topic for tp in committed}
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        begins: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
        done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        return sum(max(0, end - done.get(tp, begins[tp])) for tp, end in ends.items())

    try:
        yield backlog
    finally:
        await consumer.stop()
        await admin.close()


class StreamTurns:
    """The :data:`bench.harness.load.Ask` of a pipeline, over ``client``."""

    def __init__(self, client: TurnClient, backlog: Backlog | None = None) -> None:
        self.client = client
        self.backlog = backlog
        """What :meth:`settled` asks whether the pipeline has anything left."""
        self.sent = 0
        """Turns sent through :meth:`ask` (the denominator of records per turn)."""

    async def ask(self, channel_id: str, message: str, deadline: float) -> Turn:
        """One turn; unanswered (no response) when none came by ``deadline``."""
        loop = asyncio.get_running_loop()
        t = loop.time()
        turn = Turn(await self.client.send(turn_input(channel_id, message)))
        self.sent += 1
        try:
            response = await self.client.response(turn.turn_id, max(0.0, deadline - loop.time()))
        except TimeoutError:
            return turn
        turn.answered_at = loop.time()
        turn.e2e_ms = (turn.answered_at - t) * 1000
        turn.response = response
        return turn

    async def settled(self, turns: Sequence[Turn], max_s: float) -> dict[str, Any]:
        """``lost`` and ``duplicates`` of ``turns`` after waiting (at most ``max_s``) for
        the unanswered ones (see the module docstring); ``drained_s``: how long it waited."""
        if self.backlog is None:
            raise RuntimeError("StreamTurns.settled needs the pipeline's backlog")
        loop = asyncio.get_running_loop()
        counts = self.client.response_counts
        started = loop.time()
        waiting = [t.turn_id for t in turns if counts[t.turn_id] == 0]
        caught_up = 0
        while waiting and caught_up < CAUGHT_UP_POLLS and loop.time() - started < max_s:
            await asyncio.sleep(POLL_S)
            caught_up = caught_up + 1 if await self.backlog() == 0 else 0
            waiting = [t for t in waiting if counts[t] == 0]
        settled: dict[str, Any] = {
            "lost": len(waiting),
            "duplicates": sum(counts[t.turn_id] - 1 for t in turns if counts[t.turn_id] > 1),
            "drained_s": round(loop.time() - started, 1),
        }
        if waiting and caught_up < CAUGHT_UP_POLLS:  # the wait ran out with a backlog left
            settled["lost"] = None
            settled["still_unanswered"] = len(waiting)
        return settled

    async def report(self, stage: dict[str, Any], turns: Sequence[Turn], max_s: float) -> None:
        """A stage's figures into ``stage`` (after its :meth:`Watch.stage` block): latency
        and transport overhead, :meth:`settled` (waiting at most ``max_s``), and the workers'
        CPU per answered turn (``worker_cpu_ms_per_turn``: in an overloaded open loop the
        workers still have a backlog after the stage, so read the closed loop's)."""
        stage.update(latency_report(turns, transport=True))
        stage.update(await self.settled(turns, max_s))
        stage["worker_cpu_ms_per_turn"] = cpu_ms_per_turn(stage, "worker", answered_count(turns))
