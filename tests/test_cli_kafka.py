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

from streams.local_kafka import MAIN_CLASS, LocalKafka, free_ports
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
