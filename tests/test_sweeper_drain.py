"""The idle-state sweep waits for the producer whenever its tombstones fill half of Faust's
producer buffer (``streams.pipeline.sweeper``): at 100k sessions it queued ~400k tombstones
at once, the worker's commits timed out behind them, and every agent's record logged
"producer buffer full". A fake producer buffer (the one port the drain uses), no broker."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from streams.pipeline import sweeper as sweeper_module
from streams.pipeline.sweeper import Sweeper
from streams.settings import load_settings

HALF = 50


class Buffer:
    """Faust's producer buffer as the drain sees it: ``size``, ``state``, ``max_messages``
    and ``flush_atmost`` (which sends up to n records, ``per_flush`` at a time)."""

    max_messages = 100

    def __init__(self, size: int, per_flush: int, state: str = "running") -> None:
        self.size = size
        self.per_flush = per_flush
        self.state = state
        self.flushes = 0

    async def flush_atmost(self, n: int) -> int:
        self.flushes += 1
        sent = min(n, self.per_flush, self.size)
        self.size -= sent
        return sent


def sweeper_over(buffer: Buffer) -> Sweeper:
    app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer))
    topology = SimpleNamespace(app=app, settings=load_settings())
    pipeline: Any = SimpleNamespace(topology=topology)
    return Sweeper(pipeline)


async def test_the_sweep_waits_until_the_producer_holds_at_most_the_backlog() -> None:
    buffer = Buffer(size=400_000, per_flush=5_000)
    assert await sweeper_over(buffer)._drain()
    assert buffer.size == HALF


async def test_a_short_backlog_costs_no_wait() -> None:
    buffer = Buffer(size=HALF, per_flush=5_000)
    assert await sweeper_over(buffer)._drain()
    assert buffer.flushes == 0


async def test_a_producer_pausing_for_a_moment_does_not_stop_the_sweep() -> None:
    """Under load the producer may send nothing within one 0.1 s flush: the sweep waits
    (stopping there left each sweep at ~1,000 sessions, and the next one an interval away:
    an hour at the default TTL)."""
    buffer = Buffer(size=50_000, per_flush=5_000)
    flush = buffer.flush_atmost
    calls = 0

    async def sometimes(n: int) -> int:
        nonlocal calls
        calls += 1
        return 0 if calls % 2 else await flush(n)

    buffer.flush_atmost = sometimes  # type: ignore[method-assign]
    assert await sweeper_over(buffer)._drain()
    assert buffer.size == HALF


async def test_the_sweep_stops_when_the_producer_sends_nothing(monkeypatch: Any) -> None:
    monkeypatch.setattr(sweeper_module, "STUCK_S", 0.05)
    stuck = Buffer(size=50_000, per_flush=0)  # the broker is away
    assert not await sweeper_over(stuck)._drain()
    assert stuck.flushes >= 1
    stopping = Buffer(size=50_000, per_flush=5_000, state="stopping")
    assert not await sweeper_over(stopping)._drain()
    assert stopping.flushes == 0  # Faust's flush raises on a stopped producer


async def test_the_scan_never_leaves_more_than_half_the_buffer_queued(
    monkeypatch: Any,
) -> None:
    """Three tombstones a key (a session: its gate and states): the drain keeps the buffer
    under Faust's ``max_messages`` at every key."""
    buffer = Buffer(size=0, per_flush=5_000)
    sweeper = sweeper_over(buffer)
    monkeypatch.setattr(sweeper, "_paused", lambda: False)
    most = 0
    for n in range(3 * sweeper_module.YIELD_EVERY):
        buffer.size += 3
        most = max(most, buffer.size)
        assert await sweeper._yield(n)
        assert buffer.size <= HALF
    assert most <= HALF + 3 < Buffer.max_messages
