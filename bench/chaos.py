"""Soak with faults: a steady load of conversations while workers are SIGKILLed and restarted
at random, and the broker is stopped and restarted once; then every turn is counted and every
session's state is compared with a replay of its turns.

    python bench/chaos.py [--duration 240] [--rate 4] [--sessions 24] [--workers 2]
                          [--partitions 8] [--kill-every 20:45] [--restart-after 1:5]
                          [--broker-at 0.5] [--broker-down 5] [--no-broker-restart]
                          [--seed 7] [--keep] [--json PATH] [--analytics]
                          [--cluster N] [--node-down 5]

Setup (loopback only): a private broker on free ports, its data dir on disk in a temporary
directory, a fresh topic prefix with ``--partitions`` partitions, the example pack published,
``--workers`` processes of ``python -m streams.cli worker`` (each with its own data dir;
analytics and webhooks off) and, with ``--analytics``, one ``worker --role analytics``
process, the one writer of the one analytics store, as production workers share one
ClickHouse (bench/chaos_workers.py); ready when their consumer groups are stable.

**Load.** ``--sessions`` conversation slots; each runs conversations one after another, a
conversation being one of ``bench.chaos_soak.SCRIPTS`` sent turn by turn (the next message once the
answer is in, as a customer types), each by a new anonymous web-chat customer. Sends are
paced to at most ``--rate`` turns/s in total. A turn not answered within ``--turn-timeout``
ends its conversation (counted as ``stalled``; it may still be answered before the end).

**Faults.** After ``--calm`` seconds and until ``--calm`` seconds before the end, each
worker (the analytics process too) is SIGKILLed after a random ``--kill-every`` interval and
started again after a random ``--restart-after`` delay. At ``--broker-at`` of the duration
the broker is stopped (SIGTERM: controlled shutdown) and started again ``--broker-down``
seconds later on the same data dir; no worker is killed from 15 s before the broker's stop
until 15 s after it is back, so the running workers ride the outage out. A worker that exits
on its own is started again and counted in ``unplanned_exits``.

**Counts** (after the load, ``--drain`` seconds for late answers and 3 s of settling; the
judges are in bench/chaos_judge.py): ``sent`` turns, ``received`` turns answered OK,
``error_responses`` turns answered with an ERROR (not received), ``lost`` turns with no
response, ``duplicates`` = response records beyond the first for a turn.
``recovery`` per fault: the turns in flight at the fault, and ``in_flight_answered_s``, the
time from the fault until the last of them was answered (what a customer caught by the
fault waited); ``first_answer_s``, until the next answer from any turn.

**State** (``state_mismatches``): the same conversations are replayed, turn by turn with the
same turn ids, through ``processors.turn.in_process.run_turn`` (the same processors over
in-memory state, no Kafka, no faults). For every turn, the state the streaming turn started
from (its TurnRecord's session state and customer data: turn count, recent messages,
scenarios and steps, rule fire counts, variable values; timestamps left out) must equal the
replay's. A session counts once however many of its turns differ; ``mismatch_examples``
shows the first differences. This checks the state after every turn of a conversation but
its last. The workers run with a retrieval deadline of ``--retrieval-deadline`` s (default
30 s, not 0.5 s) so that a retrieval slowed by a restart is waited for instead of becoming a
gap, which would change the turn legitimately (gaps are tested in tests/test_turn_stages.py);
``retrieval_gaps`` counts the turns that still had one. Memories are not part of the
replay (it runs no memory ingestion); they do not enter the compared state.

**Responses** (``response_mismatches``): each replayed turn's TurnResponse against the one
the customer got, on what a customer sees (text, status, error, outcome, session, address,
coalesced turns; not timings).

**Analytics** (``--analytics``): once the analytics group has no lag, the workers stop and
the analytics process's embedded store is read; every received turn must have exactly one
``turns`` row (``FINAL``) by (tenant, session, turn id): ``analytics_missing``,
``analytics_duplicates``, ``analytics_extra``. Its SIGKILLs make it read again what it had
not committed: ``analytics_unmerged_rows`` counts the rows the store holds twice until its
merge (no analyst query sees them; FINAL keeps one).

The exit status is 1 when any judge fails (``verdict`` in the summary names which).

**``--cluster N``** (N > 1): the soak runs on a private N-node cluster (RF 3,
``min.insync.replicas=2``) and, instead of the broker restart, SIGKILLs the leader of a
request-topic partition, the active controller and the group coordinator, then restarts every
node in turn; ``broker_kills`` in the JSON lists each (bench/chaos_cluster.py).

Defaults take about 6 minutes on a 2-core machine. ``python -m bench.chaos`` is the same;
the load and faults are in bench/chaos_soak.py, the state replay in bench/chaos_replay.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/chaos.py`: import `bench.*` from the repository
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import contextlib
import json
import logging
import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bench.chaos_cluster import NodeFaults, private_node_cluster
from bench.chaos_judge import (
    dump_analytics,
    expected_analytics,
    failures,
    judge_analytics,
    judge_answers,
    judge_responses,
)
from bench.chaos_replay import replay
from bench.chaos_soak import Soak
from bench.chaos_workers import group_members, wait_ready, worker_plan
from bench.harness.figures import summary
from bench.harness.pipeline import Cluster, pipeline_settings, prepare, private_cluster
from schemas.events.turn_response import TurnResponse
from sinks.analytics.store import chdb_path
from streams.analytics_consumer import group_id as analytics_group
from streams.consumer_lag import LagReader
from streams.local_kafka import LocalCluster, LocalKafka
from streams.settings import Settings
from streams.turn_client import TurnClient
from streams.worker_process import WorkerProcess

SETTLE_S = 3.0


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    if args.cluster > 1:  # bench/chaos_cluster.py: N nodes, node kills for the broker restart
        async with private_node_cluster(args.cluster, keep=args.keep) as nodes:
            return await _soak(args, nodes, nodes.nodes)
    async with private_cluster("chaos", keep=args.keep) as cluster:
        return await _soak(args, cluster)


async def _soak(
    args: argparse.Namespace, cluster: Cluster, nodes: LocalCluster | None = None
) -> dict[str, Any]:
    root, broker = cluster.root, cluster.broker
    kafka = broker or nodes
    assert kafka is not None  # a private broker (restarted) or cluster (nodes killed)
    settings = pipeline_settings(
        cluster.base, "chaos", partitions=args.partitions, analytics=args.analytics
    )
    worker_env = {"TURNSTREAM_PHASES__RETRIEVAL__TIMEOUT_S": str(args.retrieval_deadline)}
    soak = Soak(args, settings, broker or LocalKafka(settings))  # the broker: restarted
    node_faults = NodeFaults(soak, nodes, settings) if nodes is not None else None
    plan = worker_plan(args.workers, args.analytics)  # bench/chaos_workers.py
    soak.names = [planned.name for planned in plan]
    soak.workers = [
        WorkerProcess(
            planned.settings(settings, root),
            root / f"{planned.name}.log",
            role=planned.role.value,
            env={**worker_env, **planned.env()},
            log_level=args.worker_log_level,
        )
        for planned in plan
    ]
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
    }
    tasks: list[asyncio.Task[None]] = []
    try:
        await prepare(settings)
        for worker in soak.workers:
            worker.start()
        await wait_ready(settings, group_members(plan, settings, root), soak.workers)
        print(f"{', '.join(soak.names)} ready; load for {args.duration:.0f} s at <= {args.rate}/s")
        async with TurnClient(settings, records=True) as client:
            soak.t0 = soak.now()
            end = soak.t0 + args.duration
            tasks = [
                asyncio.create_task(soak.supervise()),
                asyncio.create_task(soak.watch_answers(client)),
            ]
            faults = [
                asyncio.create_task(soak.kill_loop(i, soak.t0 + args.calm, end - args.calm))
                for i in range(len(soak.workers))  # the analytics process too
            ]
            if node_faults is not None:
                faults.append(
                    asyncio.create_task(
                        node_faults.run(soak.t0 + args.calm, end - args.calm, args.node_down)
                    )
                )
            elif not args.no_broker_restart:
                faults.append(
                    asyncio.create_task(
                        soak.broker_restart(soak.t0 + args.broker_at * args.duration)
                    )
                )
            await asyncio.gather(*(soak.slot(client, n, end) for n in range(args.sessions)))
            loaded_s = soak.elapsed()
            await asyncio.gather(*faults)
            drain_until = soak.now() + args.drain
            while soak.in_flight() and soak.now() < drain_until:
                await asyncio.sleep(0.5)
            await asyncio.sleep(SETTLE_S)
            counts = client.response_counts
            responses = client.responses()
            seen = client.records()
            records = {t: seen[t] for t in soak.turns if t in seen}
            answers = judge_answers(soak.turns, responses, counts)
            result.update(
                {
                    **answers,
                    "stalled": soak.stalled,
                    "send_retries": soak.send_retries,
                    "conversations": len(soak.conversations),
                    "load_s": round(loaded_s, 1),
                    "turns_per_s": round(answers["received"] / max(loaded_s, 1e-9), 2),
                    "e2e_ms": summary(
                        [
                            (t.answered_at - t.sent_at) * 1000
                            for t in soak.turns.values()
                            if t.answered_at is not None
                        ],
                        1,
                    ),
                    "recovery": soak.recovery(),
                    "broker_kills": node_faults.report() if node_faults else [],
                    "unplanned_exits": soak.unplanned_exits,
                    "completed_records_per_turn": dict(
                        Counter(client.record_counts[t] for t in soak.turns)
                    ),
                    "retrieval_gaps": sum(1 for r in records.values() if r.context.retrieval_gaps),
                }
            )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks = []
        if args.analytics:
            result["analytics_drain_s"] = await analytics_drained(settings, args.drain)
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in soak.workers))
        await asyncio.to_thread(kafka.down)
        if args.analytics:
            stores = [  # the analytics process's one store
                await asyncio.to_thread(dump_analytics, chdb_path(w.settings), database)
                for w in soak.workers
                if w.settings.analytics.enabled
                for database in [w.settings.analytics.database]
            ]
            result.update(
                judge_analytics(
                    expected_analytics(soak.turns, responses),
                    [[tuple(k) for k in s["final"]] for s in stores],
                    [[tuple(k) for k in s["raw"]] for s in stores],
                )
            )
            result["analytics_errors"] = [s["error"] for s in stores if "error" in s]
        print("replaying every conversation in-process ...")
        replayed: dict[str, TurnResponse] = {}
        result.update(await replay(soak.conversations, records, replayed))
        result.update(judge_responses(responses, replayed))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in soak.workers))
    result["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


async def analytics_drained(settings: Settings, timeout: float) -> float | None:
    """Seconds until the workers' analytics group has no lag (every completed turn written
    and committed), None if it still had some after ``timeout``."""
    reader = LagReader(settings)
    await reader.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        while loop.time() - start < timeout:
            with contextlib.suppress(Exception):
                lag = await reader.lag(analytics_group(settings))
                if lag and not any(lag.values()):
                    return round(loop.time() - start, 1)
            await asyncio.sleep(1.0)
        return None
    finally:
        await reader.stop()


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    values = (float(low), float(high or low))
    if values[0] < 0 or values[1] < values[0]:
        raise argparse.ArgumentTypeError("LOW:HIGH seconds, 0 <= LOW <= HIGH")
    return values


def print_result(result: dict[str, Any]) -> None:
    print("\nresult")
    keys = ["sent", "received", "error_responses", "lost", "duplicates", "state_mismatches"]
    keys += ["response_mismatches"]
    if "analytics_missing" in result:
        keys += ["analytics_missing", "analytics_duplicates", "analytics_extra"]
    for key in keys:
        print(f"  {key}: {result[key]}")
    e2e = result["e2e_ms"]
    print(
        f"  {result['turns_per_s']} turns/s over {result['load_s']} s; e2e p50/p99/max "
        f"{e2e.get('p50')}/{e2e.get('p99')}/{e2e.get('max')} ms; stalled {result['stalled']}; "
        f"send retries {result['send_retries']}; unplanned exits {len(result['unplanned_exits'])}"
    )
    print(
        f"  state compared on {result['state_compared_turns']} turns of "
        f"{result['state_compared_sessions']} sessions; answers differing from the replay: "
        f"{result['answers_differ']}; turns with a retrieval gap: {result['retrieval_gaps']}"
    )
    print(
        f"  responses compared with the replay's: {result['response_compared']}, differing"
        f" {result['response_mismatches']}"
    )
    if "analytics_missing" in result:
        print(
            f"  analytics: {result['analytics_rows']} rows (FINAL, per store"
            f" {result['analytics_rows_per_store']}) for {result['analytics_expected']} received"
            f" turns; in several stores {result['analytics_in_several_stores']}; unmerged"
            f" {result['analytics_unmerged_rows']}; drained after {result['analytics_drain_s']} s"
        )
        for error in result["analytics_errors"]:
            print(f"  analytics store not read: {error}")
    bad = failures(result)
    print(f"  verdict: {'FAIL: ' + '; '.join(bad) if bad else 'clean'}")
    for fault in result["recovery"]:
        print(
            f"  {fault['kind']} {fault['target']} at {fault['at_s']} s (down {fault['down_s']} s):"
            f" {fault['in_flight']} in flight, all answered after {fault['in_flight_answered_s']}"
            f" s, next answer after {fault['first_answer_s']} s"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=4.0, help="turns/s at most, all sessions")
    parser.add_argument("--sessions", type=int, default=24, help="conversations at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--kill-every", type=_range, default=(20.0, 45.0), help="LOW:HIGH s")
    parser.add_argument("--restart-after", type=_range, default=(1.0, 5.0), help="LOW:HIGH s")
    parser.add_argument("--calm", type=float, default=20.0, help="no kill this close to the ends")
    parser.add_argument("--broker-at", type=float, default=0.5, help="fraction of the duration")
    parser.add_argument("--broker-down", type=float, default=5.0, help="seconds stopped")
    parser.add_argument("--no-broker-restart", action="store_true")
    parser.add_argument(
        "--cluster", type=int, default=1, metavar="N", help="N > 1: N-node cluster, node kills"
    )
    parser.add_argument("--node-down", type=float, default=5.0, help="s a killed node is down")
    parser.add_argument("--turn-timeout", type=float, default=180.0)
    parser.add_argument("--drain", type=float, default=180.0, help="seconds for late answers")
    parser.add_argument("--retrieval-deadline", type=float, default=30.0)
    parser.add_argument(
        "--analytics", action="store_true", help="one analytics process writes ClickHouse"
    )
    parser.add_argument("--worker-log-level", default="WARNING", help="e.g. INFO (--keep)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep logs and data")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # expected while the broker is down

    result = asyncio.run(soak(args))
    print_result(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 1 if failures(result) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
