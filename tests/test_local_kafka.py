"""The embedded broker's lifecycle (streams/local_kafka.py) and `turnstream kafka`.

Each integration test runs its own broker (own data dir, free ports), apart from the session
broker; the jar fetch logic is tested with a fake `mvn`, without the network.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams import cli_kafka
from streams.kafka_clients import consumer_kwargs, producer_kwargs
from streams.local_kafka import LocalKafka, LocalKafkaError, broker_properties
from streams.settings import Settings

READY_BUDGET_S = 30.0  # functional requirement: `kafka up` with cached jars

MakeSettings = Callable[[Path], Settings]


def _processes_mentioning(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (a broker's data dir)."""
    out = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True, check=True)
    return [
        line
        for line in out.stdout.splitlines()
        if str(path) in line and not line.lstrip().startswith("Z") and "ps -eo" not in line
    ]


@pytest.fixture
def broker(make_broker_settings: MakeSettings, tmp_path: Path) -> Iterator[LocalKafka]:
    kafka = LocalKafka(make_broker_settings(tmp_path / "data"))
    kafka.fetch_jars()  # once per machine; not part of what the tests time
    yield kafka
    kafka.down()


@pytest.mark.integration
async def test_up_serves_produce_consume_and_group_commit_then_down_leaves_nothing(
    broker: LocalKafka,
) -> None:
    bootstrap = await asyncio.to_thread(broker.up)
    state = broker.status()
    assert state.running and state.pid is not None and state.bootstrap == bootstrap
    assert state.log_file.is_file()

    settings = broker.settings
    topic = "lifecycle"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"session-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        group_id="lifecycle-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **consumer_kwargs(settings),
    )
    await consumer.start()
    try:
        got = [(await asyncio.wait_for(consumer.getone(), 30)).value for _ in range(3)]
        await consumer.commit()
        committed = 0
        for tp in consumer.assignment():
            committed += await consumer.committed(tp) or 0
    finally:
        await consumer.stop()
    assert got == [b"m0", b"m1", b"m2"]
    assert committed == 3

    assert await asyncio.to_thread(broker.down) is True
    stopped = broker.status()
    assert not stopped.running and stopped.pid is None
    assert not broker.pid_file.exists()
    assert _processes_mentioning(broker.home) == []
    assert await asyncio.to_thread(broker.down) is False


@pytest.mark.integration
def test_up_twice_is_idempotent(broker: LocalKafka) -> None:
    first = broker.up()
    pid = broker.status().pid
    started = time.monotonic()
    assert broker.up() == first
    assert time.monotonic() - started < 5
    assert broker.status().pid == pid


@pytest.mark.integration
@pytest.mark.parametrize("stale", ["dead process", "live non-kafka process"])
def test_stale_pid_file_is_replaced_by_a_fresh_start(broker: LocalKafka, stale: str) -> None:
    if stale == "dead process":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        stale_pid = gone.pid
    else:
        stale_pid = os.getpid()  # alive, but not a Kafka broker
    broker.home.mkdir(parents=True, exist_ok=True)
    broker.pid_file.write_text(f"{stale_pid}\n")

    assert not broker.status().running
    broker.up()
    state = broker.status()
    assert state.running and state.pid != stale_pid
    assert broker.pid_file.read_text().strip() == str(state.pid)


@pytest.mark.integration
def test_kafka_up_cli_is_ready_within_budget_and_status_codes(
    broker: LocalKafka, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = broker.settings
    for name, value in {
        "TURNSTREAM_DATA_DIR": settings.data_dir,
        "TURNSTREAM_CACHE_DIR": settings.cache_dir,
        "TURNSTREAM_KAFKA_HOST": settings.kafka_host,
        "TURNSTREAM_KAFKA_PORT": settings.kafka_port,
        "TURNSTREAM_KAFKA_CONTROLLER_PORT": settings.kafka_controller_port,
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("TURNSTREAM_KAFKA_BOOTSTRAP", raising=False)
    parser = argparse.ArgumentParser()
    cli_kafka.register(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        args = parser.parse_args(["kafka", *argv])
        code: int = args.handler(args)
        return code

    assert run("status") == cli_kafka.EXIT_STOPPED
    assert "stopped" in capsys.readouterr().out

    started = time.monotonic()
    assert run("up") == 0
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n`kafka up` (jars cached, fresh data dir): ready in {elapsed:.2f} s")
    assert elapsed < READY_BUDGET_S
    assert f"running at {broker.bootstrap}" in capsys.readouterr().out

    assert run("status") == 0
    assert "running" in capsys.readouterr().out
    assert run("down") == 0
    assert "stopped" in capsys.readouterr().out
    assert run("status") == cli_kafka.EXIT_STOPPED
    assert run("down") == 0
    assert "not running" in capsys.readouterr().out


@pytest.mark.integration
def test_start_timeout_kills_the_broker_and_shows_the_log(
    make_broker_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_broker_settings(tmp_path / "data").model_copy(
        update={"kafka_start_timeout_s": 0.2}
    )
    kafka = LocalKafka(settings)
    with pytest.raises(LocalKafkaError, match="did not answer") as error:
        kafka.up()
    assert "killed it" in str(error.value)
    assert not kafka.pid_file.exists()
    assert _processes_mentioning(kafka.home) == []


def test_port_in_use_is_a_clear_error(make_broker_settings: MakeSettings, tmp_path: Path) -> None:
    settings = make_broker_settings(tmp_path / "data")
    with socket.socket() as squatter:
        squatter.bind((settings.kafka_host, settings.kafka_port))
        squatter.listen()
        with pytest.raises(
            LocalKafkaError, match=rf"port .*:{settings.kafka_port} is already in use"
        ):
            LocalKafka(settings).up()


def test_up_without_java_says_so(
    make_broker_settings: MakeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(LocalKafkaError, match="java not found"):
        LocalKafka(make_broker_settings(tmp_path / "data")).up()


def _fake_mvn(bin_dir: Path, body: str) -> Path:
    """A `mvn` on PATH that runs ``body`` (bash) and logs each call to calls.log."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    mvn = bin_dir / "mvn"
    mvn.write_text(f'#!/bin/bash\necho "$@" >> "{bin_dir}/calls.log"\n{body}\n')
    mvn.chmod(0o755)
    return mvn


def _fetching_settings(tmp_path: Path, make: MakeSettings) -> Settings:
    return make(tmp_path / "data").model_copy(update={"cache_dir": tmp_path / "cache"})


def test_jar_fetch_redoes_an_interrupted_fetch_then_is_cached(
    make_broker_settings: MakeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    _fake_mvn(
        bin_dir,
        'for a in "$@"; do case $a in -DoutputDirectory=*) out=${a#*=};; esac; done\n'
        'mkdir -p "$out" && touch "$out/kafka_2.13-4.1.1.jar"',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    kafka = LocalKafka(_fetching_settings(tmp_path, make_broker_settings))
    (kafka.libs).mkdir(parents=True)  # an interrupted fetch: jars, but no marker
    (kafka.libs / "truncated.jar").write_bytes(b"")

    libs = kafka.fetch_jars()
    assert sorted(p.name for p in libs.iterdir()) == ["kafka_2.13-4.1.1.jar"]
    assert kafka.fetch_jars() == libs
    calls = (bin_dir / "calls.log").read_text().splitlines()
    assert len(calls) == 1
    assert "-Dkafka.version=4.1.1" in calls[0] and "dependency:copy-dependencies" in calls[0]


def test_jar_fetch_failure_shows_mavens_output(
    make_broker_settings: MakeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    _fake_mvn(bin_dir, 'echo "[ERROR] Could not resolve dependencies"; exit 1')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    kafka = LocalKafka(_fetching_settings(tmp_path, make_broker_settings))
    with pytest.raises(LocalKafkaError, match=r"(?s)mvn exit 1.*Could not resolve dependencies"):
        kafka.fetch_jars()
    assert not (kafka.jar_root / "libs.complete").exists()


def test_jar_fetch_without_maven_says_so(
    make_broker_settings: MakeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    kafka = LocalKafka(_fetching_settings(tmp_path, make_broker_settings))
    with pytest.raises(LocalKafkaError, match="mvn not found"):
        kafka.fetch_jars()


def test_broker_config_is_single_node_kraft_without_auto_create(
    make_broker_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_broker_settings(tmp_path)
    props = broker_properties(settings, tmp_path / "kafka")
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{settings.kafka_controller_port}"
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{settings.kafka_port}"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    replication = [v for k, v in props.items() if k.endswith("replication.factor")]
    assert replication and set(replication) == {"1"}
