"""The Faust app of the pipeline: its topics (from the catalog) and changelogged tables.

Every record is bytes in and bytes out (``raw`` serializers): the Avro codec of
``schemas.codec`` is the one serialization, so a record written here reads the same in any
consumer. Topics are created by ``turnstream topics create`` (the worker runs it at start);
Faust is told not to declare any, so the catalog stays the only place that shapes them.
Tables use catalog topics as their changelogs, and the response table's changelog *is* the
response topic: recording that a turn was answered and answering it are one record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
from faust.types import TableT

from schemas.domain.retrieval import RetrievalType
from streams.pipeline.faust_fetch import fix_idle_partition_fetches
from streams.pipeline.faust_fixes import fix_offset_commits
from streams.pipeline.faust_producer import use_idempotent_producer
from streams.pipeline.rocks_memory import BUDGET_KEY
from streams.pipeline.stores import store_url
from streams.roles import Role, app_suffix, runs
from streams.settings import Settings
from streams.topics import (
    CUSTOMER_DATA_CHANGELOG,
    DEAD_LETTER,
    RETRIEVAL_JOIN_CHANGELOG,
    RETRIEVAL_REQUESTED,
    RETRIEVAL_RESULTS,
    SESSION_GATE_CHANGELOG,
    SESSION_STATE_CHANGELOG,
    TURN_COMPLETED,
    TURN_CONTEXT,
    TURN_GENERATED,
    TURN_PLANNED,
    TURN_REQUESTED,
    TURN_RESPONSES,
    TURN_RETRIEVED,
    TURNS_SEEN_CHANGELOG,
    TopicSpec,
)

RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
COMMIT_INTERVAL = timedelta(seconds=1)
"""Offsets are committed this often; a crash replays at most this much (effects are
idempotent by turn id, so a replay costs time, not correctness)."""


STORES = {"rocksdb": "rocksdb://", "memory": "memory://"}
ROCKSDB_OPTIONS: dict[str, Any] = {
    "driver": "rocksdict",
    "write_buffer_size": 1024**2,
    "max_write_buffer_number": 2,
}
"""Per table partition (a worker opens one RocksDB per table and partition, 6 x 12 by
default): Faust's default memtables (3 x 64 MiB each) would let a worker's memory grow by
gigabytes. The block cache and the memtables' total are one budget for the process
(``table_store_memory_mb``, :mod:`streams.pipeline.rocks_memory`); each database keeps at
least one memtable in use whatever the budget (~0.5 MiB, ~36 MiB for 72). Each table gets
its own copy: Faust's store pops keys out of the dict it is given."""


def rocksdb_options(settings: Settings) -> dict[str, Any]:
    return ROCKSDB_OPTIONS | {BUDGET_KEY: settings.table_store_memory_mb * 2**20}


SESSION_TIMEOUT_S = 10.0
"""How long the group waits for a worker that stopped answering before its partitions move
to the others: the recovery time after a crash is about this plus the table recovery."""


def build_app(settings: Settings, role: Role) -> faust.App:
    """The role's Faust app, with this project's Faust fixes installed and an idempotent
    producer; created inside the running event loop (Faust binds to it)."""
    fix_offset_commits()
    fix_idle_partition_fetches()
    app_id = f"{settings.topic_prefix}.{app_suffix(role)}"
    datadir = settings.data_dir / "faust" / app_id  # RocksDB: this app's tables only
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates no missing parent
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store=STORES[settings.table_store],
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,
        web_enabled=False,
        datadir=str(datadir),
        producer_linger=0.0,
        producer_acks=-1,
        producer_max_request_size=settings.producer_max_request_size,
        broker_commit_interval=COMMIT_INTERVAL,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        table_standby_replicas=0,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=SESSION_TIMEOUT_S / 4,
    )
    use_idempotent_producer(app)
    return app


@dataclass(frozen=True)
class Topology:
    """The app with every topic and table the agents use."""

    app: faust.App
    settings: Settings
    requested: faust.TopicT
    context: faust.TopicT
    retrieval_requested: dict[RetrievalType, faust.TopicT]
    retrieval_results: faust.TopicT
    retrieved: faust.TopicT
    planned: faust.TopicT
    generated: faust.TopicT
    completed: faust.TopicT
    dead_letter: faust.TopicT
    role: Role
    gates: TableT[bytes, bytes] | None
    sessions: TableT[bytes, bytes] | None
    customers: TableT[bytes, bytes] | None
    joins: TableT[bytes, bytes] | None
    responses: TableT[bytes, bytes] | None
    seen: TableT[bytes, bytes] | None

    def name(self, spec: TopicSpec) -> str:
        return spec.name(self.settings.topic_prefix)


def build_topology(settings: Settings, role: Role = Role.ALL) -> Topology:
    """The app with the tables the role writes (``streams.roles``)."""
    app = build_app(settings, role)
    context = runs(role, Role.CONTEXT)

    def topic(spec: TopicSpec) -> faust.TopicT:
        return app.topic(
            spec.name(settings.topic_prefix),
            partitions=spec.partition_count(settings.partitions),
            **RAW,
        )

    def table(
        name: str, changelog: TopicSpec, wanted: bool, *, roaming: bool = False
    ) -> TableT[bytes, bytes] | None:
        """``roaming``: keyed by something other than the record key, so written from any
        partition (``streams.pipeline.stores``)."""
        if not wanted:
            return None
        return app.Table(
            name,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            changelog_topic=topic(changelog),
            store=store_url(settings.table_store, name, roaming=roaming),
            options=rocksdb_options(settings) if settings.table_store == "rocksdb" else None,
        )

    return Topology(
        app=app,
        settings=settings,
        requested=topic(TURN_REQUESTED),
        context=topic(TURN_CONTEXT),
        retrieval_requested={rtype: topic(spec) for rtype, spec in RETRIEVAL_REQUESTED.items()},
        retrieval_results=topic(RETRIEVAL_RESULTS),
        retrieved=topic(TURN_RETRIEVED),
        planned=topic(TURN_PLANNED),
        generated=topic(TURN_GENERATED),
        completed=topic(TURN_COMPLETED),
        dead_letter=topic(DEAD_LETTER),
        role=role,
        gates=table("session-gate", SESSION_GATE_CHANGELOG, context),
        sessions=table("session-state", SESSION_STATE_CHANGELOG, context, roaming=True),
        customers=table("customer-data", CUSTOMER_DATA_CHANGELOG, context, roaming=True),
        joins=table("retrieval-join", RETRIEVAL_JOIN_CHANGELOG, runs(role, Role.DECIDE)),
        responses=table("responses", TURN_RESPONSES, context),
        seen=table("turns-seen", TURNS_SEEN_CHANGELOG, context),
    )


def required(table: TableT[bytes, bytes] | None, name: str) -> TableT[bytes, bytes]:
    """A table the calling agent needs; only roles that run the agent declare it."""
    if table is None:
        raise RuntimeError(f"the {name} table is not declared in this role")
    return table
