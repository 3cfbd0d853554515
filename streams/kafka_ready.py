"""Wait until the cluster *serves* topics and a group coordinator, before clients use them.

Metadata names a leader for a new partition before that broker can answer for it, and the
group coordinator exists only once ``__consumer_offsets`` (created on the first
FindCoordinator) has loaded. A consumer started in between retries on its own, but logs
every retry at ERROR (``NotLeaderForPartitionError``, ``GroupCoordinatorNotAvailable``): a
normal start would look broken. So the worker and ``turnstream demo`` ask first, with
requests whose errors are data here rather than log lines: ListOffsets to each partition's
leader and FindCoordinator for the group, until every answer is clean.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.offset import OffsetRequest
from aiokafka.structs import TopicPartition

OFFSETS_TOPIC = "__consumer_offsets"
LATEST = -1
COORDINATOR_TYPE_GROUP = 0
POLL_S = 0.1


async def _coordinator_problem(client: AIOKafkaClient, group: str) -> str | None:
    response = await client.send(
        client.get_random_node(), FindCoordinatorRequest(group, COORDINATOR_TYPE_GROUP)
    )
    code = int(response.error_code)
    return None if code == 0 else f"no coordinator for group {group} yet (error {code})"


async def _partition_problems(client: AIOKafkaClient, topics: Sequence[str]) -> list[str]:
    """Partitions without a leader, or whose leader does not answer ListOffsets cleanly."""
    metadata = await client.fetch_all_metadata()
    problems: list[str] = []
    by_leader: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for topic in topics:
        partitions = metadata.partitions_for_topic(topic)
        if not partitions:
            problems.append(f"{topic}: not in the metadata yet")
            continue
        for partition in sorted(partitions):
            leader = metadata.leader_for_partition(TopicPartition(topic, partition))
            if leader is None or leader < 0:
                problems.append(f"{topic}[{partition}]: no leader yet")
            else:
                by_leader[leader][topic].append(partition)
    for leader, wanted in by_leader.items():
        request = OffsetRequest(
            -1, 0, [(topic, [(p, LATEST) for p in parts]) for topic, parts in wanted.items()]
        )
        response = await client.send(leader, request)
        for topic, partitions in response.topics:
            problems.extend(
                f"{topic}[{answer[0]}]: error {answer[1]} from its leader"
                for answer in partitions
                if answer[1] != 0
            )
    return problems


async def wait_until_serving(
    bootstrap: str,
    topics: Sequence[str] = (),
    group: str | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Wait until every partition of ``topics`` answers on its leader and, with ``group``,
    its coordinator is up (then ``__consumer_offsets`` must serve too). Returns what is
    still not ready when ``timeout_s`` runs out (empty: all ready). Clients started after a
    timeout still work: they retry, loudly."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while True:
            problems: list[str] = []
            names = list(topics)
            if group is not None:
                coordinator = await _coordinator_problem(client, group)
                if coordinator is not None:
                    problems.append(coordinator)
                else:
                    names.append(OFFSETS_TOPIC)
            problems += await _partition_problems(client, names)
            if not problems or loop.time() >= deadline:
                return problems
            await asyncio.sleep(POLL_S)
    finally:
        await client.close()
