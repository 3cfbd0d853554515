"""Create the catalog's topics idempotently and report where a cluster differs from it.

A topic keeps the replication factor it was created with: a cluster started with one broker
and grown to three keeps its RF 1 topics (one broker lost loses their partitions). The report
names the topics below :func:`wanted_replication` and the worker's start and ``turnstream
topics create`` say so in one WARNING line."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.kafka_ready import wait_until_serving
from streams.settings import Settings
from streams.topics import ALL_TOPICS, TopicSpec

FULL_REPLICATION = 3
"""The replication factor every topic should have once the cluster has this many brokers
(docs/production.md; ``turnstream kafka up --nodes 3`` prints TURNSTREAM_REPLICATION_FACTOR=3)."""


def wanted_replication(catalog_rf: int, brokers: int) -> int:
    """The fewest replicas a catalog topic should have: the catalog's replication factor
    (``TURNSTREAM_REPLICATION_FACTOR``), and every broker up to :data:`FULL_REPLICATION`."""
    return max(catalog_rf, min(brokers, FULL_REPLICATION))


def under_replicated(replicas: dict[str, int], catalog_rf: int, brokers: int) -> dict[str, int]:
    """The topics of ``replicas`` (name -> replication factor) with fewer than wanted."""
    want = wanted_replication(catalog_rf, brokers)
    return {name: rf for name, rf in sorted(replicas.items()) if rf < want}


@dataclass
class TopicReport:
    """What `topics create` did: created topics, topics already right, and mismatches; and
    the topics with fewer replicas than the cluster should hold (a warning, not a mismatch:
    an existing topic is never altered)."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    under_replicated: dict[str, int] = field(default_factory=dict)
    """Topic -> its replication factor, for those below :func:`wanted_replication`."""
    replication_factor: int = 1
    """The catalog's (``TURNSTREAM_REPLICATION_FACTOR``)."""
    brokers: int = 0
    """Brokers in the cluster's metadata (those alive)."""

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def replication_warning(self) -> str | None:
        """One line naming the under-replicated topics, their replication factor, the
        catalog's and the broker count; None when there are none."""
        if not self.under_replicated:
            return None
        topics = ", ".join(f"{name} (RF {rf})" for name, rf in self.under_replicated.items())
        return (
            f"{len(self.under_replicated)} topic(s) have fewer replicas than the cluster should "
            f"hold ({wanted_replication(self.replication_factor, self.brokers)}: "
            f"TURNSTREAM_REPLICATION_FACTOR={self.replication_factor}, {self.brokers} "
            f"broker(s)): {topics}; one broker lost loses their partitions, and existing topics "
            "are not altered (raise it with kafka-reassign-partitions)"
        )


TOPIC_ALREADY_EXISTS = 36


class TopicAdminError(RuntimeError):
    """The cluster refused to create a topic (bad config, too few brokers, ...)."""


def _raise_on_errors(topic_errors: list[tuple[object, ...]]) -> set[str]:
    """Raise on refusals; return the topics that turned out to exist already.

    A topic created moments ago may not be in the metadata yet, so `list_topics` misses it
    and the create answers "already exists": such a topic is compared, not counted as created.
    """
    refused = [
        f"{err[0]}: error {err[1]} {err[2] if len(err) > 2 else ''}".rstrip()
        for err in topic_errors
        if err[1] not in (0, TOPIC_ALREADY_EXISTS)
    ]
    if refused:
        raise TopicAdminError("could not create topics:\n  " + "\n  ".join(refused))
    return {str(err[0]) for err in topic_errors if err[1] == TOPIC_ALREADY_EXISTS}


def _replication(described: list[dict[str, Any]]) -> dict[str, int]:
    """Each described topic's replication factor: the fewest replicas of its partitions."""
    factors: dict[str, int] = {}
    for topic in described:
        partitions = topic.get("partitions")
        if isinstance(partitions, list) and partitions and topic.get("error_code", 0) == 0:
            factors[str(topic["topic"])] = min(len(p["replicas"]) for p in partitions)
    return factors


def _ready_partitions(described: list[dict[str, Any]]) -> dict[str, int]:
    """Partition counts of the topics whose every partition has a leader: until then clients
    of a new topic log NotLeaderForPartition errors while they retry."""
    counts: dict[str, int] = {}
    for topic in described:
        partitions = topic.get("partitions")
        if (
            isinstance(partitions, list)
            and topic.get("error_code", 0) == 0
            and all(partition["leader"] >= 0 for partition in partitions)
        ):
            counts[str(topic["topic"])] = len(partitions)
    return counts


async def wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """Partition counts of the topics; a topic created an instant ago may take a moment to
    appear in the metadata and get leaders, so ask again until all are ready or time runs out."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        counts = _ready_partitions(await admin.describe_topics(names)) if names else {}
        if len(counts) == len(names) or asyncio.get_running_loop().time() > deadline:
            return counts
        await asyncio.sleep(0.1)


async def _describe_configs(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for _err, _msg, _rtype, rname, entries in response.resources:
            configs[rname] = {entry[0]: entry[1] for entry in entries}
    return configs


def _mismatches(
    spec: TopicSpec, name: str, settings: Settings, partitions: int, config: dict[str, str]
) -> list[str]:
    found: list[str] = []
    want_partitions = spec.partition_count(settings.partitions)
    if partitions != want_partitions:
        found.append(f"{name}: {partitions} partitions, catalog says {want_partitions}")
    for key, want in spec.config().items():
        have = config.get(key)
        if have != want:
            found.append(f"{name}: {key}={have}, catalog says {want}")
    return found


async def ensure_topics(settings: Settings) -> TopicReport:
    """Create missing catalog topics; never alter existing ones, only report differences."""
    report = TopicReport()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = {spec.name(settings.topic_prefix): spec for spec in ALL_TOPICS}
        missing = [name for name in wanted if name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=name,
                        num_partitions=wanted[name].partition_count(settings.partitions),
                        replication_factor=settings.replication_factor,
                        topic_configs=wanted[name].config(),
                    )
                    for name in missing
                ]
            )
            existing |= _raise_on_errors(response.topic_errors)
            report.created.extend(name for name in missing if name not in existing)
        partitions = await wait_for_leaders(admin, list(wanted))
        # A leader in the metadata may not serve yet (a new topic, a broker that just
        # restarted): clients started now would log each retry at ERROR.
        await wait_until_serving(settings.bootstrap_servers, list(wanted))
        present = [name for name in wanted if name in existing]
        configs = await _describe_configs(admin, present)
        for name in present:
            diffs = _mismatches(
                wanted[name], name, settings, partitions.get(name, -1), configs.get(name, {})
            )
            report.mismatches.extend(diffs)
            if not diffs:
                report.unchanged.append(name)
        report.replication_factor = settings.replication_factor
        report.brokers = len((await admin.describe_cluster())["brokers"])
        report.under_replicated = under_replicated(
            _replication(await admin.describe_topics(list(wanted))),
            settings.replication_factor,
            report.brokers,
        )
    finally:
        await admin.close()
    return report
