"""The chaos soak's worker processes (bench/chaos.py): which it starts, with which role and
settings, and which consumer groups must hold them before the load starts.

Without ``--analytics``: ``--workers`` processes of ``turnstream worker`` (role ``all``),
analytics off. With it, the shape of a production deployment, where every worker writes one
shared ClickHouse: the same pipeline workers, analytics still off, and one more process,
``turnstream worker --role analytics``, the only writer of the one embedded store the judge
reads. It is SIGKILLed on the same schedule as the others, so what keeps each turn's row once
across its restarts is the consumer's replay of what it had not committed plus
``ReplacingMergeTree`` and ``FINAL``. (One embedded store per worker splits the turns between
stores: after a kill or a rebalance the other worker reads a turn's record again, into its own
store, and no ``FINAL`` sees both rows.)

The analytics process gets a fixed pseudonym key, as production sets one: the key is part of
the ``turns`` sorting key (``session_ref``), and a process without one draws a random key, so
a record it replays after a restart would make a row with another key, which FINAL keeps.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness.pipeline import ready_groups
from streams.analytics_consumer import group_id as analytics_group
from streams.roles import Role
from streams.settings import Settings
from streams.worker_process import WorkerProcess, wait_for_groups

PSEUDONYM_KEY = "chaos-soak-pseudonym-key"
"""``TURNSTREAM_ANALYTICS__PSEUDONYM_KEY`` of the analytics process (at least 16 bytes)."""


@dataclass(frozen=True)
class Planned:
    """One worker process of the soak: its name (log file, data dir, fault target), its role
    and whether it writes analytics."""

    name: str
    role: Role
    analytics: bool

    def settings(self, settings: Settings, root: Path) -> Settings:
        """``settings`` (analytics configured, enabled or not) for this process: its own data
        dir under ``root``, analytics on only where it writes them."""
        analytics = settings.analytics.model_copy(update={"enabled": self.analytics})
        return settings.model_copy(update={"data_dir": root / self.name, "analytics": analytics})

    def env(self) -> dict[str, str]:
        """Variables this process gets beyond those of its settings."""
        return {"TURNSTREAM_ANALYTICS__PSEUDONYM_KEY": PSEUDONYM_KEY} if self.analytics else {}

    def groups(self, settings: Settings) -> list[str]:
        """The consumer groups this process joins (``settings``: its own)."""
        if self.role is Role.ANALYTICS:
            return [analytics_group(settings)]
        return ready_groups(settings)


def worker_plan(workers: int, analytics: bool) -> list[Planned]:
    """``workers`` pipeline workers that write no analytics, and with ``analytics`` one
    analytics process after them."""
    plan = [Planned(f"worker{i}", Role.ALL, analytics=False) for i in range(workers)]
    if analytics:
        plan.append(Planned("analytics", Role.ANALYTICS, analytics=True))
    return plan


def group_members(plan: Sequence[Planned], settings: Settings, root: Path) -> dict[str, int]:
    """Per consumer group, how many of the planned processes it holds once all are in."""
    members: Counter[str] = Counter()
    for planned in plan:
        members.update(planned.groups(planned.settings(settings, root)))
    return dict(members)


async def wait_ready(
    settings: Settings, members: dict[str, int], workers: Sequence[WorkerProcess]
) -> None:
    """Until each group of :func:`group_members` is stable with its members (groups that
    want the same count are waited for together)."""
    by_count: dict[int, list[str]] = {}
    for group, count in members.items():
        by_count.setdefault(count, []).append(group)
    await asyncio.gather(
        *(
            wait_for_groups(settings.bootstrap_servers, groups, count, workers)
            for count, groups in by_count.items()
        )
    )
