"""A worker that starts while the cluster does not answer waits for it (``kafka_wait_s``),
then exits with an error that says what to change, not with a connection traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streams.local_kafka import free_ports
from streams.settings import load_settings
from streams.worker import KafkaUnreachableError, Worker, inside_a_command


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


def test_a_worker_inside_a_command_serves_no_ops_endpoint_unless_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TURNSTREAM_OPS__PORT", raising=False)
    assert inside_a_command(load_settings()).ops.port == 0
    monkeypatch.setenv("TURNSTREAM_OPS__PORT", "9555")
    assert inside_a_command(load_settings()).ops.port == 9555
