"""Replication: a 3-node KRaft cluster (RF 3, ``min.insync.replicas=2``) under a steady load of
turns through a real worker, while one node at a time goes away: the leader of a request-topic
partition SIGKILLed, the active controller SIGKILLed, the pipeline group's coordinator
SIGKILLed, then a rolling restart of all three nodes. Every turn is answered exactly once.

One cluster (``kafka_cluster``, module-scoped: ~25-40 s to start) and one worker serve the
four tests, in file order; each test brings the killed node back and waits until every
partition is fully in sync again, so the next one starts from a whole cluster. The stall
each fault caused is printed (``-s``), never asserted: timings belong in bench/chaos.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from schemas.events.turn_response import ResponseStatus
from streams.local_kafka import LocalCluster, Role
from streams.settings import Settings
from streams.topics import TURN_REQUESTED, pipeline_group
from streams.turn_client import TurnClient
from streams.worker_process import wait_for_groups
from tests.pipeline_support import (
    WorkerProcess,
    customer_says,
    pipeline_settings,
    prepare,
    settle,
)

pytestmark = pytest.mark.integration

SESSIONS = 6
TURNS = ("hi", "where is my order A-10024?", "and A-10023?", "can I change my address?", "bye")
BEFORE_FAULT = 8
"""Answers of the test's own load before the node goes: the fault hits turns in flight."""
DURING_FAULT = 8
"""Answers after the in-flight ones, while the node starts again: the pipeline works on two
nodes (a node's JVM takes ~15-30 s to serve)."""
TURN_TIMEOUT_S = 150.0


@dataclass
class Pipeline:
    cluster: LocalCluster
    settings: Settings
    worker: WorkerProcess


@pytest.fixture(scope="module")
def cluster_pipeline(
    kafka_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """One worker on the cluster, RF 3 topics under a prefix of its own."""
    root = tmp_path_factory.mktemp("failover")
    settings = pipeline_settings(kafka_cluster.client_settings(), root / "data")
    assert settings.replication_factor == 3
    asyncio.run(prepare(settings))
    worker = WorkerProcess(settings, root / "worker.log")
    worker.start()
    try:
        groups = [pipeline_group(settings.topic_prefix)]
        asyncio.run(wait_for_groups(settings.bootstrap_servers, groups, 1, [worker]))
        yield Pipeline(kafka_cluster, settings, worker)
    finally:
        worker.stop()


@dataclass
class Load:
    """Sessions sending the five turns one after another, conversation after conversation,
    until stopped; what was sent and when each answer came."""

    client: TurnClient
    sent: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    failures: list[str] = field(default_factory=list)

    async def session(self, n: int) -> None:
        k = 0
        while not self.stop.is_set():
            who = f"failover-{n}-{k}-{uuid.uuid4().hex[:6]}"
            k += 1
            for message in TURNS:
                if self.stop.is_set():
                    return
                turn_id = f"turn-{uuid.uuid4().hex}"
                self.sent[turn_id] = time.monotonic()
                await self.client.send(customer_says(who, message), turn_id)
                response = await self.client.response(turn_id, timeout=TURN_TIMEOUT_S)
                self.answered[turn_id] = time.monotonic()
                if response.status is not ResponseStatus.OK:
                    self.failures.append(f"{turn_id}: {response.status} {response.error}")

    async def answers(self, count: int) -> None:
        want = len(self.answered) + count
        while len(self.answered) < want:
            await asyncio.sleep(0.1)

    def in_flight(self) -> list[str]:
        return [t for t in self.sent if t not in self.answered]


async def _under_load(
    pipeline: Pipeline, fault: Callable[[Load], Awaitable[str]]
) -> tuple[Load, TurnClient, str]:
    async with TurnClient(pipeline.settings) as client:
        load = Load(client)
        sessions = [asyncio.create_task(load.session(n)) for n in range(SESSIONS)]
        try:
            await load.answers(BEFORE_FAULT)
            what = await fault(load)
            load.stop.set()
            await asyncio.gather(*sessions)
        finally:
            load.stop.set()
            for task in sessions:
                task.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)
        await settle(3.0)
    return load, client, what


def _assert_each_turn_answered_once(load: Load, client: TurnClient, what: str) -> None:
    counts = client.response_counts
    lost = [t for t in load.sent if counts[t] == 0]
    duplicated = {t: client.response_places[t] for t in load.sent if counts[t] > 1}
    assert not lost, f"{what}: {len(lost)} of {len(load.sent)} turns never answered"
    assert not duplicated, f"{what}: answered more than once: {duplicated}"
    assert not load.failures, f"{what}: error responses {load.failures}"
    assert len(load.sent) >= BEFORE_FAULT + DURING_FAULT


async def _kill_and_return(pipeline: Pipeline, load: Load, role: Role, **where: str | int) -> str:
    """SIGKILL the node holding ``role``; wait for the in-flight turns and more answers on
    two nodes; start it again and wait until everything is in sync."""
    cluster = pipeline.cluster
    node = await cluster.find(role, **where)  # type: ignore[arg-type]
    in_flight = load.in_flight()
    t0 = time.monotonic()
    await asyncio.to_thread(cluster.kill, node)
    while any(t not in load.answered for t in in_flight):
        await asyncio.sleep(0.1)
    stall = time.monotonic() - t0
    restart = asyncio.create_task(asyncio.to_thread(cluster.start, node))  # a JVM: ~30 s
    await load.answers(DURING_FAULT)
    await restart
    back = time.monotonic() - t0
    synced = await asyncio.to_thread(cluster.wait_in_sync)
    what = f"SIGKILL {role} node {node}"
    print(
        f"\n{what}: {len(in_flight)} in flight answered after {stall:.1f} s; node back after "
        f"{back:.1f} s, in sync {synced:.1f} s later; {len(load.sent)} turns sent"
    )
    return what


@pytest.mark.timeout(600)  # first: pays for the cluster's and the worker's start
def test_cluster_topics_are_replicated_three_times_with_two_in_sync_required(
    cluster_pipeline: Pipeline,
) -> None:
    """What makes the kills above survivable: every catalog topic has 3 replicas, and the
    cluster refuses writes acknowledged by fewer than 2."""
    from streams.local_kafka import broker_properties

    cluster = cluster_pipeline.cluster
    node = cluster.node_of(1)
    props = broker_properties(cluster.settings, node.home, node.node)
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["controller.quorum.voters"].count("@") == 3

    async def replicas() -> dict[str, int]:
        async with cluster.admin() as admin:
            topics = await admin.describe_topics()
        prefix = cluster_pipeline.settings.topic_prefix
        return {
            f"{t['topic']}-{p['partition']}": len(p["replicas"])
            for t in topics
            if t["topic"].startswith(prefix) or t["topic"] == "__consumer_offsets"
            for p in t["partitions"]
        }

    found = asyncio.run(replicas())
    assert found and set(found.values()) == {3}, found


@pytest.mark.timeout(420)
async def test_partition_leader_killed_every_turn_answered_once(
    cluster_pipeline: Pipeline,
) -> None:
    topic = TURN_REQUESTED.name(cluster_pipeline.settings.topic_prefix)

    async def fault(load: Load) -> str:
        return await _kill_and_return(
            cluster_pipeline, load, Role.PARTITION_LEADER, topic=topic, partition=0
        )

    _assert_each_turn_answered_once(*await _under_load(cluster_pipeline, fault))


@pytest.mark.timeout(420)
async def test_active_controller_killed_every_turn_answered_once(
    cluster_pipeline: Pipeline,
) -> None:
    async def fault(load: Load) -> str:
        return await _kill_and_return(cluster_pipeline, load, Role.CONTROLLER)

    _assert_each_turn_answered_once(*await _under_load(cluster_pipeline, fault))


@pytest.mark.timeout(420)
async def test_group_coordinator_killed_every_turn_answered_once(
    cluster_pipeline: Pipeline,
) -> None:
    group = pipeline_group(cluster_pipeline.settings.topic_prefix)

    async def fault(load: Load) -> str:
        return await _kill_and_return(cluster_pipeline, load, Role.COORDINATOR, group=group)

    _assert_each_turn_answered_once(*await _under_load(cluster_pipeline, fault))


@pytest.mark.timeout(600)
async def test_rolling_restart_of_every_node_every_turn_answered_once(
    cluster_pipeline: Pipeline,
) -> None:
    cluster = cluster_pipeline.cluster

    async def fault(load: Load) -> str:
        for node in sorted(cluster.nodes):
            t0 = time.monotonic()
            await asyncio.to_thread(cluster.stop, node)
            await asyncio.to_thread(cluster.start, node)
            back = time.monotonic() - t0
            synced = await asyncio.to_thread(cluster.wait_in_sync)
            print(
                f"\nrolling restart: node {node} back after {back:.1f} s, in sync {synced:.1f} s"
                f" later; {len(load.answered)} answered so far"
            )
        await load.answers(DURING_FAULT)
        return "rolling restart"

    _assert_each_turn_answered_once(*await _under_load(cluster_pipeline, fault))
