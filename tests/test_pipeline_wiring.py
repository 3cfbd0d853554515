"""The stall watchdog: which roles run it (the app is only built), and what it does (through
the real broker with one in-process worker): a turn admitted and then stranded (its request
committed, the record that would drive it lost) is driven again and answered exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import pytest
from pydantic import BaseModel

from schemas.domain.phase import Phase
from schemas.events.turn_envelope import TurnEnvelope
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import ResponseStatus
from streams.pipeline import base
from streams.pipeline.base import Pipeline
from streams.pipeline.runtime import PipelineRuntime
from streams.pipeline.topology import build_topology
from streams.pipeline.wiring import register
from streams.roles import Role
from streams.settings import Settings, load_settings
from streams.turn_client import TurnClient
from tests.pipeline_support import (
    customer_says,
    pipeline_settings,
    prepare,
    running_worker,
    settle,
    watching_redrives,
)


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


class LoseFirstDrive:
    """``Pipeline.send`` that loses the first context envelope of one turn (as a crash
    between the gate's write and that send would) and counts the turn's requests that the
    worker itself publishes (the watchdog's nudges)."""

    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self.lost = 0
        self.nudges = 0

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        send = base.Pipeline.send

        async def sending(
            pipeline: Pipeline, topic: faust.TopicT, key: bytes, model: BaseModel
        ) -> None:
            if isinstance(model, TurnRequested) and model.turn_id == self.turn_id:
                self.nudges += 1
            if (
                isinstance(model, TurnEnvelope)
                and model.phase is Phase.CUSTOMER_DATA
                and model.turn_id == self.turn_id
                and not self.lost
            ):
                self.lost += 1
                return
            await send(pipeline, topic, key, model)

        monkeypatch.setattr(base.Pipeline, "send", sending)


@pytest.mark.integration
async def test_a_stranded_turn_is_driven_again_by_the_watchdog_and_answered_once(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path, turn_stall_s=2.0)
    await prepare(settings)
    stranded = f"stranded-{uuid.uuid4().hex[:8]}"
    lose = LoseFirstDrive(stranded)
    lose.patch(monkeypatch)
    with watching_redrives() as redrives:
        async with running_worker(settings), TurnClient(settings) as client:
            neighbour = await client.ask(customer_says(f"v-{uuid.uuid4().hex[:8]}", "hi"), 120)
            assert neighbour.status is ResponseStatus.OK
            who = f"v-{uuid.uuid4().hex[:8]}"
            await client.send(customer_says(who, "where is my order A-10024?"), stranded)
            answer = await client.response(stranded, timeout=120)
            assert lose.lost == 1  # the turn was stranded: its first drive never left
            assert answer.status is ResponseStatus.OK and answer.text
            after = await client.ask(customer_says(who, "thanks"), 120)  # the gate opened
            assert after.status is ResponseStatus.OK
            await settle(4.0)  # longer than turn_stall_s: a late second nudge would show
            assert client.response_counts[stranded] == 1
    assert lose.nudges >= 1
    assert any(f"turn {stranded} stalled since" in line for line in redrives.lines)
    assert any(f"driving turn {stranded} again" in line for line in redrives.lines)
