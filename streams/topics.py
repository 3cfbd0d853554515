"""The topic catalog: the only place that spells a topic name.

Every per-turn topic is keyed by the *session key* ``tenant:channel:channel_id`` (see
:func:`session_key`). The channel identity is what a producer knows before P1 resolves the
customer, and one channel identity maps to one customer of one tenant, so a turn, its session
state, its customer's data and its P4 join buffer all land on the same partition and are
processed by one worker, in order. A customer who writes through two channels has two keys:
their customer data is then shared through the CustomerDataStore table's changelog rather
than co-partitioned; linking identities across channels is out of scope for now.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.domain.retrieval import RetrievalType
from streams.roles import PIPELINE_ROLES, Role, app_suffix

DAY_MS = 24 * 60 * 60 * 1000


class Cleanup(StrEnum):
    DELETE = "delete"
    COMPACT = "compact"
    COMPACT_DELETE = "compact,delete"
    """Compacted, and segments older than ``retention.ms`` deleted: state that expires."""


class KeyKind(StrEnum):
    """What a topic's record key holds."""

    SESSION = "session key tenant:channel:channel_id"
    SESSION_TURN = "session key and turn id: tenant:channel:channel_id turn_id"
    TENANT_AGENT = "tenant:agent"
    DELIVERY = "webhook delivery id"
    NONE = "none (round-robin)"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name suffix, what its records carry, and how long Kafka keeps them."""

    suffix: str
    key: KeyKind
    value_schema: str
    doc: str
    cleanup: Cleanup = Cleanup.DELETE
    retention_ms: int | None = 7 * DAY_MS
    partitions: int | None = None  # None: the cluster-wide setting (Settings.partitions)
    faust_internal: bool = False  # records written by Faust itself, not by our codec

    def name(self, prefix: str) -> str:
        return f"{prefix}.{self.suffix}"

    def partition_count(self, default: int) -> int:
        return self.partitions if self.partitions is not None else default

    def config(self) -> dict[str, str]:
        """Topic-level configs that `topics create` sets and checks."""
        cfg = {"cleanup.policy": self.cleanup.value}
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        return cfg


TURN_REQUESTED = TopicSpec(
    "turn.requested",
    KeyKind.SESSION,
    "turnstream.TurnRequested",
    "Ingress: producers publish one customer message per record.",
)
TURN_CONTEXT = TopicSpec(
    "turn.context",
    KeyKind.SESSION,
    "turnstream.TurnEnvelope",
    "After P1-P3 (identification, sensor, customer data): input of P4.1 embedding.",
)
RETRIEVAL_REQUESTED = {
    rtype: TopicSpec(
        f"retrieval.{rtype.value}.requested",
        KeyKind.SESSION,
        "turnstream.RetrievalRequested",
        f"P4 fan-out: one request per turn for the {rtype.value} retrieval consumers.",
        retention_ms=DAY_MS,
    )
    for rtype in RetrievalType
}
RETRIEVAL_RESULTS = TopicSpec(
    "retrieval.results",
    KeyKind.SESSION,
    "turnstream.RetrievalResult",
    "P4 fan-in: results of every retrieval type, joined on turn id.",
    retention_ms=DAY_MS,
)
TURN_RETRIEVED = TopicSpec(
    "turn.retrieved",
    KeyKind.SESSION,
    "turnstream.TurnEnvelope",
    "After the P4 join: input of P5 rules, P6 scenarios, P7 tools, P8 planning.",
)
TURN_PLANNED = TopicSpec(
    "turn.planned",
    KeyKind.SESSION,
    "turnstream.TurnEnvelope",
    "After P8 (response plan) and on P10 remediation: input of P9 generation.",
)
TURN_GENERATED = TopicSpec(
    "turn.generated",
    KeyKind.SESSION,
    "turnstream.TurnEnvelope",
    "After P9 generation: input of P10 enforcement (which may loop back to turn.planned).",
)
TURN_RESPONSES = TopicSpec(
    "turn.responses",
    KeyKind.SESSION,
    "turnstream.TurnResponse",
    "Egress: one response per turn (or an error response), written before persistence.",
)
TURN_COMPLETED = TopicSpec(
    "turn.completed",
    KeyKind.SESSION,
    "turnstream.CompletedTurn",
    "The full TurnRecord of an answered turn: input of the P11 sinks and analytics.",
    retention_ms=30 * DAY_MS,
)
ANALYTICS_EVENTS = TopicSpec(
    "analytics.events",
    KeyKind.SESSION,
    "turnstream.AnalyticsEvent",
    "Fine-grained analytics events for the ClickHouse consumers.",
)
WEBHOOK_DELIVERIES = TopicSpec(
    "webhooks.deliveries",
    KeyKind.DELIVERY,
    "turnstream.WebhookDelivery",
    "Every webhook delivery attempt, for the ClickHouse delivery log.",
)
WEBHOOK_DEAD_LETTER = TopicSpec(
    "webhooks.dead-letter",
    KeyKind.DELIVERY,
    "turnstream.WebhookDelivery",
    "Deliveries that exhausted their retries.",
    retention_ms=30 * DAY_MS,
)
DEAD_LETTER = TopicSpec(
    "dead-letter",
    KeyKind.NONE,
    "turnstream.DeadLetter",
    "Malformed or invalid records with the reason they were rejected.",
    retention_ms=30 * DAY_MS,
)
CONFIG_PACKS = TopicSpec(
    "config.packs",
    KeyKind.TENANT_AGENT,
    "turnstream.PackPublished",
    "Agent packs, newest version per tenant:agent; every worker reads it whole.",
    cleanup=Cleanup.COMPACT,
    retention_ms=None,
    partitions=1,
)
SESSION_STATE_CHANGELOG = TopicSpec(
    "table.session-state.changelog",
    KeyKind.SESSION,
    "turnstream.SessionState",
    "Changelog of the SessionState table (restored on worker start).",
    cleanup=Cleanup.COMPACT,
    retention_ms=None,
)
CUSTOMER_DATA_CHANGELOG = TopicSpec(
    "table.customer-data.changelog",
    KeyKind.SESSION,
    "turnstream.CustomerDataStore",
    "Changelog of the CustomerDataStore table (restored on worker start).",
    cleanup=Cleanup.COMPACT,
    retention_ms=None,
)
SESSION_GATE_CHANGELOG = TopicSpec(
    "table.session-gate.changelog",
    KeyKind.SESSION,
    "turnstream.SessionGate",
    "Changelog of the session gate table: customer, open sessions, turn in flight, waiting.",
    cleanup=Cleanup.COMPACT,
    retention_ms=None,
)
TURNS_SEEN_CHANGELOG = TopicSpec(
    "table.turns-seen.changelog",
    KeyKind.SESSION_TURN,
    "turnstream.SeenTurn",
    "Changelog of the seen-turns table: the turn ids each session answered, so a request"
    " read again within the request topic's retention is dropped (exactly once).",
    cleanup=Cleanup.COMPACT_DELETE,
    retention_ms=TURN_REQUESTED.retention_ms,
)
RETRIEVAL_JOIN_CHANGELOG = TopicSpec(
    "table.retrieval-join.changelog",
    KeyKind.SESSION,
    "turnstream.RetrievalJoin",
    "Changelog of the P4 join table: a turn's context and the retrieval results so far.",
    cleanup=Cleanup.COMPACT,
    retention_ms=None,
)
FAUST_ASSIGNOR_LEADERS = {
    role: TopicSpec(
        f"{app_suffix(role)}-__assignor-__leader",
        KeyKind.NONE,
        "faust.assignor",
        f"Faust's partition assignor of the {role.value} role elects its leader here.",
        retention_ms=None,
        partitions=1,
        faust_internal=True,
    )
    for role in (Role.ALL, *sorted(PIPELINE_ROLES))
}
"""One per Faust app: each pipeline role is its own app (``streams.roles``)."""

ALL_TOPICS: tuple[TopicSpec, ...] = (
    TURN_REQUESTED,
    TURN_CONTEXT,
    *RETRIEVAL_REQUESTED.values(),
    RETRIEVAL_RESULTS,
    TURN_RETRIEVED,
    TURN_PLANNED,
    TURN_GENERATED,
    TURN_RESPONSES,
    TURN_COMPLETED,
    ANALYTICS_EVENTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_DEAD_LETTER,
    DEAD_LETTER,
    CONFIG_PACKS,
    SESSION_STATE_CHANGELOG,
    CUSTOMER_DATA_CHANGELOG,
    SESSION_GATE_CHANGELOG,
    TURNS_SEEN_CHANGELOG,
    RETRIEVAL_JOIN_CHANGELOG,
    *FAUST_ASSIGNOR_LEADERS.values(),
)


@dataclass(frozen=True)
class GroupSpec:
    """One consumer group of ours: ``<prefix>.<suffix>``."""

    suffix: str
    doc: str

    def name(self, prefix: str) -> str:
        return f"{prefix}.{self.suffix}"


ANALYTICS_GROUP = GroupSpec("analytics", "ClickHouse analytics (TURNSTREAM_ANALYTICS__GROUP_ID)")
WEBHOOKS_GROUP = GroupSpec("webhooks", "Webhook deliveries (TURNSTREAM_WEBHOOKS__GROUP_ID)")
MEMORY_GROUP = GroupSpec("memory-ingestion", "Memory ingestion into the vector store")


def pipeline_group(prefix: str, role: Role = Role.ALL) -> str:
    """The consumer group of a role's Faust app: its app id (``streams.roles``)."""
    return f"{prefix}.{app_suffix(role)}"


def session_key(tenant_id: str, channel: str, channel_id: str) -> bytes:
    """The record key of every per-turn topic (see the module docstring); the same text as
    :attr:`schemas.domain.turn_input.TurnInput.session_key`."""
    return f"{tenant_id}:{channel}:{channel_id}".encode()


def seen_turn_key(session: bytes, turn_id: str) -> bytes:
    """The seen-turns table's key: ids have no whitespace, so the space cannot be forged."""
    return session + b" " + turn_id.encode()


def tenant_agent_key(tenant_id: str, agent_id: str) -> bytes:
    return f"{tenant_id}:{agent_id}".encode()
