"""Worker memory and restart time against the number of sessions the tables hold.

``python -m bench.state_growth [--sessions 1000,10000,100000] [--json out.json]``

How the sessions get there (say it, it matters): driving 100k turns through the pipeline
takes hours on a small machine, so the bench drives **one real turn** through a worker (a
visitor with a gateway-given customer and session id), reads back what that turn wrote to
each changelogged table (gate, session state, customer data, response, seen turn, retrieval
join), and writes N copies of those records, re-keyed per session, to the changelog
topics: the bytes the worker itself wrote, in the partitions it would have written them to.
A real worker (``turnstream worker`` child process) then starts on them; the bench times its
first answer to a probe turn sent at start (restart-to-ready: it includes the table
recovery) and reads its resident memory (``/proc``, the process and its children) once it
answered and settled.

For each N (fresh sessions each step; the previous step's were expired; steps run in the
order given), in order:

* ``memory`` (the largest step, or every step with ``--memory-every-step``): the in-memory
  store (every start replays whole changelogs);
* ``rocksdb cold``: RocksDB on an empty data dir (the changelogs recovered into it);
* ``rocksdb restart`` (the largest step, or every step with ``--all-runs``): the same data dir
  again (only the changelogs' tail is read);
* ``rocksdb expiry``: the same, with a session TTL shorter than the sessions' age: the sweep
  deletes them (tombstones), measured once the worker logged the sweep;
* ``rocksdb expiry restart`` (``--all-runs``): started again after that (the tail now holds
  the tombstones).

Figures are noisy on a shared machine: run it alone, compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bench.harness.pipeline import pipeline_settings, prepare, private_cluster, quiet
from bench.harness.report import run_header, write_json
from schemas.domain.turn_input import Channel, TurnInput
from schemas.events.turn_response import ResponseStatus
from streams.settings import Settings
from streams.topics import (
    CUSTOMER_DATA_CHANGELOG,
    RETRIEVAL_JOIN_CHANGELOG,
    SESSION_GATE_CHANGELOG,
    SESSION_STATE_CHANGELOG,
    TURN_RESPONSES,
    TURNS_SEEN_CHANGELOG,
    TopicSpec,
)
from streams.turn_client import TurnClient
from streams.worker_process import WorkerProcess

TENANT, AGENT = "acme-shop", "support"
DIGITS = 9
ZERO = "0" * DIGITS
SEED = {
    "channel": f"sgv-{ZERO}",
    "customer": f"sgc-{ZERO}",
    "session": f"sgs-{ZERO}",
    "turn": f"sgt-{ZERO}",
}
"""The seed turn's ids: fixed width, so a copy's ids replace them byte for byte (Avro
strings are length-prefixed; same length, same framing)."""
TABLES = [
    SESSION_GATE_CHANGELOG,
    SESSION_STATE_CHANGELOG,
    CUSTOMER_DATA_CHANGELOG,
    TURN_RESPONSES,
    TURNS_SEEN_CHANGELOG,
    RETRIEVAL_JOIN_CHANGELOG,
]
PROBE_TIMEOUT_S = 900.0
SETTLE_S = 5.0
SWEEP_LINE = re.compile(r"idle-state sweep: Swept\(sessions=(\d+)")


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(
                int(line.split()[1]) * 1024
                for line in status.splitlines()
                if line.startswith("VmRSS")
            )
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, StopIteration):
            continue
        todo.extend(int(c) for c in children)
    return total


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


@dataclass
class Sample:
    """The records one real turn wrote: ``(topic spec, key, value)``."""

    records: list[tuple[TopicSpec, bytes, bytes]]

    def size(self) -> int:
        return sum(len(k) + len(v) for _, k, v in self.records)


async def read_sample(settings: Settings) -> Sample:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    found: list[tuple[TopicSpec, bytes, bytes]] = []
    try:
        for spec in TABLES:
            topic = spec.name(settings.topic_prefix)
            parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            last: dict[bytes, bytes | None] = {}
            marks = [seed.encode() for seed in SEED.values()]
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        if r.key is not None and any(m in r.key for m in marks):
                            last[r.key] = r.value
            found += [(spec, k, v) for k, v in last.items() if v is not None]
    finally:
        await consumer.stop()
    return Sample(found)


def copy_of(raw: bytes, n: int) -> bytes:
    digits = f"{n:0{DIGITS}d}".encode()
    for seed in SEED.values():
        raw = raw.replace(seed.encode(), seed.encode()[:-DIGITS] + digits)
    return raw


async def write_sessions(settings: Settings, sample: Sample, first: int, count: int) -> float:
    """Copies ``first .. first+count-1`` of the sample, each in the partition of its session
    key (where the worker writes every table of a session); returns the seconds taken."""
    partitioner = DefaultPartitioner()
    parts = list(range(settings.partitions))
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        linger_ms=20,
        max_batch_size=1024 * 1024,
        compression_type=None,
    )
    await producer.start()
    t0 = time.monotonic()
    try:
        pending = []
        for n in range(first, first + count):
            session_key = copy_of(f"{TENANT}:{Channel.WEBCHAT.value}:{SEED['channel']}".encode(), n)
            partition = int(partitioner(session_key, parts, parts))
            for spec, key, value in sample.records:
                topic = spec.name(settings.topic_prefix)
                pending.append(
                    await producer.send(
                        topic, key=copy_of(key, n), value=copy_of(value, n), partition=partition
                    )
                )
            if len(pending) > 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - t0


def probe_input(tag: str) -> TurnInput:
    return TurnInput(
        tenant_id=TENANT,
        agent_id=AGENT,
        channel=Channel.WEBCHAT,
        channel_id=f"probe-{tag}",
        message="where is my order A-10023?",
    )


async def run_worker(
    settings: Settings,
    log: Path,
    *,
    tag: str,
    wait_sweep: bool = False,
) -> dict[str, Any]:
    """Start a worker, time its first answer, read its memory; stop it."""
    worker = WorkerProcess(settings, log, log_level="INFO")
    started = time.monotonic()
    offset = log.stat().st_size if log.exists() else 0
    worker.start()
    try:
        async with TurnClient(settings) as client:
            turn_id = await client.send(probe_input(f"{tag}-{uuid.uuid4().hex[:6]}"))
            answer = await client.response(turn_id, timeout=PROBE_TIMEOUT_S)
        ready_s = time.monotonic() - started
        swept = None
        if wait_sweep:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                text = log.read_bytes()[offset:].decode(errors="replace")
                counts = [int(m) for m in SWEEP_LINE.findall(text)]
                if counts and sum(counts) > 0:
                    swept = sum(counts)
                    await asyncio.sleep(SETTLE_S)  # a second sweep finds nothing left
                    break
                await asyncio.sleep(1.0)
        await asyncio.sleep(SETTLE_S)
        rss = rss_bytes(worker.pid)
    finally:
        worker.stop()
    return {
        "ready_s": round(ready_s, 1),
        "answer": answer.status.value,
        "ok": answer.status is ResponseStatus.OK,
        "rss_mib": round(rss / 2**20, 1),
        "swept_sessions": swept,
        "faust_dir_mib": round(dir_bytes(settings.data_dir / "faust") / 2**20, 1),
    }


async def seed(settings: Settings, root: Path) -> Sample:
    """One real turn of the seed visitor, and what it wrote."""
    worker = WorkerProcess(settings, root / "seed.log")
    worker.start()
    try:
        async with TurnClient(settings) as client:
            given = probe_input("seed").model_copy(
                update={
                    "channel_id": SEED["channel"],
                    "customer_id": SEED["customer"],
                    "session_id": SEED["session"],
                }
            )
            turn_id = await client.send(given, turn_id=SEED["turn"])
            answer = await client.response(turn_id, timeout=PROBE_TIMEOUT_S)
            assert answer.status is ResponseStatus.OK, answer
    finally:
        worker.stop()
    return await read_sample(settings)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    steps = [int(s) for s in args.sessions.split(",")]
    result: dict[str, Any] = {"header": run_header(args), "steps": []}
    async with private_cluster("state-growth", keep=args.keep) as cluster:
        base = pipeline_settings(cluster.base, "sg", analytics=False, partitions=args.partitions)
        settings = base.model_copy(
            update={"data_dir": cluster.root / "seed", "table_store": "memory"}
        )
        with quiet("aiokafka.consumer.fetcher"):
            await prepare(settings)
        sample = await seed(settings, cluster.root)
        per_table: dict[str, int] = defaultdict(int)
        for spec, key, value in sample.records:
            per_table[spec.name("")] += len(key) + len(value)
        result["sample_bytes_per_session"] = dict(per_table)
        print(f"one session's records: {sample.size()} bytes {dict(per_table)}")
        first = 1
        for count in steps:
            write_s = await write_sessions(settings, sample, first, count)
            first += count
            print(f"{count} sessions written to the changelogs in {write_s:.1f} s")
            step: dict[str, Any] = {"sessions": count, "write_s": round(write_s, 1)}
            rocks_dir = cluster.root / f"rocks-{count}"

            def on(store: str, data_dir: Path, ttl: float = 0.0) -> Settings:
                return settings.model_copy(
                    update={
                        "table_store": store,
                        "data_dir": data_dir,
                        "session_idle_ttl_s": ttl,
                        "customer_data_idle_ttl_s": ttl,
                    }
                )

            log = cluster.root / f"worker-{count}.log"
            full = count == max(steps) or args.all_runs
            runs = []
            if full or args.memory_every_step:
                runs.append(("memory", on("memory", cluster.root / f"mem-{count}"), False))
            runs.append(("rocksdb cold", on("rocksdb", rocks_dir), False))
            if full:
                runs.append(("rocksdb restart", on("rocksdb", rocks_dir), False))
            runs.append(("rocksdb expiry", on("rocksdb", rocks_dir, args.ttl), True))
            if args.all_runs:
                runs.append(("rocksdb expiry restart", on("rocksdb", rocks_dir, args.ttl), False))
            if args.runs:
                wanted = {r.strip() for r in args.runs.split(",")}
                runs = [r for r in runs if r[0] in wanted]
            for name, run_settings, wait_sweep in runs:
                figures = await run_worker(
                    run_settings,
                    log,
                    tag=f"{count}-{name.replace(' ', '-')}",
                    wait_sweep=wait_sweep,
                )
                print(f"  {count:>7} sessions, {name:<24} {figures}")
                step[name] = figures
            result["steps"].append(step)
            if args.json:
                write_json(args.json, result)
    return result


def print_table(result: dict[str, Any]) -> None:
    names = [
        "memory",
        "rocksdb cold",
        "rocksdb restart",
        "rocksdb expiry",
        "rocksdb expiry restart",
    ]
    print("\nworker RSS MiB / first answer after start s")
    print(f"{'sessions':>9} " + " ".join(f"{n:>24}" for n in names))
    for step in sorted(result["steps"], key=lambda s: int(s["sessions"])):
        cells = [
            f"{step[n]['rss_mib']:>9} / {step[n]['ready_s']:>6}" if n in step else "-"
            for n in names
        ]
        print(f"{step['sessions']:>9} " + " ".join(f"{c:>24}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1000,10000,100000")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument(
        "--ttl", type=float, default=20.0, help="the expiry runs' session TTL, seconds"
    )
    parser.add_argument(
        "--all-runs",
        action="store_true",
        help="every run at every step (by default memory and the restart only at the largest "
        "step), and a restart after expiry",
    )
    parser.add_argument(
        "--memory-every-step",
        action="store_true",
        help="the memory store at every step (by default only at the largest)",
    )
    parser.add_argument(
        "--runs", default="", help="only these runs (comma-separated names, e.g. 'rocksdb expiry')"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(run(args))
    print_table(result)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    print(
        json.dumps(
            {
                s["sessions"]: {k: v for k, v in s.items() if k != "sessions"}
                for s in result["steps"]
            },
            default=str,
        )[:2000]
    )


if __name__ == "__main__":
    main()
