"""The chaos soak on a replicated cluster (``bench/chaos.py --cluster N``): a private N-node
KRaft cluster (streams/local_kafka.py ``LocalCluster``: every node broker and controller, RF 3,
``min.insync.replicas=2``) instead of the single broker, and node faults instead of the one
broker restart.

**Node faults**, one after another from ``--calm`` seconds into the load, each starting once
the cluster is whole again (every partition's replicas in sync, the metadata quorum caught up):

1. SIGKILL the leader of partition 0 of the request topic,
2. SIGKILL the active controller (the metadata quorum's leader),
3. SIGKILL the coordinator of the pipeline's consumer group,

each killed node started again ``--node-down`` seconds later on its data dir; then

4. a rolling restart: every node in turn stopped (controlled shutdown) and started again,
   the next only once the cluster is in sync.

No node fault begins after the load's end less ``--calm`` (listed as skipped): on a loaded
2-core box (load ~30) a node took ~70-85 s to serve again and all six needed ``--duration``
~540; at load ~10, 20-37 s, and all six fitted in ``--duration 420`` (docs/operations.md).
Worker SIGKILLs keep their schedule outside the node faults (from 15 s before the first
until 15 s after the last, none), so each stall is the node's. Each node fault is in the
soak's ``recovery`` (kind ``node_<role>``) and in ``broker_kills``: which node, which role,
when, how long down (until it served again), how long until in sync, and what the turns in
flight at the fault waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka.errors import KafkaError

from bench.chaos_soak import BROKER_CALM_S, Fault, Soak
from bench.harness.pipeline import Cluster, bench_root
from streams.local_kafka import LocalCluster, LocalKafkaError, Role, private_local_cluster
from streams.settings import Settings
from streams.topics import TURN_REQUESTED, pipeline_group

KILLS = (Role.PARTITION_LEADER, Role.CONTROLLER, Role.COORDINATOR)
NODE_START_TIMEOUT_S = 180.0
"""A node SIGKILLed under load recovers its logs before it serves: on a loaded 2-core box
that took over 60 s (the single broker's default start timeout)."""
START_TRIES = 2
ROLLING = "rolling_restart"


@dataclass
class NodeFault:
    """One node taken away: what ``broker_kills`` lists."""

    role: str
    node: int
    how: str
    """``SIGKILL`` or ``stop`` (controlled shutdown, in the rolling restart)."""
    at_s: float
    down_s: float = 0.0
    """From the kill (or stop) until the node served again."""
    in_sync_s: float = 0.0
    """From serving again until every replica was in sync."""
    in_flight: int = 0
    error: str | None = None
    """Why the node did not come back (the schedule then stops: no second node is taken)."""


@dataclass
class NodeCluster(Cluster):
    """The bench's :class:`Cluster` (root, base settings; no single broker) with the nodes."""

    nodes: LocalCluster | None = None


@contextlib.asynccontextmanager
async def private_node_cluster(nodes: int, *, keep: bool = False) -> AsyncIterator[NodeCluster]:
    """A temporary directory and an ``nodes``-node cluster of our own in it; at the end the
    cluster stops and the directory goes, unless the bench failed or ``keep``."""
    with bench_root("chaos-cluster", keep=keep) as root:
        cluster = private_local_cluster(root, nodes, kafka_start_timeout_s=NODE_START_TIMEOUT_S)
        t0 = time.monotonic()
        await asyncio.to_thread(cluster.up)
        print(f"{nodes}-node cluster up on {cluster.bootstrap} in {time.monotonic() - t0:.1f} s")
        try:
            yield NodeCluster(root, cluster.client_settings(data_dir=root), None, cluster)
        finally:
            await asyncio.to_thread(cluster.down)


class NodeFaults:
    """The node-fault schedule of one soak, on the soak's clock."""

    def __init__(self, soak: Soak, cluster: LocalCluster, settings: Settings) -> None:
        self.soak = soak
        self.cluster = cluster
        self.settings = settings
        self.done: list[tuple[NodeFault, Fault]] = []
        self.errors: list[str] = []
        self.skipped: list[str] = []

    async def run(self, start: float, stop: float, node_down_s: float) -> None:
        """The faults from ``start``; none begins after ``stop`` (the load's end less
        ``--calm``, as for worker kills): those are listed as skipped."""
        soak = self.soak
        soak.no_kills = (start - BROKER_CALM_S, float("inf"))
        await asyncio.sleep(max(0.0, start - soak.now()))
        try:
            for role in KILLS:
                if self._skip(role.value, stop):
                    continue
                node = await self._find(role)
                if node is None:
                    return
                if not await self._take_down(role.value, node, "SIGKILL", node_down_s):
                    return
            for node in sorted(self.cluster.nodes):
                if self._skip(f"{ROLLING} node {node}", stop):
                    continue
                if not await self._take_down(ROLLING, node, "stop", 0.0):
                    return
        finally:
            soak.no_kills = (soak.no_kills[0], soak.now() + BROKER_CALM_S)

    def _skip(self, what: str, stop: float) -> bool:
        if self.soak.now() < stop:
            return False
        self.skipped.append(what)
        print(f"[{self.soak.elapsed():6.1f} s] {what}: skipped (the load ends; see --duration)")
        return True

    async def _find(self, role: Role) -> int | None:
        prefix = self.settings.topic_prefix
        try:
            return await self.cluster.find(
                role, topic=TURN_REQUESTED.name(prefix), partition=0, group=pipeline_group(prefix)
            )
        except (LocalKafkaError, KafkaError) as exc:
            self.errors.append(f"{role}: not found ({exc!r}); node faults stopped")
            print(f"[{self.soak.elapsed():6.1f} s] {self.errors[-1]}")
            return None

    async def _take_down(self, role: str, node: int, how: str, down_for: float) -> bool:
        """Take the node away and bring it back; False when it did not come back."""
        soak = self.soak
        in_flight = soak.in_flight()
        fault = Fault(f"node_{role}", f"node{node}", soak.elapsed(), in_flight)
        record = NodeFault(role, node, how, round(fault.at_s, 1), in_flight=len(in_flight))
        print(f"[{fault.at_s:6.1f} s] {how} node {node} ({role}), {len(in_flight)} in flight")
        t = soak.now()
        if how == "SIGKILL":
            await asyncio.to_thread(self.cluster.kill, node)
        else:
            await asyncio.to_thread(self.cluster.stop, node)
        await asyncio.sleep(down_for)
        soak.faults.append(fault)
        self.done.append((record, fault))
        for attempt in range(1, START_TRIES + 1):
            try:
                await asyncio.to_thread(self.cluster.start, node)
                record.down_s = fault.down_s = round(soak.now() - t, 2)
                record.in_sync_s = round(await asyncio.to_thread(self.cluster.wait_in_sync), 2)
                break
            except LocalKafkaError as exc:
                record.error = f"try {attempt}: {str(exc).splitlines()[0]}"
                print(f"[{soak.elapsed():6.1f} s] node {node} not back: {record.error}")
        else:
            record.down_s = fault.down_s = round(soak.now() - t, 2)
            return False
        record.error = None
        print(
            f"[{soak.elapsed():6.1f} s] node {node} back after {record.down_s} s, "
            f"in sync {record.in_sync_s} s later"
        )
        return True

    def report(self) -> list[dict[str, Any]]:
        """``broker_kills``: each node fault with the soak's recovery figures for it."""
        recovery = {(r["kind"], r["target"], r["at_s"]): r for r in self.soak.recovery()}
        rows = []
        for record, fault in self.done:
            seen = recovery.get((fault.kind, fault.target, round(fault.at_s, 1)), {})
            rows.append(
                {
                    **asdict(record),
                    "in_flight_answered_s": seen.get("in_flight_answered_s"),
                    "first_answer_s": seen.get("first_answer_s"),
                }
            )
        rows += [{"error": error} for error in self.errors]
        return rows + [{"skipped": what} for what in self.skipped]
