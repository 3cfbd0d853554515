"""External services through the same code paths: only TURNSTREAM_* variables change.

With ``TURNSTREAM_KAFKA_BOOTSTRAP``, ``TURNSTREAM_QDRANT_URL``, ``TURNSTREAM_CLICKHOUSE_URL``
and ``TURNSTREAM_LLM_BASE_URL`` set, the factories the worker uses pick the server clients:

- Kafka: every client factory (aiokafka kwargs, the admin, each role's Faust app) gets the
  cluster's bootstrap list; against the session's real broker, the compose ``init`` commands
  (``topics create``, ``pack load``) run with the compose environment, and ``kafka status``
  probes the external cluster instead of the local broker;
- Qdrant: ``VectorStore.from_settings`` gives a remote client with the shared layout and opens
  no local data dir; with nothing listening, a call fails with the client's connection error;
- ClickHouse: ``open_client`` asks clickhouse-connect for an HTTP client on the URL (never
  ``interface="chdb"``); with nothing listening, ``AnalyticsStore.open`` fails at once with an
  error that names the address and not the password;
- LLM: the runtime's LLM factory builds the ``openai`` client on the base URL, and a call
  reaches a real (scripted) OpenAI-compatible server there.

Not checked here for want of servers: Qdrant's and ClickHouse's own answers (collections,
payload indexes, migrations on a server), and a multi-broker cluster.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import numpy as np
import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from faust.transport.drivers.aiokafka import server_list
from qdrant_client.http.exceptions import ResponseHandlingException

from processors.llm import strict_object
from processors.retrieval.model import Scope
from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalType
from sinks.analytics.store import AnalyticsStore, location, open_client
from sinks.llm_openai import OpenAiLlm
from sinks.vector_store import VectorStore
from streams.cli import main
from streams.kafka_clients import consumer_kwargs, producer_kwargs
from streams.pipeline.runtime import LLM_PHASES, _llm_tasks
from streams.pipeline.topology import build_app
from streams.roles import Role
from streams.settings import ENV_PREFIX, Settings, load_settings
from tests.fake_openai import MODEL, fake_openai_server
from tests.test_compose import environment, load_compose

CLUSTER = "kafka-1:19092,kafka-2:19092,kafka-3:19092"
SECRET = "s3cret-pw"

# qdrant-client checks the server version in a thread; with no server it warns, later.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")


def closed_port() -> int:
    """A loopback port with nothing listening (just released by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """A clean TURNSTREAM_* environment with its data dir in tmp_path."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TURNSTREAM_DATA_DIR", str(tmp_path))
    yield monkeypatch


# --- Kafka -------------------------------------------------------------------------------


def test_bootstrap_reaches_every_kafka_client_factory(env: pytest.MonkeyPatch) -> None:
    env.setenv("TURNSTREAM_KAFKA_BOOTSTRAP", CLUSTER)
    settings = load_settings()
    assert settings.bootstrap_servers == CLUSTER
    assert producer_kwargs(settings)["bootstrap_servers"] == CLUSTER
    assert consumer_kwargs(settings)["bootstrap_servers"] == CLUSTER


async def test_every_roles_faust_app_connects_to_the_cluster(env: pytest.MonkeyPatch) -> None:
    env.setenv("TURNSTREAM_KAFKA_BOOTSTRAP", CLUSTER)
    settings = load_settings()
    for role in Role:
        if role in (Role.ANALYTICS, Role.WEBHOOKS):
            continue  # plain aiokafka consumers: producer/consumer kwargs above
        app = build_app(settings, role)
        assert server_list(app.conf.broker, 9092) == CLUSTER.split(","), role


def test_kafka_status_probes_the_external_cluster(env: pytest.MonkeyPatch) -> None:
    env.setenv("TURNSTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{closed_port()}")
    assert main(["kafka", "status"]) == 3  # probed, does not answer; no local broker asked


@pytest.mark.integration
async def test_compose_init_commands_run_on_an_external_cluster(
    env: pytest.MonkeyPatch, kafka_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The init service's two commands with the compose environment, the cluster swapped for
    the session's broker (one node: replication 1, one partition to spare it)."""
    for key, value in environment(load_compose()["services"]["init"]).items():
        if key.startswith(ENV_PREFIX) and value is not None:
            env.setenv(key, value)
    env.setenv("TURNSTREAM_KAFKA_BOOTSTRAP", kafka_settings.bootstrap_servers)
    env.setenv("TURNSTREAM_TOPIC_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    env.setenv("TURNSTREAM_PARTITIONS", "1")
    env.setenv("TURNSTREAM_REPLICATION_FACTOR", "1")
    env.setenv("TURNSTREAM_KAFKA_PORT", str(closed_port()))  # the local broker is not used
    env.setenv("TURNSTREAM_PACKS_DIR", "packs")

    assert await asyncio.to_thread(main, ["kafka", "status"]) == 0
    assert await asyncio.to_thread(main, ["topics", "create"]) == 0
    assert await asyncio.to_thread(main, ["pack", "load", "packs/acme-shop/support"]) == 0
    out = capsys.readouterr().out
    assert "answers" in out and "0 mismatches" in out
    assert "version 1 published" in out


# --- Qdrant --------------------------------------------------------------------------------

RULES = Scope("acme-shop", "support", RetrievalType.RULES)
MEMORIES = Scope("acme-shop", "support", RetrievalType.MEMORIES, customer_id="c-1")


def test_qdrant_url_gives_a_server_store_with_the_shared_layout(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("TURNSTREAM_QDRANT_URL", f"http://127.0.0.1:{closed_port()}")
    store = VectorStore.from_settings(load_settings(), dim=4)
    try:
        # shared: one collection per type, tenants told apart by indexed payload filters
        assert store.collection(RULES) == "ts__rules"
        assert store.collection(MEMORIES) == "ts__memories"
        with pytest.raises(ResponseHandlingException):
            store.search(RULES, np.ones(4, dtype=np.float32), 3)
    finally:
        store.close()
    assert not (tmp_path / "qdrant").exists(), "no local data dir opened"


def test_without_a_url_the_store_is_local_per_scope(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = VectorStore.from_settings(load_settings(), dim=4)
    try:
        assert store.collection(RULES) == "ts__acme-shop__support__rules"
        assert store.collection(MEMORIES).startswith("ts__acme-shop__support__memories__b")
        assert store.search(RULES, np.ones(4, dtype=np.float32), 3) == []
    finally:
        store.close()
    assert (tmp_path / "qdrant").is_dir()


# --- ClickHouse ----------------------------------------------------------------------------


def test_clickhouse_url_asks_for_the_http_client(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    def get_client(**kwargs: Any) -> object:
        calls.append(kwargs)
        return object()

    env.setattr(clickhouse_connect, "get_client", get_client)
    url = f"http://turnstream:{SECRET}@clickhouse:8123"
    env.setenv("TURNSTREAM_CLICKHOUSE_URL", url)
    open_client(load_settings())
    assert calls == [{"dsn": url}]
    assert not (tmp_path / "clickhouse").exists(), "no embedded data dir"

    env.delenv("TURNSTREAM_CLICKHOUSE_URL")
    open_client(load_settings())
    assert calls[-1]["interface"] == "chdb"
    assert calls[-1]["path"] == str(tmp_path / "clickhouse")


def test_clickhouse_server_down_is_a_clear_error(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = closed_port()
    env.setenv("TURNSTREAM_CLICKHOUSE_URL", f"http://turnstream:{SECRET}@127.0.0.1:{port}")
    settings = load_settings()
    with pytest.raises(OperationalError) as info:
        AnalyticsStore.open(settings)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "Connection refused" in message
    assert SECRET not in message
    assert location(settings) == f"http://127.0.0.1:{port}/"
    assert not (tmp_path / "clickhouse").exists()


# --- LLM -----------------------------------------------------------------------------------


async def test_llm_base_url_sends_the_llm_phases_to_that_endpoint(
    env: pytest.MonkeyPatch,
) -> None:
    assert _llm_tasks(load_settings()) == {}
    env.setenv("TURNSTREAM_LLM_BASE_URL", "")  # the compose default: off
    assert _llm_tasks(load_settings()) == {}

    with fake_openai_server() as fake:
        fake.always("probe", {"ok": True})
        env.setenv("TURNSTREAM_LLM_BASE_URL", fake.url)
        env.setenv("TURNSTREAM_LLM_API_KEY", "sk-test")
        env.setenv("TURNSTREAM_PHASES__GENERATION__MODE", "llm")
        env.setenv("TURNSTREAM_PHASES__GENERATION__MODEL", MODEL)
        tasks = _llm_tasks(load_settings())
        assert set(tasks) == set(LLM_PHASES)
        llm = tasks[Phase.GENERATION]
        assert isinstance(llm, OpenAiLlm)
        try:
            result = await llm.complete_json(
                phase=Phase.GENERATION,
                system="s",
                user="u",
                schema_name="probe",
                schema=strict_object(ok={"type": "boolean"}),
            )
        finally:
            await llm.close()
        assert result.data == {"ok": True}
        (request,) = fake.requests_for("probe")
        assert request["model"] == MODEL
