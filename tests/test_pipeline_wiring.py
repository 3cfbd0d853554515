"""Which agents and timers each role's worker runs (no broker: the app is only built)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.pipeline.base import Pipeline
from streams.pipeline.runtime import PipelineRuntime
from streams.pipeline.topology import build_topology
from streams.pipeline.wiring import register
from streams.roles import Role
from streams.settings import load_settings


def timers_of(role: Role, tmp_path: Path) -> list[str]:
    settings = load_settings(kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path, topic_prefix="w")
    topology = build_topology(settings, role)
    names: list[str] = []
    timer = topology.app.timer

    def recording(interval: float, **kwargs: Any) -> Callable[[Any], Any]:
        names.append(kwargs["name"])
        return timer(interval, **kwargs)  # type: ignore[no-any-return]

    topology.app.timer = recording  # type: ignore[method-assign]
    register(Pipeline(topology, PipelineRuntime(settings)), concurrency=1, role=role)
    return names


@pytest.mark.parametrize("role", [Role.ALL, Role.CONTEXT])
async def test_the_session_role_runs_the_stall_watchdog(role: Role, tmp_path: Path) -> None:
    assert "stall-watchdog" in timers_of(role, tmp_path)


async def test_a_role_without_the_session_gate_runs_no_watchdog(tmp_path: Path) -> None:
    assert "stall-watchdog" not in timers_of(Role.ANSWER, tmp_path)
