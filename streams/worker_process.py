"""``turnstream worker`` as a child process, and a wait until its consumer groups settle.

What the integration tests, the benches and the chaos soak need to run real worker processes
beside them (and kill them): one implementation, so they all start workers the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from streams.settings import Settings

REPO = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_S = 60.0

SET_BY_WORKER_ENV = (
    "TURNSTREAM_KAFKA_BOOTSTRAP",
    "TURNSTREAM_TOPIC_PREFIX",
    "TURNSTREAM_DATA_DIR",
    "TURNSTREAM_PACKS_DIR",
    "TURNSTREAM_PARTITIONS",
    "TURNSTREAM_REPLICATION_FACTOR",
    "TURNSTREAM_TABLE_STORE",
    "TURNSTREAM_SESSION_IDLE_TTL_S",
    "TURNSTREAM_CUSTOMER_DATA_IDLE_TTL_S",
    "TURNSTREAM_ANALYTICS__ENABLED",
    "TURNSTREAM_ANALYTICS__QUERY_PORT",
    "TURNSTREAM_WEBHOOKS__ENABLED",
    "TURNSTREAM_OPS__PORT",
)
"""The variables :func:`worker_env` sets from the settings; other ``TURNSTREAM_*`` variables
of the caller reach the worker unchanged (e.g. ``TURNSTREAM_WORKER_CONCURRENCY``)."""


def worker_env(
    settings: Settings, extra: Mapping[str, str] | None = None, *, inherit: bool = True
) -> dict[str, str]:
    """The environment that gives a child process the same broker, topics and data dir;
    ``inherit=False`` drops every other ``TURNSTREAM_*`` variable of this process (tests)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SET_BY_WORKER_ENV and (inherit or not k.startswith("TURNSTREAM_"))
    }
    env.update(
        {
            "TURNSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "TURNSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "TURNSTREAM_DATA_DIR": str(settings.data_dir),
            "TURNSTREAM_PACKS_DIR": str(settings.packs_dir),
            "TURNSTREAM_PARTITIONS": str(settings.partitions),
            "TURNSTREAM_REPLICATION_FACTOR": str(settings.replication_factor),
            "TURNSTREAM_TABLE_STORE": settings.table_store,
            "TURNSTREAM_SESSION_IDLE_TTL_S": str(settings.session_idle_ttl_s),
            "TURNSTREAM_CUSTOMER_DATA_IDLE_TTL_S": str(settings.customer_data_idle_ttl_s),
            "TURNSTREAM_ANALYTICS__ENABLED": str(settings.analytics.enabled).lower(),
            "TURNSTREAM_ANALYTICS__QUERY_PORT": str(settings.analytics.query_port),
            "TURNSTREAM_WEBHOOKS__ENABLED": str(settings.webhooks.enabled).lower(),
            "TURNSTREAM_OPS__PORT": str(settings.ops.port),  # children of one host: 0 or distinct
        }
    )
    env.update(extra or {})
    return env


class WorkerProcess:
    """One ``python -m streams.cli worker`` child, its output appended to ``log``."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        *,
        role: str = "all",
        env: Mapping[str, str] | None = None,
        inherit: bool = True,
        log_level: str = "WARNING",
    ) -> None:
        self.settings = settings
        self.log = log
        self.role = role
        self.env = dict(env or {})
        self.inherit = inherit
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the worker was never started")
        return self.proc.pid

    def start(self) -> None:
        command = [sys.executable, "-m", "streams.cli", "worker", "--role", self.role]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*command, "--log-level", self.log_level],
                cwd=REPO,
                env=worker_env(self.settings, self.env, inherit=self.inherit),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        """None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush — a crash."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (Faust's clean shutdown), SIGKILL after :data:`STOP_TIMEOUT_S`."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def rss_bytes(pid: int) -> int:
    """VmRSS of the process and its descendants (0 once gone)."""
    total = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


async def group_states(bootstrap: str, groups: Sequence[str]) -> dict[str, tuple[str, int]]:
    """(state, member count) of each consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    found = {}
    try:
        for group in groups:  # one per request: aiokafka fails to decode some multi-group answers
            for response in await admin.describe_consumer_groups([group]):
                for described in response.groups:
                    state, members = described[2], described[5]
                    found[group] = (str(state), len(members))
    finally:
        await admin.close()
    return found


async def wait_for_groups(
    bootstrap: str,
    groups: Sequence[str],
    want: int,
    workers: Sequence[WorkerProcess],
    *,
    stable_for_s: float = 5.0,
    timeout_s: float = 300.0,
) -> None:
    """Until every group has been Stable with ``want`` members for ``stable_for_s`` (a worker
    that joins late, or misses heartbeats while it starts, makes the group rebalance again
    right after it first looked stable). Raises if a worker exits or on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    stable_since: float | None = None
    while True:
        if not all(w.alive() for w in workers):
            raise RuntimeError(f"a worker exited; see {workers[0].log.parent}")
        states: dict[str, tuple[str, int]] = {}
        with contextlib.suppress(Exception):
            states = await group_states(bootstrap, groups)
        if all(states.get(g) == ("Stable", want) for g in groups):
            stable_since = stable_since or loop.time()
            if loop.time() - stable_since >= stable_for_s:
                return
        else:
            stable_since = None
        if loop.time() > deadline:
            raise RuntimeError(f"consumer groups not stable with {want} members: {states}")
        await asyncio.sleep(0.5)
