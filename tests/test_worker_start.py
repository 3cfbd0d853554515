"""A worker that starts while the cluster does not answer waits for it (``kafka_wait_s``),
then exits with an error that says what to change, not with a connection traceback
(tests/test_worker_outage.py: a cluster that comes back is waited for)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from streams.local_kafka import free_ports
from streams.settings import load_settings
from streams.worker import KafkaUnreachableError, Worker, inside_a_command
from streams.worker_process import WorkerProcess


async def test_a_worker_waits_for_an_unreachable_cluster_then_says_so(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    settings = load_settings(
        kafka_bootstrap=f"127.0.0.1:{port}", data_dir=tmp_path, kafka_wait_s=2.5
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(KafkaUnreachableError, match="TURNSTREAM_KAFKA_WAIT_S"):
        await Worker(settings).start()
    assert loop.time() - t0 >= 2.5  # it kept trying for the whole wait


def test_a_worker_process_whose_cluster_never_answers_exits_with_one_line(
    tmp_path: Path,
) -> None:
    (port,) = free_ports(1)
    settings = load_settings(kafka_bootstrap=f"127.0.0.1:{port}", data_dir=tmp_path)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(
        settings, log, env={"TURNSTREAM_KAFKA_WAIT_S": "3"}, inherit=False, log_level="INFO"
    )
    worker.start()
    assert worker.proc is not None
    try:
        code = worker.proc.wait(timeout=240)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise
    text = log.read_text()
    assert code == 1, text
    final = [line for line in text.splitlines() if line.startswith("turnstream: ")]
    assert len(final) == 1, text
    assert f"Kafka at 127.0.0.1:{port} did not answer for 3 s while checking the topics" in final[0]
    assert "TURNSTREAM_KAFKA_WAIT_S" in final[0]
    assert "retrying in" in text  # it said it was waiting, then gave up
    assert "Traceback" not in text and "Unclosed" not in text, text


def test_a_worker_inside_a_command_serves_no_ops_endpoint_unless_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TURNSTREAM_OPS__PORT", raising=False)
    assert inside_a_command(load_settings()).ops.port == 0
    monkeypatch.setenv("TURNSTREAM_OPS__PORT", "9555")
    assert inside_a_command(load_settings()).ops.port == 9555
