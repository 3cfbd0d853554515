"""The pipeline's processors in this process (no Kafka): the turns bench's baseline and the
chaos soak's state replay.

The baseline of bench/turns.py (``--no-baseline`` skips it): after the workers and the
broker are stopped, the same texts through ``processors.turn.in_process.run_turn`` in this
process (same processors and settings, in-memory state, Qdrant in memory, no Kafka):

* ``unloaded``: ``--unloaded-turns`` turns one at a time, round-robin over the open loop's
  sessions (the service time of a turn);
* ``open_loop``: arrivals on the same schedule (rate, duration, sessions) into a FIFO queue
  worked off by ``--baseline-servers`` concurrent turns (a bounded pool, as an in-process
  server would run; one task per arrival instead shares the loop among all of them, and
  when over capacity every turn then ends late). Latency counts from the scheduled
  arrival, ``queue_wait_ms`` is the part spent queued; ``overloaded`` says the pool did
  not keep up with the rate (latency then grows with the run's length), and arrivals still
  queued ``--drain`` s after the last one are ``unanswered``;
* ``closed_loop``: the same S and T.

``cpu_ms_per_turn`` of a stage: this process's CPU time in it over its answered turns.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bench.harness.load import (
    Texts,
    Turn,
    answered_count,
    closed_loop,
    latency_report,
    one_at_a_time,
    open_loop_fifo,
    throughput,
    turn_input,
)
from bench.harness.pipeline import EXAMPLE_PACK
from bench.harness.procwatch import Watch, cpu_ms_per_turn
from bench.harness.report import print_closed, print_open, print_unloaded
from processors.turn.deps import TurnDeps
from schemas.pack.agent_pack import AgentPack
from sinks.pack_files import load_pack
from streams.pipeline.runtime import one_intra_op_thread
from streams.settings import load_settings
from streams.worker import freeze_startup_objects


def in_process_deps() -> tuple[AgentPack, TurnDeps]:
    """The example pack and the ports ``run_turn`` needs: the real embedder, Qdrant in
    memory, the pack's own tools, this process's settings (the baseline and the soak's
    replay)."""
    from processors.phases.tools import PackToolExecutor
    from sinks.python_tools import PythonToolExecutor
    from sinks.turn_deps import RetrievalPorts

    pack = load_pack(EXAMPLE_PACK)
    settings = load_settings()
    ports = RetrievalPorts.in_memory(settings)
    ports.sync(pack)
    deps = ports.turn_deps(
        settings, lambda _pack: PackToolExecutor(PythonToolExecutor(EXAMPLE_PACK))
    )
    return pack, deps


async def baseline_run(args: argparse.Namespace) -> dict[str, Any]:
    """The same texts through ``run_turn``: the processors without Kafka."""
    from processors.turn.in_process import MemoryState, run_turn
    from schemas.events.turn_requested import TurnRequested
    from streams.turn_client import new_turn_id

    t0 = time.monotonic()
    one_intra_op_thread()  # the worker's torch setting: like for like
    pack, deps = in_process_deps()
    state = MemoryState()
    state.add_pack(pack)
    texts = Texts.load(distinct=not args.repeat_texts)
    regenerated = Counter[bool]()

    async def ask(channel_id: str, message: str, deadline: float) -> Turn:
        loop = asyncio.get_running_loop()
        t = loop.time()
        request = TurnRequested(
            turn_id=new_turn_id(), input=turn_input(channel_id, message), sent_at=datetime.now(UTC)
        )
        response, record = await run_turn(request, state, deps)
        answered = loop.time()
        turn = Turn(
            request.turn_id,
            e2e_ms=(answered - t) * 1000,
            response=response,
            answered_at=answered,
        )
        regenerated[len(record.context.enforcement) > 1] += 1
        return turn

    result: dict[str, Any] = {}
    await closed_loop(ask, texts, 4, max(1, args.warmup // 4), "warm", 60.0)
    freeze_startup_objects()  # as the worker does after its start: like for like
    result["setup_s"] = round(time.monotonic() - t0, 1)
    watch = Watch({"bench": os.getpid()})
    stage: dict[str, Any] = {}
    with watch.stage("unloaded", stage):
        turns = await one_at_a_time(ask, texts, args.unloaded_turns, args.active_sessions, math.inf)
    stage["turns"] = len(turns)
    stage.update(latency_report(turns, transport=False))
    stage["cpu_ms_per_turn"] = cpu_ms_per_turn(stage, "bench", answered_count(turns))
    result["unloaded"] = stage
    print_unloaded("[in-process] unloaded", stage)
    if args.rate > 0:
        t_open = asyncio.get_running_loop().time()
        stage = {}
        with watch.stage("open_loop", stage):
            turns = await open_loop_fifo(
                ask,
                texts,
                args.rate,
                args.duration,
                args.active_sessions,
                "open",
                args.baseline_servers,
                args.drain,
            )
        answered = [t.answered_at for t in turns if t.answered_at is not None]
        served = len(answered) / (max(answered) - t_open) if answered else 0.0
        stage |= {
            "rate_per_s": args.rate,
            "duration_s": args.duration,
            "servers": args.baseline_servers,
            "sent": len(turns),
            "served_turns_per_s": round(served, 2),
            "overloaded": served < 0.95 * args.rate,
        }
        stage.update(latency_report(turns, transport=False))
        stage["queue_wait_ms"] = stage.pop("send_lag_ms")
        result["open_loop"] = stage
        print_open("[in-process] open loop", stage)
    if args.sessions > 0 and args.turns > 0:
        stage = {"sessions": args.sessions, "turns_per_session": args.turns}
        with watch.stage("closed_loop", stage):
            turns, elapsed = await closed_loop(
                ask, texts, args.sessions, args.turns, "closed", 60.0, args.closed_max_s
            )
        stage.update(throughput(turns, elapsed))
        stage.update(latency_report(turns, transport=False))
        stage["cpu_ms_per_turn"] = cpu_ms_per_turn(stage, "bench", answered_count(turns))
        result["closed_loop"] = stage
        print_closed("[in-process] closed loop", stage)
    total = sum(regenerated.values())
    result["regenerated_share"] = round(regenerated[True] / total, 4) if total else 0.0
    return result
