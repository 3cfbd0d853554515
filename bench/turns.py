"""Whole turns through the streaming pipeline, against the same stages called in-process.

    python bench/turns.py [--workers 1|2|1,2] [--partitions 12] [--rate 50] [--duration 30]
                          [--active-sessions 1000] [--sessions 50] [--turns 20]
                          [--no-analytics] [--no-baseline] [--profile PATH] [--json PATH]
                          [--bootstrap HOST:PORT]

Setup: a private local broker on free ports in a temporary directory (or ``--bootstrap``), a
fresh topic prefix with ``--partitions`` partitions, the example pack
(packs/acme-shop/support) published, and ``--workers`` processes of
``python -m streams.cli worker`` (role ``all``; each with its own data dir, because Qdrant
local mode and the embedded ClickHouse allow one process per directory). Heuristic LLM tasks,
the real all-MiniLM-L6-v2 embedder, Qdrant local, ClickHouse embedded (analytics on unless
``--no-analytics``), webhooks off. ``TURNSTREAM_*`` variables of the caller reach the workers
(e.g. ``TURNSTREAM_WORKER_CONCURRENCY``) except the ones the bench sets itself. A worker
counts as ready when its consumer groups (pipeline, memory ingestion, analytics) have been
stable with every worker in them for 5 s and ``--warmup`` turns were answered (the JVM and
the model warm up; not counted).

Messages are the 151 texts of bench/data/acme_retrieval_set.yaml, cycled; each session is a
new anonymous webchat customer (channel id ``<run>-<n>``). From the second pass over the set
on, a text gets an invisible marker (zero-width space / non-joiner, which the tokenizers drop:
same embedding, same lexical tokens, same retrieval), so no turn is answered from the
embedder's text cache as a repeated real message would not be. ``--repeat-texts`` turns the
markers off.

Runs, in this order, for each worker count:

* **unloaded**: ``--unloaded-turns`` turns one at a time (at most 20 s), round-robin over
  the open loop's sessions: latency and transport overhead with no queueing;
* **closed loop** (``--sessions`` S sessions, each sends ``--turns`` T turns back to back,
  the next as soon as the answer is in; no new turn after ``--closed-max-s``):
  ``turns_per_s`` is answered turns over the time from the first send to the last answer;
  ``steady_turns_per_s`` leaves out the first and last 10 % of answers (ramp up and tail).
  With ``--profile PATH`` py-spy samples worker 0 during this run (raw collapsed stacks to
  PATH, a summary in the JSON; see bench/profile_worker.md). It runs first because it leaves
  no backlog behind, where an open loop above capacity would;
* **open loop** (``--rate`` turns/s for ``--duration`` s, round-robin over
  ``--active-sessions`` sessions, so a session has a turn in flight rarely): requests go out
  on a fixed schedule whatever the answers do. ``e2e_ms`` is measured from just before the
  ``TurnRequested`` is produced to when its ``TurnResponse`` is consumed, in the bench
  process, on one clock. ``send_lag_ms`` says how late the sender was on its schedule (high
  values mean the bench itself was starved of CPU). Per-phase p50/p99 come from the
  response's ``timings_ms``. Turns not answered ``--drain`` s after the last send are
  ``unanswered`` (an overloaded pipeline is still on them); percentiles then cover only the
  answered ones, which the output says.

**Transport overhead per hop** of a turn = (e2e - the phases' own time) / 8. The phases' own
time is the sum of ``timings_ms`` along the critical path: every phase, plus only the slowest
of the four parallel ``retrieval.<type>`` entries. The 8 hops on the response path
(``bench.harness.pipeline.RESPONSE_PATH``, the catalog's topics; streams/pipeline/wiring.py,
session_agent.py, stage_agents.py): turn.requested -> session,
retrieval.requested.<type> -> retrieval, retrieval.results -> join, turn.retrieved -> decide,
turn.planned -> generate, turn.generated -> enforce, turn.completed -> session, and
turn.responses (the responses table's changelog) -> client. turn.context -> join runs in
parallel with the retrieval hops and is not counted; a turn whose answer P10 sends back for
regeneration makes 2 more hops but is still divided by 8 (with heuristic tasks it is rare;
the baseline reports ``regenerated_share``). ``timings_ms`` do not include time a record
waits in a topic or in an agent's queue, nor decode/encode or table writes outside the timed
blocks, so the overhead is transport *plus queueing plus serialization*: at low load it is
the hop cost, near saturation it is mostly queueing.

**Lost / duplicate**: after each run the bench waits for its unanswered turns (at most
``--full-drain`` s): one with no response once the pipeline group has consumed and
committed every record is ``lost`` (null, with ``still_unanswered``, if the wait ran out
first; bench/harness/streaming.py); a turn with more than one response record is a
duplicate (``TurnClient.response_counts``).

**Per turn**: ``records_per_turn`` (by topic) and ``records_per_turn_total`` of a run are
the records on its prefix's turn, retrieval and table-changelog topics over the turns it
sent, warm-up included (bench/harness/records.py, as bench/turn_trace.py counts them);
``worker_cpu_ms_per_turn`` of a stage is the workers' CPU time in it over its answered
turns, the baseline's ``cpu_ms_per_turn`` this process's. ``per_turn``: the closed loop's.

**Worker RSS**: VmRSS of each worker process (and any children) from /proc, sampled every
0.25 s; ``rss_mb.max`` over the whole life of the worker, ``rss_mb.open_loop`` the max
during and right after the open-loop run (when ``--active-sessions`` sessions are live).
``cpu_cores`` per process and run (worker, broker JVM, bench) is CPU time over wall time.

**Baseline** (``--no-baseline`` skips it): after the workers and the broker are stopped, the
same texts through ``run_turn`` in this process, no Kafka: ``unloaded``, ``open_loop`` (a FIFO
pool of ``--baseline-servers`` turns) and ``closed_loop`` (bench/harness/inprocess.py says
how each is measured).

``ratios`` are streaming / in-process: ``latency_p50`` (open-loop e2e p50 over the in-process
open-loop p50 at the same rate), ``latency_p50_vs_unloaded`` (over the in-process unloaded
p50: what the streaming path costs per turn against the bare work), ``unloaded_latency_p50``
(both unloaded), and ``throughput`` (closed-loop turns/s over turns/s);
``scale_2_over_1_workers`` is closed-loop turns/s with 2 workers over 1 (``--workers 1,2``).

Defaults take about 3 minutes on a 2-core machine (broker, workers and bench all on it) once
the pipeline keeps up with the rate; while it does not, the open loop's drain and an
overloaded baseline make it up to ~7 minutes. README figures:

    python bench/turns.py --json bench/results/turns.json            # 1 worker + baseline
    python bench/turns.py --workers 1,2 --no-baseline --json bench/results/turns_scale.json
    python bench/turns.py --rate 0 --no-baseline --unloaded-turns 50 \
        --profile /tmp/worker_profile.txt                            # bench/profile_worker.md

``python bench/turns.py --workers 1,2`` makes all of them in one run (about twice as long);
``python -m bench.turns`` is the same. The pieces other benches share live in
``bench/harness/`` (pipeline set-up, load generators, the timed streaming ask, /proc
watcher, profiler, printers).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/turns.py`: import `bench.*` from the repository
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import os
import platform
import time
from datetime import UTC, datetime
from typing import Any

from bench.harness.figures import summary
from bench.harness.inprocess import baseline_run
from bench.harness.load import (
    Texts,
    Turn,
    closed_loop,
    one_at_a_time,
    open_loop,
    throughput,
    turn_input,
)
from bench.harness.pipeline import (
    passed_through,
    pipeline_settings,
    prepare,
    private_cluster,
    quiet,
    wait_ready,
)
from bench.harness.procwatch import Watch
from bench.harness.profile import Profiler
from bench.harness.records import per_turn, read_records
from bench.harness.report import (
    load_average,
    lost_words,
    per_turn_figures,
    print_closed,
    print_open,
    print_profile,
    print_summary,
    print_unloaded,
    ratios,
    run_header,
    write_json,
)
from bench.harness.streaming import StreamTurns, pipeline_backlog
from schemas.events.turn_response import ResponseStatus
from streams.settings import Settings
from streams.turn_client import TurnClient
from streams.worker_process import WorkerProcess

SETTLE_S = 1.0
UNLOADED_S = 20.0
__all__ = ["Texts", "Turn", "closed_loop", "quiet", "summary", "turn_input"]
"""What other benches import from here (bench/llm_turns.py)."""


async def stream_run(
    base: Settings, workers: int, args: argparse.Namespace, root: Path, broker_pid: int | None
) -> dict[str, Any]:
    """One pipeline (a fresh topic prefix) with ``workers`` workers: open loop, closed loop."""
    run_dir = root / f"workers-{workers}"
    run_dir.mkdir()
    settings = pipeline_settings(
        base,
        "bench",
        partitions=args.partitions,
        analytics=not args.no_analytics,
        data_dir=run_dir / "w0",
    )
    result: dict[str, Any] = {"workers": workers, "topic_prefix": settings.topic_prefix}
    t0 = time.monotonic()
    await prepare(settings)
    procs = [
        WorkerProcess(
            settings.model_copy(update={"data_dir": run_dir / f"w{i}"}),
            run_dir / f"worker{i}.log",
        )
        for i in range(workers)
    ]
    texts = Texts.load(distinct=not args.repeat_texts)
    pids: dict[str, int] = {}
    if broker_pid is not None:
        pids["broker"] = broker_pid
    pids["bench"] = os.getpid()
    watch: Watch | None = None
    try:
        for i, proc in enumerate(procs):
            proc.start()
            pids[f"worker{i}"] = proc.pid
        watch = Watch(pids)
        watch.start()
        async with TurnClient(settings) as client, pipeline_backlog(settings) as backlog:
            sent = StreamTurns(client, backlog)
            ask = sent.ask
            await wait_ready(settings, procs)
            warm_sessions = max(1, min(args.warmup, 2 * args.partitions))
            warm, _ = await closed_loop(
                ask, texts, warm_sessions, -(-args.warmup // warm_sessions), "warm", 120.0
            )
            await wait_ready(settings, procs)
            result["ready_s"] = round(time.monotonic() - t0, 1)
            errors = sum(
                1 for t in warm if t.response and t.response.status is ResponseStatus.ERROR
            )
            result["warmup"] = {
                "turns": len(warm),
                "errors": errors,
                **await sent.settled(warm, args.full_drain),
            }
            print(
                f"[{workers} worker(s)] ready in {result['ready_s']} s ({len(warm)} warm-up "
                f"turns, {lost_words(result['warmup'])}, {errors} errors)",
                flush=True,
            )
            if not any(t.response and t.response.status is not ResponseStatus.ERROR for t in warm):
                raise RuntimeError(f"no warm-up turn was answered well; see {run_dir}")

            stage: dict[str, Any]
            if args.unloaded_turns > 0:
                stage = {}
                with watch.stage("unloaded", stage):
                    turns = await one_at_a_time(
                        ask,
                        texts,
                        args.unloaded_turns,
                        args.active_sessions,
                        args.drain,
                        UNLOADED_S,
                    )
                    await asyncio.sleep(SETTLE_S)
                stage["turns"] = len(turns)
                await sent.report(stage, turns, args.full_drain)
                result["unloaded"] = stage
                print_unloaded(f"[{workers} worker(s)] unloaded", stage)

            if args.sessions > 0 and args.turns > 0:
                stage = {"sessions": args.sessions, "turns_per_session": args.turns}
                profiler = None
                if args.profile is not None and workers == args.profile_workers:
                    profiler = Profiler(procs[0].pid, args.profile, args.profile_rate)
                    stage["profiled"] = "worker0"
                with watch.stage("closed_loop", stage):
                    turns, elapsed = await closed_loop(
                        ask,
                        texts,
                        args.sessions,
                        args.turns,
                        "closed",
                        args.drain,
                        args.closed_max_s,
                    )
                if profiler is not None:
                    profiler.stop()
                await asyncio.sleep(SETTLE_S)
                stage.update(throughput(turns, elapsed))
                await sent.report(stage, turns, args.full_drain)
                result["closed_loop"] = stage
                print_closed(f"[{workers} worker(s)] closed loop", stage)
                if profiler is not None:
                    result["profile"] = profiler.summary()
                    print_profile(result["profile"])

            if args.rate > 0:
                stage = {
                    "rate_per_s": args.rate,
                    "duration_s": args.duration,
                    "active_sessions": args.active_sessions,
                }
                with watch.stage("open_loop", stage):
                    turns, elapsed = await open_loop(
                        ask,
                        texts,
                        args.rate,
                        args.duration,
                        args.active_sessions,
                        "open",
                        args.drain,
                    )
                    await asyncio.sleep(SETTLE_S)
                stage["sent"] = len(turns)
                stage["sessions_touched"] = min(len(turns), args.active_sessions)
                stage["achieved_rate_per_s"] = round(len(turns) / args.duration, 2)
                await sent.report(stage, turns, args.full_drain)
                result["open_loop"] = stage
                print_open(f"[{workers} worker(s)] open loop", stage)
    finally:
        if watch is not None:
            await watch.stop()
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))
    assert watch is not None
    result["rss_mb"] = {n: watch.rss_mb(n) for n in pids if n.startswith("worker")}
    result.update(per_turn((await read_records(settings, set()))[1], sent.sent))
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        **run_header(args),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "env": passed_through(),
        "streaming": [],
    }
    busy = os.getloadavg()[0]
    if busy > 0.5 * (os.cpu_count() or 1):
        print(f"note: the machine is already busy (load {busy:.1f}); see cpu_cores.others")
    if args.workers:
        await streaming(args, result)
    if not args.no_baseline:
        result["baseline"] = await baseline_run(args)
    result["per_turn"] = per_turn_figures(result)
    result["ratios"] = ratios(result)
    result["loadavg_at_end"] = load_average()
    return result


async def streaming(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The broker (or ``--bootstrap``), then one pipeline per worker count."""
    async with private_cluster("bench-turns", bootstrap=args.bootstrap, keep=args.keep) as cluster:
        base = cluster.base
        result["settings"] = {
            "bootstrap": base.bootstrap_servers,
            "partitions": args.partitions,
            "worker_concurrency": base.worker_concurrency,
            "analytics": not args.no_analytics,
            "webhooks": False,
        }
        broker_pid = cluster.broker_pid()
        for workers in args.workers:
            result["streaming"].append(
                await stream_run(base, workers, args, cluster.root, broker_pid)
            )


def _workers(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(c < 0 for c in counts):
        raise argparse.ArgumentTypeError("worker counts: 1, 2, or 1,2 (0: baseline only)")
    return [c for c in counts if c > 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", type=_workers, default=[1], help="1, 2, or 1,2 (one run each)")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--bootstrap", help="an existing cluster instead of a private broker")
    parser.add_argument("--rate", type=float, default=50.0, help="open loop: turns/s (0: skip)")
    parser.add_argument("--duration", type=float, default=30.0, help="open loop: seconds")
    parser.add_argument("--active-sessions", type=int, default=1000, help="open loop: sessions")
    parser.add_argument("--sessions", type=int, default=50, help="closed loop: S (0: skip)")
    parser.add_argument("--turns", type=int, default=20, help="closed loop: T per session")
    parser.add_argument(
        "--closed-max-s", type=float, default=45.0, help="closed loop: no new turn after this"
    )
    parser.add_argument("--warmup", type=int, default=100, help="turns before measuring")
    parser.add_argument("--drain", type=float, default=30.0, help="seconds a turn may take")
    parser.add_argument(
        "--full-drain", type=float, default=300.0, help="at most this long for the unanswered"
    )
    parser.add_argument("--no-analytics", action="store_true", help="workers without ClickHouse")
    parser.add_argument("--no-baseline", action="store_true", help="skip the in-process runs")
    parser.add_argument(
        "--baseline-servers", type=int, default=4, help="in-process open loop: turns at once"
    )
    parser.add_argument(
        "--unloaded-turns", type=int, default=100, help="turns one at a time (streaming: <= 20 s)"
    )
    parser.add_argument("--repeat-texts", action="store_true", help="no invisible markers")
    parser.add_argument("--profile", type=Path, help="py-spy worker 0 in the closed loop")
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument(
        "--profile-workers", type=int, default=1, help="profile in the run with this many"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (worker logs)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    result = asyncio.run(bench(args))
    print_summary(result)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
