"""The turns bench's words (bench/harness/streaming.py): a turn answered after the drain
window is unanswered, not lost; lost is what has no answer once the pipeline has no backlog
left; unknown (None) when the wait ran out with a backlog left.

A unit test of one module: the client is a stand-in holding only the response counts, the
backlog a number the test sets (bench/turns.py reads it from the broker)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import cast

import pytest

from bench.harness import streaming
from bench.harness.load import Turn
from bench.harness.report import lost_words
from bench.harness.streaming import StreamTurns
from streams.turn_client import TurnClient


class Pipeline:
    """What :meth:`StreamTurns.settled` reads: response counts and the backlog."""

    def __init__(self, backlog: int) -> None:
        self.response_counts: Counter[str] = Counter()
        self.left = backlog

    async def backlog(self) -> int:
        return self.left

    async def answer_later(self, turn_ids: list[str], after_s: float) -> None:
        """Each turn answered ``after_s`` after the one before; no backlog after the last."""
        for turn_id in turn_ids:
            await asyncio.sleep(after_s)
            self.response_counts[turn_id] += 1
        self.left = 0


def sent_through(pipeline: Pipeline) -> tuple[StreamTurns, list[Turn]]:
    turns = StreamTurns(cast(TurnClient, pipeline), pipeline.backlog)
    return turns, [Turn(f"t{i}") for i in range(3)]


@pytest.fixture(autouse=True)
def short_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "POLL_S", 0.02)


async def test_turns_answered_after_the_drain_window_are_not_lost() -> None:
    pipeline = Pipeline(backlog=40)
    sent, turns = sent_through(pipeline)
    pipeline.response_counts["t0"] = 1  # in the window; t1 and t2 come during the wait
    late = asyncio.create_task(pipeline.answer_later(["t1", "t2"], 0.2))
    settled = await sent.settled(turns, max_s=5.0)
    await late
    assert settled["lost"] == 0 and settled["duplicates"] == 0, settled


async def test_a_turn_without_an_answer_once_the_backlog_is_gone_is_lost() -> None:
    pipeline = Pipeline(backlog=0)
    sent, turns = sent_through(pipeline)
    pipeline.response_counts.update({"t0": 2, "t1": 1})  # t0 answered twice, t2 never
    settled = await sent.settled(turns, max_s=5.0)
    assert settled["lost"] == 1 and settled["duplicates"] == 1, settled
    assert lost_words(settled) == "lost 1 dup 1"


async def test_lost_is_unknown_when_the_wait_ends_with_a_backlog_left() -> None:
    pipeline = Pipeline(backlog=40)
    sent, turns = sent_through(pipeline)
    settled = await sent.settled(turns, max_s=0.1)
    assert settled["lost"] is None and settled["still_unanswered"] == 3, settled
    assert lost_words(settled).startswith("lost ? (3 still unanswered after ")
