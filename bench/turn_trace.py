"""Where one turn's time goes between records: each turn's records on every topic, in order.

    python bench/turn_trace.py [--turns 60] [--sessions 20] [--slowest 4] [--json PATH]

Starts its own broker and one worker (analytics on, webhooks off, like ``bench/turns.py``),
sends ``--turns`` turns one at a time round-robin over ``--sessions`` sessions, then reads
every pipeline topic (the turn topics, retrieval topics and table changelogs) from the start
and groups the records by turn id. Prints and writes:

* ``records_per_turn``: every record on each traced topic over every turn sent (warm-up
  included): what a turn costs the broker;
* ``e2e_ms``: request sent -> response received, as the client saw it;
* the ``--slowest`` turns' timelines: each record's producer timestamp (ms resolution)
  after the request was sent, and the gap to the record before it. A hop that waits shows
  as one large gap (this is how the 100 ms fetch stall of ``streams/pipeline/faust_fetch.py``
  was found).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/turn_trace.py`: import `bench.*` from the repository
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

from bench.harness.figures import summary
from bench.harness.load import Texts, turn_input
from bench.harness.pipeline import pipeline_settings, prepare, private_cluster, wait_ready
from bench.harness.records import per_turn, read_records
from streams.settings import Settings
from streams.turn_client import TurnClient
from streams.worker_process import WorkerProcess

WARM_TURNS = 10


async def run_turns(settings: Settings, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Turn id -> (sent at, epoch ms; e2e ms), one turn at a time."""
    texts = Texts.load()
    sent: dict[str, tuple[float, float]] = {}
    async with TurnClient(settings) as client:
        for i in range(WARM_TURNS):
            await client.response(await client.send(turn_input(f"warm-{i}", texts.next())), 60)
        for i in range(args.turns):
            t0 = time.time()
            turn_id = await client.send(turn_input(f"trace-{i % args.sessions}", texts.next()))
            await client.response(turn_id, 60)
            sent[turn_id] = (t0 * 1000, (time.time() - t0) * 1000)
    return sent


def report(
    sent: dict[str, tuple[float, float]],
    records: dict[str, list[tuple[int, str]]],
    counts: Counter[str],
    slowest: int,
) -> dict[str, Any]:
    n = len(sent)
    turns = n + WARM_TURNS
    result: dict[str, Any] = {
        "turns": n,
        "e2e_ms": summary([e2e for _, e2e in sent.values()]),
        **per_turn(counts, turns),
        "slowest": [],
    }
    print(f"{n} turns one at a time: e2e {result['e2e_ms']}")
    print(f"records per turn: {result['records_per_turn_total']}")
    for topic, count in result["records_per_turn"].items():
        print(f"  {count:6.2f}  {topic}")
    for turn_id in sorted(sent, key=lambda t: -sent[t][1])[:slowest]:
        t0, e2e = sent[turn_id]
        print(f"turn {turn_id}: e2e {e2e:.0f} ms (ms after the request was sent, gap)")
        steps: list[dict[str, Any]] = []
        previous = t0
        for ts, topic in sorted(records.get(turn_id, [])):
            steps.append({"at_ms": round(ts - t0), "gap_ms": round(ts - previous), "topic": topic})
            print(f"  +{ts - t0:5.0f} (+{ts - previous:4.0f})  {topic}")
            previous = ts
        result["slowest"].append({"turn_id": turn_id, "e2e_ms": round(e2e, 1), "records": steps})
    return result


async def trace(args: argparse.Namespace) -> dict[str, Any]:
    async with private_cluster("trace") as cluster:
        settings = pipeline_settings(cluster.base, "trace")
        worker = WorkerProcess(
            settings.model_copy(update={"data_dir": cluster.root / "w0"}), cluster.root / "w0.log"
        )
        try:
            await prepare(settings)
            worker.start()
            await wait_ready(settings, [worker])
            sent = await run_turns(settings, args)
            records, counts = await read_records(settings, set(sent))
            return report(sent, records, counts, args.slowest)
        finally:
            worker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--slowest", type=int, default=4, help="timelines to print")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    result = asyncio.run(trace(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
