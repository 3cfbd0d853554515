"""``turnstream demo``, the README's main command, exits 0 and prints the conversation:
on the session's broker, and as a newcomer runs it, with no broker at all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.local_kafka import MAIN_CLASS, LocalKafka, free_ports
from streams.settings import Settings, load_settings
from tests.pipeline_support import REPO, pipeline_settings, settings_env

pytestmark = pytest.mark.integration


@pytest.mark.timeout(400)
def test_demo_plays_the_refund_conversation_and_exits_0(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path)
    env = settings_env(settings)
    env["TURNSTREAM_ANALYTICS__ENABLED"] = "true"  # the demo runs the whole worker
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
    )
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.count("customer> ") == 2
    assert "scenario refund: START -> confirm_refund, skipped ask_order_id, ask_reason" in out
    assert "tool check_refund_eligibility: ok" in out
    assert "enforcement attempt 1: violated" in out and "refund_within_tier_limit" in out
    assert "enforcement attempt 2: passed" in out
    assert "Done: refund RF-10023 of 500.00 USD" in out
    assert "timings ms: identification" in out


def _turnstream() -> list[str]:
    """The console script a newcomer runs, next to this interpreter (else the module)."""
    script = Path(sys.executable).with_name("turnstream")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "streams.cli"]


def _brokers_of(data_dir: Path) -> list[int]:
    """Pids of live broker JVMs whose command line names a file under ``data_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if MAIN_CLASS in cmdline and str(data_dir) in cmdline:
            pids.append(int(proc.name))
    return pids


def _newcomer_env(data_dir: Path, cache_dir: Path) -> dict[str, str]:
    """No TURNSTREAM_* of the test run (so no external cluster): a fresh data dir on free
    ports; the jars cache and the model are the machine's, as on a second run of a user."""
    port, controller_port = free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNSTREAM_")}
    env.update(
        {
            "TURNSTREAM_DATA_DIR": str(data_dir),
            "TURNSTREAM_CACHE_DIR": str(cache_dir),
            "TURNSTREAM_KAFKA_PORT": str(port),
            "TURNSTREAM_KAFKA_CONTROLLER_PORT": str(controller_port),
            # other processes on this machine may hold the default endpoint ports
            "TURNSTREAM_ANALYTICS__QUERY_PORT": "0",
        }
    )
    if "ops" in Settings.model_fields:
        env["TURNSTREAM_OPS__PORT"] = "0"
    return env


def _run_demo(env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [*_turnstream(), "demo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output and "ERROR" not in output, output
    assert "WARNING" not in output and "nanobind" not in output, output
    assert done.stdout.count("customer> ") == 2, output
    answers = re.findall(r"^  agent> (.*)$", done.stdout, re.MULTILINE)
    assert len(answers) == 2 and all(a.strip() and "code=" not in a for a in answers), output
    return done.stdout


@pytest.mark.timeout(900)
def test_demo_runs_from_nothing_twice_and_leaves_the_machine_as_it_found_it(
    tmp_path: Path,
) -> None:
    """No broker, a fresh data dir, a working directory without packs/: the demo starts
    the local broker, plays both turns and stops the broker; the same again right after;
    and with a broker already running it uses it and leaves it running."""
    data_dir, cwd = tmp_path / "data", tmp_path / "elsewhere"
    cwd.mkdir()
    cache_dir = load_settings().cache_dir  # the broker jars, fetched once per machine
    env = _newcomer_env(data_dir, cache_dir)
    for run in (1, 2):
        out = _run_demo(env, cwd)
        assert "started in" in out, f"run {run} did not start the broker:\n{out}"
        assert "stopping the local Kafka broker the demo started" in out, out
        assert not _brokers_of(data_dir), f"run {run} left a broker running"

    broker = LocalKafka(
        load_settings(
            kafka_bootstrap=None,
            data_dir=data_dir,
            cache_dir=cache_dir,
            kafka_port=int(env["TURNSTREAM_KAFKA_PORT"]),
            kafka_controller_port=int(env["TURNSTREAM_KAFKA_CONTROLLER_PORT"]),
        )
    )
    assert broker.ensure_running()
    try:
        out = _run_demo(env, cwd)
        assert "started in" not in out and "stopping" not in out, out
        assert broker.status().running and _brokers_of(data_dir), "the demo stopped its broker"
    finally:
        broker.down()
    assert not _brokers_of(data_dir)
