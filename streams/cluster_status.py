"""What ``turnstream status`` shows: the cluster's brokers, the catalog's topics with their
partition counts, the consumer groups of this topic prefix with their state, members and
lag per topic, and the pack version of each agent that workers load.

Everything is read from Kafka, as an operator's tool must: the groups and their committed
offsets from the group coordinator, the packs from the compacted config topic through the
same :class:`~streams.pack_registry.PackRegistry` a worker uses (so a record a worker would
skip is skipped here too). A cluster that does not answer raises aiokafka's
``KafkaConnectionError``, which the CLI turns into one line with a hint.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from streams.consumer_lag import LagReader
from streams.pack_registry import ConfigTopicMissingError, PackRegistry
from streams.settings import Settings
from streams.topics import ALL_TOPICS


@dataclass(frozen=True)
class GroupStatus:
    group: str
    state: str
    members: int
    lag_by_topic: dict[str, int]


@dataclass
class ClusterStatus:
    bootstrap: str
    cluster_id: str
    controller: int
    brokers: list[str] = field(default_factory=list)
    topics: dict[str, int] = field(default_factory=dict)
    """Partitions of each catalog topic that exists."""
    missing_topics: list[str] = field(default_factory=list)
    groups: list[GroupStatus] = field(default_factory=list)
    packs: list[tuple[str, int, str]] = field(default_factory=list)
    """(tenant/agent, version, content hash) of each active pack."""
    packs_note: str | None = None


def _describe(response: Any) -> list[dict[str, Any]]:
    """The groups of a DescribeGroups response as dicts (field names of its schema)."""
    found: list[dict[str, Any]] = response.to_object()["groups"]
    return found


async def gather(settings: Settings) -> ClusterStatus:
    prefix = settings.topic_prefix
    reader = LagReader(settings)
    await reader.start()
    try:
        admin = reader.admin
        cluster = await admin.describe_cluster()
        status = ClusterStatus(
            bootstrap=settings.bootstrap_servers,
            cluster_id=str(cluster.get("cluster_id")),
            controller=int(cluster.get("controller_id", -1)),
            brokers=[f"{b['node_id']}  {b['host']}:{b['port']}" for b in cluster["brokers"]],
        )
        existing = set(await admin.list_topics())
        wanted = [spec.name(prefix) for spec in ALL_TOPICS]
        present = [name for name in wanted if name in existing]
        status.missing_topics = [name for name in wanted if name not in existing]
        counts = {
            str(topic["topic"]): len(topic.get("partitions") or [])
            for topic in (await admin.describe_topics(present) if present else [])
        }
        status.topics = {name: counts[name] for name in present if name in counts}
        listed = await admin.list_consumer_groups()
        names = sorted(str(g[0]) for g in listed if str(g[0]).startswith(f"{prefix}."))
        described: dict[str, dict[str, Any]] = {}
        for name in names:  # one per request: aiokafka 0.14 misreads a reply with several
            for response in await admin.describe_consumer_groups([name]):
                for group in _describe(response):
                    described[str(group["group"])] = group
        for name in names:
            info = described.get(name, {})
            by_topic: dict[str, int] = defaultdict(int)
            for tp, lag in (await reader.lag(name)).items():
                by_topic[tp.topic] += lag
            status.groups.append(
                GroupStatus(
                    group=name,
                    state=str(info.get("state", "?")),
                    members=len(info.get("members") or []),
                    lag_by_topic=dict(sorted(by_topic.items())),
                )
            )
    finally:
        await reader.stop()
    await _packs(settings, status)
    return status


async def _packs(settings: Settings, status: ClusterStatus) -> None:
    registry = PackRegistry(settings)
    try:
        await registry.start()
    except ConfigTopicMissingError as exc:
        status.packs_note = str(exc)
        return
    try:
        status.packs = sorted(
            (f"{s.tenant}/{s.agent}", s.version, s.content_hash[:12]) for s in registry.snapshots()
        )
    finally:
        await registry.stop()


def render(status: ClusterStatus) -> str:
    """The report as aligned plain-text tables."""
    lines = [
        f"cluster {status.cluster_id} at {status.bootstrap} (controller {status.controller})",
        "",
        "BROKER",
        *(f"  {b}" for b in status.brokers),
        "",
    ]
    width = max((len(n) for n in [*status.topics, *status.missing_topics]), default=20)
    lines.append(f"{'TOPIC':<{width + 2}} PARTITIONS")
    for name, partitions in status.topics.items():
        lines.append(f"  {name:<{width}} {partitions:>10}")
    for name in status.missing_topics:
        lines.append(f"  {name:<{width}} {'MISSING':>10} (run `turnstream topics create`)")
    lines += ["", f"{'GROUP':<34} {'STATE':<12} {'MEMBERS':>7}  {'LAG':>6}  TOPIC"]
    for group in status.groups:
        head = f"  {group.group:<32} {group.state:<12} {group.members:>7}"
        if not group.lag_by_topic:
            lines.append(f"{head}  {'-':>6}  (no committed offsets)")
        for i, (topic, lag) in enumerate(group.lag_by_topic.items()):
            lines.append(f"{head if i == 0 else ' ' * len(head)}  {lag:>6}  {topic}")
    if not status.groups:
        lines.append("  (no consumer groups of this prefix: is a worker running?)")
    lines += ["", f"{'PACK':<34} {'VERSION':>7}  HASH"]
    for agent, version, digest in status.packs:
        lines.append(f"  {agent:<32} {'v' + str(version):>7}  {digest}")
    if status.packs_note:
        lines.append(f"  {status.packs_note}")
    elif not status.packs:
        lines.append("  (no pack loaded: `turnstream pack load DIR`)")
    return "\n".join(lines)
