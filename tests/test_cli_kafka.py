"""`turnstream kafka status` says "running" only when the broker answers metadata.

A live process that the pid file names and whose command line is this data dir's broker is
not enough: right after start, or when stuck, such a broker does not serve yet, and a demo
or client started on "running" would fail. The stand-in here is a sleeping process with the
broker's command line (main class and properties file), listening on nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local_kafka import (
    LOOPBACK,
    MAIN_CLASS,
    LocalKafka,
    LocalKafkaError,
    _port_free,
    cluster_ports,
    free_ports,
)
from streams.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def silent_broker(tmp_path: Path) -> Iterator[tuple[LocalKafka, dict[str, str]]]:
    """A data dir whose pid file names a live 'broker' that never answers."""
    port, controller_port = free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNSTREAM_")}
    env |= {
        "TURNSTREAM_DATA_DIR": str(tmp_path / "data"),
        "TURNSTREAM_KAFKA_PORT": str(port),
        "TURNSTREAM_KAFKA_CONTROLLER_PORT": str(controller_port),
    }
    broker = LocalKafka(
        load_settings(
            kafka_bootstrap=None,
            data_dir=tmp_path / "data",
            kafka_port=port,
            kafka_controller_port=controller_port,
        )
    )
    broker.home.mkdir(parents=True)
    stand_in = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(120)",
            MAIN_CLASS,
            str(broker.properties_file),
        ]
    )
    broker.pid_file.write_text(f"{stand_in.pid}\n")
    deadline = time.monotonic() + 10.0  # right after exec, /proc/PID/cmdline can read empty
    while not broker.status().running and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield broker, env
    finally:
        stand_in.kill()
        stand_in.wait(timeout=10)


def kafka_status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "kafka", "status"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_of_a_live_broker_that_does_not_answer_is_not_running(
    silent_broker: tuple[LocalKafka, dict[str, str]],
) -> None:
    broker, env = silent_broker
    assert broker.status().running, "the stand-in passes the pid and command line checks"
    done = kafka_status(env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "alive but does not answer" in done.stdout
    assert "kafka: running" not in done.stdout


def test_status_of_a_data_dir_without_broker_is_stopped(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNSTREAM_")}
    env |= {
        "TURNSTREAM_DATA_DIR": str(tmp_path / "data"),
        "TURNSTREAM_KAFKA_PORT": str(port),
        "TURNSTREAM_KAFKA_CONTROLLER_PORT": str(controller_port),
    }
    done = kafka_status(env)
    assert done.returncode == 3
    assert done.stdout.startswith("kafka: stopped")


def test_cluster_ports_are_laid_out_two_apart_and_must_not_collide(tmp_path: Path) -> None:
    settings = load_settings(
        kafka_bootstrap=None, data_dir=tmp_path, kafka_port=19092, kafka_controller_port=19093
    )
    assert cluster_ports(settings, 3) == [(19092, 19093), (19094, 19095), (19096, 19097)]
    clash = settings.model_copy(update={"kafka_controller_port": 19094})
    with pytest.raises(LocalKafkaError, match="distinct ports"):
        cluster_ports(clash, 3)


def _cluster_env(tmp_path: Path) -> dict[str, str]:
    """Free ports laid out as ``kafka up --nodes 3`` lays them out (port + 2i)."""
    for _ in range(50):
        port = free_ports(1)[0]
        if port + 5 <= 65535 and all(_port_free(LOOPBACK, port + i) for i in range(6)):
            break
    else:
        pytest.skip("no six consecutive free ports")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNSTREAM_")}
    return env | {
        "TURNSTREAM_DATA_DIR": str(tmp_path / "data"),
        "TURNSTREAM_KAFKA_PORT": str(port),
        "TURNSTREAM_KAFKA_CONTROLLER_PORT": str(port + 1),
        # three JVMs at once on a loaded 2-core box: Kafka's 60 s to register can pass
        "TURNSTREAM_KAFKA_START_TIMEOUT_S": "180",
    }


def kafka(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "kafka", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.integration
@pytest.mark.timeout(420)
def test_kafka_up_nodes_3_starts_a_replicated_cluster_that_status_and_down_find(
    tmp_path: Path,
) -> None:
    env = _cluster_env(tmp_path)
    client_env = env
    try:
        up = kafka(env, "up", "--nodes", "3")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "3-node cluster running" in up.stdout
        bootstrap = up.stdout.split("TURNSTREAM_KAFKA_BOOTSTRAP=")[1].split()[0]
        assert len(bootstrap.split(",")) == 3
        assert "TURNSTREAM_REPLICATION_FACTOR=3" in up.stdout
        client_env = env | {"TURNSTREAM_KAFKA_BOOTSTRAP": bootstrap}
        # what up prints for clients: with it set, status and down still act on the cluster
        status = kafka(client_env, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "3 node(s) answering, active controller node " in status.stdout
        again = kafka(env, "up", "--nodes", "3")
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        down = kafka(client_env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "3-node cluster stopped" in down.stdout
    assert kafka(env, "status").returncode == 3
    leftover = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    assert str(tmp_path / "data") not in leftover
