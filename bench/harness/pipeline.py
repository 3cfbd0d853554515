"""A private pipeline for a bench: a broker on free loopback ports in a temporary directory
(or an existing cluster), a fresh topic prefix, the example pack published, and readiness
as the consumer groups of the topic catalog (``streams.topics``) holding every worker.

The hops of a turn's response path come from the catalog too (:data:`RESPONSE_PATH`): each
is a topic a record crosses between two stages, from the request to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.domain.retrieval import RetrievalType
from sinks.pack_files import load_pack
from streams.analytics_consumer import group_id as analytics_group
from streams.local_kafka import LocalKafka, private_broker_settings
from streams.pack_publisher import publish_pack
from streams.settings import Settings, load_settings
from streams.topic_admin import ensure_topics
from streams.topics import (
    MEMORY_GROUP,
    RETRIEVAL_REQUESTED,
    RETRIEVAL_RESULTS,
    TURN_COMPLETED,
    TURN_GENERATED,
    TURN_PLANNED,
    TURN_REQUESTED,
    TURN_RESPONSES,
    TURN_RETRIEVED,
    TopicSpec,
    pipeline_group,
)
from streams.webhook_consumer import group_id as webhooks_group
from streams.worker_process import SET_BY_WORKER_ENV, WorkerProcess, wait_for_groups

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PACK = REPO / "packs" / "acme-shop" / "support"
TENANT, AGENT = "acme-shop", "support"

RESPONSE_PATH: tuple[TopicSpec, ...] = (
    TURN_REQUESTED,  # -> session (P1-P4.1)
    RETRIEVAL_REQUESTED[RetrievalType.RULES],  # -> retrieval; the four types in parallel: one hop
    RETRIEVAL_RESULTS,  # -> join
    TURN_RETRIEVED,  # -> decide (P5-P8)
    TURN_PLANNED,  # -> generate (P9)
    TURN_GENERATED,  # -> enforce (P10)
    TURN_COMPLETED,  # -> session (persistence, the response)
    TURN_RESPONSES,  # -> the client (the responses table's changelog)
)
"""The topics a turn's records cross on its way to the answer (streams/pipeline/wiring.py,
session_agent.py, stage_agents.py). ``turn.context`` -> join runs in parallel with the
retrieval hops and is not on the critical path; a P10 regeneration adds two more hops."""
HOPS = len(RESPONSE_PATH)


@contextlib.contextmanager
def quiet(logger: str) -> Iterator[None]:
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def passed_through() -> dict[str, str]:
    """The caller's ``TURNSTREAM_*`` variables that reach the workers."""
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith("TURNSTREAM_") and k not in SET_BY_WORKER_ENV
    }


@dataclass
class Cluster:
    """Where a bench runs: its temporary directory, the base settings, and the broker it
    started (None with an existing cluster)."""

    root: Path
    base: Settings
    broker: LocalKafka | None

    def broker_pid(self) -> int | None:
        return self.broker.status().pid if self.broker is not None else None


@contextlib.contextmanager
def bench_root(name: str, *, keep: bool = False) -> Iterator[Path]:
    """A fresh temporary directory for one bench run; at the end it goes, unless the run
    failed or ``keep`` (then its path is printed, for the worker logs and data in it)."""
    root = Path(tempfile.mkdtemp(prefix=f"turnstream-{name}-"))
    failed = True
    try:
        yield root
        failed = False
    finally:
        if failed or keep:
            print(f"worker logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def private_cluster(
    name: str, *, bootstrap: str | None = None, keep: bool = False
) -> AsyncIterator[Cluster]:
    """A temporary directory and a broker of our own in it (or ``bootstrap``); at the end the
    broker stops and the directory goes, unless the bench failed or ``keep``."""
    with bench_root(name, keep=keep) as root:
        broker = None
        if bootstrap:
            base = load_settings(kafka_bootstrap=bootstrap, data_dir=root)
        else:
            base = private_broker_settings(root)
            broker = LocalKafka(base)
            t0 = time.monotonic()
            await asyncio.to_thread(broker.up)
            print(f"local broker up on {base.bootstrap_servers} in {time.monotonic() - t0:.1f} s")
        try:
            yield Cluster(root, base, broker)
        finally:
            if broker is not None:
                await asyncio.to_thread(broker.down)


def pipeline_settings(
    base: Settings,
    tag: str,
    *,
    partitions: int | None = None,
    analytics: bool = True,
    data_dir: Path | None = None,
) -> Settings:
    """``base`` with a fresh topic prefix, the repository's packs, analytics on or off (no SQL
    endpoint), webhooks off."""
    update: dict[str, Any] = {
        "topic_prefix": f"{tag}{uuid.uuid4().hex[:10]}",
        "packs_dir": REPO / "packs",
        "analytics": base.analytics.model_copy(update={"enabled": analytics, "query_port": 0}),
        "webhooks": base.webhooks.model_copy(update={"enabled": False}),
    }
    if partitions is not None:
        update["partitions"] = partitions
    if data_dir is not None:
        update["data_dir"] = data_dir
    return base.model_copy(update=update)


async def prepare(settings: Settings, pack_dir: Path = EXAMPLE_PACK) -> None:
    """The prefix's topics, and the pack published."""
    with quiet("aiokafka.consumer.fetcher"):  # "not leader" while fresh topics settle
        await ensure_topics(settings)
        await publish_pack(settings, load_pack(pack_dir))


def ready_groups(settings: Settings) -> list[str]:
    """The consumer groups a ``role all`` worker joins with these settings (the catalog's
    names): the pipeline, memory ingestion, and analytics / webhooks when enabled."""
    prefix = settings.topic_prefix
    groups = [pipeline_group(prefix), MEMORY_GROUP.name(prefix)]
    if settings.analytics.enabled:
        groups.append(analytics_group(settings))
    if settings.webhooks.enabled:
        groups.append(webhooks_group(settings))
    return groups


async def wait_ready(settings: Settings, workers: Sequence[WorkerProcess]) -> None:
    """Until every worker is in each of its groups and the groups are stable."""
    await wait_for_groups(settings.bootstrap_servers, ready_groups(settings), len(workers), workers)
