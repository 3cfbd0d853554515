"""What the bench's processes use, from /proc: RSS maxima per stage, CPU cores per process
and per thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streams.worker_process import rss_bytes

RSS_EVERY_S = 0.25


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (threads included; children not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine used since boot (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of a process: tid -> (comm, utime + stime)."""
    found: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (task / "stat").read_text()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat.rsplit(")", 1)[1].split()
                found[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    return found


class Watch:
    """RSS maxima per process and label, and CPU use per process between marks."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.label = "start"
        self.rss_max: dict[str, dict[str, int]] = defaultdict(dict)
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for name, pid in self.pids.items():
            rss = rss_bytes(pid)
            for label in (self.label, "max"):
                kept = self.rss_max[name]
                kept[label] = max(kept.get(label, 0), rss)

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(RSS_EVERY_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sample()

    def rss_mb(self, name: str) -> dict[str, float]:
        return {k: round(v / 2**20, 1) for k, v in self.rss_max[name].items()}

    @contextlib.contextmanager
    def stage(self, label: str, into: dict[str, Any]) -> Iterator[None]:
        """Label RSS samples, and put the CPU each process used into ``into``: seconds
        (``cpu_s``) and cores (``cpu_cores``: seconds over the stage's wall time)."""
        self.label = label
        before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        system = system_busy_seconds()
        t0 = time.monotonic()
        try:
            yield
        finally:
            wall = time.monotonic() - t0
            used = {name: cpu_seconds(pid) - before[name] for name, pid in self.pids.items()}
            into["cpu_s"] = {name: round(seconds, 3) for name, seconds in used.items()}
            cores = {name: round(seconds / wall, 2) for name, seconds in used.items()}
            ours = sum(cores.values())
            cores["machine"] = round((system_busy_seconds() - system) / wall, 2)
            cores["others"] = round(max(0.0, cores["machine"] - ours), 2)
            into["cpu_cores"] = cores


def cpu_ms_per_turn(stage: dict[str, Any], prefix: str, turns: int) -> float | None:
    """CPU milliseconds the processes named ``prefix...`` used in a :meth:`Watch.stage`, per
    turn of ``turns`` (None for none)."""
    if turns <= 0:
        return None
    used: dict[str, float] = stage["cpu_s"]
    seconds = sum(v for name, v in used.items() if name.startswith(prefix))
    return round(1000 * seconds / turns, 2)
