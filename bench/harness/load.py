"""The turns a bench sends: texts, load generators (open loop, FIFO, closed loop) and the
latency figures, transport overhead per hop included."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from bench.harness.figures import pct, summary
from bench.harness.pipeline import AGENT, HOPS, REPO, TENANT
from schemas.domain.turn_input import Channel, TurnInput
from schemas.events.turn_response import ResponseStatus, TurnResponse

MESSAGES = REPO / "bench" / "data" / "acme_retrieval_set.yaml"


PARALLEL_PREFIX = "retrieval."


SEQUENTIAL_RETRIEVAL = {"retrieval.embedding"}
"""``retrieval.<type>`` timings run in parallel (the slowest counts); the embedding does not."""


MARKS = ("\u200b", "\u200c")
"""Zero-width space and non-joiner: dropped by the embedder's and the lexical tokenizers."""


def phase_sum_ms(timings: dict[str, float]) -> float:
    """The phases' own time on the critical path: the parallel retrieval types count once,
    as the slowest of them."""
    parallel = [
        v
        for k, v in timings.items()
        if k.startswith(PARALLEL_PREFIX) and k not in SEQUENTIAL_RETRIEVAL
    ]
    sequential = sum(
        v
        for k, v in timings.items()
        if not k.startswith(PARALLEL_PREFIX) or k in SEQUENTIAL_RETRIEVAL
    )
    return sequential + max(parallel, default=0.0)


def phase_table(responses: Sequence[TurnResponse]) -> dict[str, dict[str, float]]:
    by_phase: dict[str, list[float]] = defaultdict(list)
    for response in responses:
        for key, value in response.timings_ms.items():
            by_phase[key].append(value)
    table = {}
    for key, values in by_phase.items():
        ordered = sorted(values)
        table[key] = {
            "p50": round(pct(ordered, 50), 3),
            "p99": round(pct(ordered, 99), 3),
            "count": len(ordered),
        }
    return table


class Texts:
    """The labelled set's messages, cycled; from the second pass on each gets an invisible
    marker (the pass number in zero-width characters) so that no text repeats."""

    def __init__(self, texts: Sequence[str], distinct: bool = True) -> None:
        self.texts = list(texts)
        self.distinct = distinct
        self.count = 0

    @classmethod
    def load(cls, distinct: bool = True) -> Texts:
        data = yaml.safe_load(MESSAGES.read_text())
        return cls([m["text"] for m in data["messages"]], distinct)

    def next(self) -> str:
        n = self.count
        self.count += 1
        text = self.texts[n % len(self.texts)]
        rounds = n // len(self.texts)
        if self.distinct and rounds:
            text += "".join(MARKS[int(bit)] for bit in f"{rounds:b}")
        return text


def turn_input(channel_id: str, message: str) -> TurnInput:
    return TurnInput(
        tenant_id=TENANT,
        agent_id=AGENT,
        channel=Channel.WEBCHAT,
        channel_id=channel_id,
        message=message,
    )


@dataclass
class Turn:
    """One turn as the bench saw it."""

    turn_id: str
    lag_ms: float = 0.0
    e2e_ms: float | None = None
    response: TurnResponse | None = None
    answered_at: float | None = None


Ask = Callable[[str, str, float], Awaitable[Turn]]
"""(channel id, message, deadline on the loop clock) -> the answered (or lost) turn."""


async def open_loop(
    ask: Ask,
    texts: Texts,
    rate: float,
    duration: float,
    sessions: int,
    run: str,
    drain: float,
) -> tuple[list[Turn], float]:
    """Requests on a fixed schedule; returns the turns and the elapsed seconds."""
    loop = asyncio.get_running_loop()
    count = max(1, int(rate * duration))
    start = loop.time() + 0.05
    deadline = start + duration + drain
    tasks: list[asyncio.Task[Turn]] = []

    async def one(i: int, due: float) -> Turn:
        lag = (loop.time() - due) * 1000
        turn = await ask(f"{run}-{i % sessions}", texts.next(), deadline)
        turn.lag_ms = lag
        return turn

    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    turns = list(await asyncio.gather(*tasks))
    return turns, loop.time() - start


async def open_loop_fifo(
    ask: Ask,
    texts: Texts,
    rate: float,
    duration: float,
    sessions: int,
    run: str,
    servers: int,
    drain: float,
) -> list[Turn]:
    """The in-process open loop: arrivals on the same schedule go into a FIFO queue that
    ``servers`` coroutines work off, as an in-process server with a bounded pool would.
    Latency counts from the scheduled arrival (``lag_ms`` is the wait in the queue), so a
    loop blocked by a turn's synchronous work delays the turns behind it, as it would.
    Arrivals still queued ``drain`` s after the last one are left unanswered."""
    loop = asyncio.get_running_loop()
    count = max(1, int(rate * duration))
    start = loop.time() + 0.05
    give_up = start + duration + drain
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    turns: list[Turn] = []

    async def server() -> None:
        while (item := await queue.get()) is not None:
            i, due = item
            began = loop.time()
            if began > give_up:
                turns.append(Turn(f"{run}-unanswered-{i}", lag_ms=(began - due) * 1000))
                continue
            turn = await ask(f"{run}-{i % sessions}", texts.next(), math.inf)
            turn.lag_ms = (began - due) * 1000
            if turn.answered_at is not None:
                turn.e2e_ms = (turn.answered_at - due) * 1000
            turns.append(turn)

    workers = [asyncio.create_task(server()) for _ in range(servers)]
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return turns


async def one_at_a_time(
    ask: Ask, texts: Texts, count: int, sessions: int, timeout: float, max_s: float = math.inf
) -> list[Turn]:
    """``count`` turns, each sent once the one before was answered (or timed out after
    ``timeout``), round-robin over ``sessions`` sessions; none started after ``max_s``."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + max_s
    turns: list[Turn] = []
    for i in range(count):
        if loop.time() > stop_at:
            break
        turns.append(await ask(f"unloaded-{i % sessions}", texts.next(), loop.time() + timeout))
    return turns


async def closed_loop(
    ask: Ask,
    texts: Texts,
    sessions: int,
    turns: int,
    run: str,
    timeout: float,
    max_s: float | None = None,
) -> tuple[list[Turn], float]:
    """S sessions, each T turns back to back (no new turn after ``max_s``); returns the
    turns and the seconds from the start to the last answer."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop_at = start + max_s if max_s else None

    async def session(s: int) -> list[Turn]:
        done: list[Turn] = []
        for _ in range(turns):
            if stop_at is not None and loop.time() > stop_at:
                break
            done.append(await ask(f"{run}-{s}", texts.next(), loop.time() + timeout))
        return done

    per_session = await asyncio.gather(*(session(s) for s in range(sessions)))
    finished = [t.answered_at for ts in per_session for t in ts if t.answered_at is not None]
    elapsed = (max(finished) if finished else loop.time()) - start
    return [t for ts in per_session for t in ts], elapsed


def answered_count(turns: Sequence[Turn]) -> int:
    return sum(1 for t in turns if t.response is not None)


def throughput(turns: Sequence[Turn], elapsed: float) -> dict[str, float]:
    answered = sorted(t.answered_at for t in turns if t.answered_at is not None)
    result = {
        "turns": len(turns),
        "answered": len(answered),
        "elapsed_s": round(elapsed, 3),
        "turns_per_s": round(len(answered) / elapsed, 2) if elapsed > 0 else 0.0,
    }
    lo, hi = int(0.1 * len(answered)), int(0.9 * len(answered))
    if hi - lo >= 10 and answered[hi] > answered[lo]:
        result["steady_turns_per_s"] = round((hi - lo) / (answered[hi] - answered[lo]), 2)
    return result


def latency_report(turns: Sequence[Turn], transport: bool) -> dict[str, Any]:
    ok = [t for t in turns if t.response is not None and t.response.status is ResponseStatus.OK]
    report: dict[str, Any] = {
        "e2e_ms": summary([t.e2e_ms for t in turns if t.e2e_ms is not None]),
        "unanswered": sum(1 for t in turns if t.response is None),
        "send_lag_ms": summary([t.lag_ms for t in turns]),
        "errors": sum(
            1 for t in turns if t.response is not None and t.response.status is ResponseStatus.ERROR
        ),
        "phases_ms": phase_table([t.response for t in ok if t.response is not None]),
    }
    if transport:
        per_hop = [
            (t.e2e_ms - phase_sum_ms(t.response.timings_ms)) / HOPS
            for t in ok
            if t.e2e_ms is not None and t.response is not None
        ]
        report["phase_sum_ms"] = summary(
            [phase_sum_ms(t.response.timings_ms) for t in ok if t.response is not None]
        )
        report["transport_overhead_ms_per_hop"] = summary(per_hop)
    return report
