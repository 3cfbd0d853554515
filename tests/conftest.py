"""Shared fixtures: a real Kafka broker for integration tests, started only when asked for.

With ``TURNSTREAM_KAFKA_BOOTSTRAP`` set, tests use that cluster. Otherwise the session starts
the embedded broker (streams/local_kafka.py, the same code as ``turnstream kafka up``) in a
pytest tmp dir on free ports, so it never collides with a developer's running broker; its
jars come from the normal user cache, so they are fetched once per machine. Unit-only runs
request no fixture here and start nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.local_kafka import (
    LocalCluster,
    LocalKafka,
    private_broker_settings,
    private_local_cluster,
)
from streams.settings import Settings, load_settings
from streams.topic_admin import wait_for_leaders

TOPIC_READY_TIMEOUT_S = 10.0

NewTopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def make_broker_settings() -> Callable[[Path], Settings]:
    """Settings for a private local broker in ``data_dir`` on free loopback ports."""

    return private_broker_settings


@pytest.fixture(scope="session")
def kafka_settings(
    tmp_path_factory: pytest.TempPathFactory,
    make_broker_settings: Callable[[Path], Settings],
) -> Iterator[Settings]:
    """The settings of the session's cluster: the external one, or a local broker we own."""
    if os.environ.get("TURNSTREAM_KAFKA_BOOTSTRAP"):
        yield load_settings()
        return
    settings = make_broker_settings(tmp_path_factory.mktemp("kafka"))
    broker = LocalKafka(settings)
    broker.up()
    try:
        yield settings
    finally:
        broker.down()


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A private 3-node KRaft cluster (each node broker and controller, RF 3,
    ``min.insync.replicas=2``) on free loopback ports, for the tests that kill its nodes:
    module-scoped (it takes ~25-40 s to start). Never an external cluster: with
    ``TURNSTREAM_KAFKA_BOOTSTRAP`` set the tests that need it are skipped."""
    if os.environ.get("TURNSTREAM_KAFKA_BOOTSTRAP"):
        pytest.skip("kills nodes of a local cluster of its own; TURNSTREAM_KAFKA_BOOTSTRAP is set")
    cluster = private_local_cluster(
        tmp_path_factory.mktemp("cluster"), nodes=3, kafka_start_timeout_s=180.0
    )  # a node SIGKILLed under load recovers its logs first: >60 s on a loaded 2-core box
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_settings: Settings) -> str:
    return kafka_settings.bootstrap_servers


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
    """CreateTopics returns before every broker knows the leaders; clients then log errors."""
    ready = await wait_for_leaders(admin, [topic], TOPIC_READY_TIMEOUT_S)
    if ready.get(topic) != partitions:
        raise TimeoutError(f"topic {topic} has no leaders after {TOPIC_READY_TIMEOUT_S} s")


@pytest.fixture
async def new_topic(kafka_bootstrap: str) -> AsyncIterator[NewTopicFactory]:
    """``await new_topic(partitions=1, **configs)`` creates a uniquely named topic, ready for
    clients; the topics are deleted after the test."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def make(partitions: int = 1, **configs: str) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or None)])
        created.append(name)
        await _wait_for_leaders(admin, name, partitions)
        return name

    try:
        yield make
    finally:
        if created:
            await admin.delete_topics(created)
        await admin.close()
