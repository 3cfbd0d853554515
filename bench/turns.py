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
  ``unanswered`` (and ``lost``); percentiles then cover only the answered ones, which the
  output says.

**Transport overhead per hop** of a turn = (e2e - the phases' own time) / 8. The phases' own
time is the sum of ``timings_ms`` along the critical path: every phase, plus only the slowest
of the four parallel ``retrieval.<type>`` entries. The 8 hops on the response path
(streams/pipeline/wiring.py, session_agent.py, stage_agents.py): turn.requested -> session,
retrieval.requested.<type> -> retrieval, retrieval.results -> join, turn.retrieved -> decide,
turn.planned -> generate, turn.generated -> enforce, turn.completed -> session, and
turn.responses (the responses table's changelog) -> client. turn.context -> join runs in
parallel with the retrieval hops and is not counted; a turn whose answer P10 sends back for
regeneration makes 2 more hops but is still divided by 8 (with heuristic tasks it is rare;
the baseline reports ``regenerated_share``). ``timings_ms`` do not include time a record
waits in a topic or in an agent's queue, nor decode/encode or table writes outside the timed
blocks, so the overhead is transport *plus queueing plus serialization*: at low load it is
the hop cost, near saturation it is mostly queueing.

**Lost / duplicate**: after each run and 1 s of settling, a turn with no response is lost,
a turn with more than one response record is a duplicate (``TurnClient.response_counts``).

**Worker RSS**: VmRSS of each worker process (and any children) from /proc, sampled every
0.25 s; ``rss_mb.max`` over the whole life of the worker, ``rss_mb.open_loop`` the max
during and right after the open-loop run (when ``--active-sessions`` sessions are live).
``cpu_cores`` per process and run (worker, broker JVM, bench) is CPU time over wall time.

**Baseline** (``--no-baseline`` skips it): after the workers and the broker are stopped, the
same texts through ``processors.turn.in_process.run_turn`` in this process (same processors
and settings, in-memory state, Qdrant in memory, no Kafka):

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

``python bench/turns.py --workers 1,2`` makes all of them in one run (about twice as long).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from processors.pack import load_pack
from processors.turn.deps import TurnDeps
from schemas.domain.turn_input import Channel, TurnInput
from schemas.events.turn_response import ResponseStatus, TurnResponse
from schemas.pack.agent_pack import AgentPack
from streams.analytics_consumer import group_id as analytics_group
from streams.local_kafka import LocalKafka, private_broker_settings
from streams.pack_publisher import publish_pack
from streams.pipeline.runtime import one_intra_op_thread
from streams.settings import Settings, load_settings
from streams.topic_admin import ensure_topics
from streams.topics import MEMORY_GROUP, pipeline_group
from streams.turn_client import TurnClient
from streams.worker import freeze_startup_objects
from streams.worker_process import SET_BY_WORKER_ENV, WorkerProcess, rss_bytes, wait_for_groups

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PACK = REPO / "packs" / "acme-shop" / "support"
TENANT, AGENT = "acme-shop", "support"
MESSAGES = REPO / "bench" / "data" / "acme_retrieval_set.yaml"

HOPS = 8
"""Hops on a turn's response path (see the module docstring)."""
PARALLEL_PREFIX = "retrieval."
SEQUENTIAL_RETRIEVAL = {"retrieval.embedding"}
"""``retrieval.<type>`` timings run in parallel (the slowest counts); the embedding does not."""
MARKS = ("\u200b", "\u200c")
"""Zero-width space and non-joiner: dropped by the embedder's and the lexical tokenizers."""
SETTLE_S = 1.0
RSS_EVERY_S = 0.25
UNLOADED_MAX_S = 20.0


# -- figures ---------------------------------------------------------------------------------


def pct(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), digits),
        "p50": round(pct(ordered, 50), digits),
        "p95": round(pct(ordered, 95), digits),
        "p99": round(pct(ordered, 99), digits),
        "max": round(ordered[-1], digits),
    }


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


# -- the turns -------------------------------------------------------------------------------


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


# -- processes: sampling RSS and CPU from /proc ----------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (threads included; children not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine used since boot (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Watch:
    """RSS maxima per process and label, and CPU use per process between marks."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.label = "start"
        self.rss_max: dict[str, dict[str, int]] = defaultdict(dict)
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for name, pid in self.pids.items():
            rss = rss_bytes(pid)
            for label in (self.label, "max"):
                kept = self.rss_max[name]
                kept[label] = max(kept.get(label, 0), rss)

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(RSS_EVERY_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sample()

    def rss_mb(self, name: str) -> dict[str, float]:
        return {k: round(v / 2**20, 1) for k, v in self.rss_max[name].items()}

    @contextlib.contextmanager
    def stage(self, label: str, into: dict[str, Any]) -> Iterator[None]:
        """Label RSS samples, and put the CPU cores each process used into ``into``."""
        self.label = label
        before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        system = system_busy_seconds()
        t0 = time.monotonic()
        try:
            yield
        finally:
            wall = time.monotonic() - t0
            cores = {
                name: round((cpu_seconds(pid) - before[name]) / wall, 2)
                for name, pid in self.pids.items()
            }
            ours = sum(cores.values())
            cores["machine"] = round((system_busy_seconds() - system) / wall, 2)
            cores["others"] = round(max(0.0, cores["machine"] - ours), 2)
            into["cpu_cores"] = cores


# -- the streaming side ----------------------------------------------------------------------


@contextlib.contextmanager
def quiet(logger: str) -> Iterator[None]:
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def passed_through() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith("TURNSTREAM_") and k not in SET_BY_WORKER_ENV
    }


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of a process: tid -> (comm, utime + stime)."""
    found: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (task / "stat").read_text()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat.rsplit(")", 1)[1].split()
                found[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    return found


class Profiler:
    """py-spy sampling one process (raw collapsed stacks, a root frame per thread with its
    OS thread id and Python name), and the CPU each thread used from /proc meanwhile."""

    def __init__(self, pid: int, out: Path, rate: int) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.pid = pid
        self.out = out
        self.rate = rate
        self.cpu_before = thread_cpu(pid)
        self.cpu_used: dict[int, tuple[str, float]] = {}
        command = [exe, "record", "--pid", str(pid), "--format", "raw", "--threads"]
        command += ["--nonblocking", "--rate", str(rate), "--output", str(out)]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.started = time.monotonic()
        self.seconds = 0.0

    def stop(self) -> None:
        self.seconds = time.monotonic() - self.started
        after = thread_cpu(self.pid)
        self.cpu_used = {
            tid: (comm, cpu - self.cpu_before.get(tid, (comm, 0.0))[1])
            for tid, (comm, cpu) in after.items()
        }
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def summary(self) -> dict[str, Any]:
        if not self.out.exists():
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            return {"error": err[-2000:]}
        return profile_summary(self.out, self.seconds, self.cpu_used)


COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "embedding model (sentence-transformers, torch)",
        ("sentence_transformers/", "torch/", "transformers/", "sinks/embedder"),
    ),
    ("codec (Avro encode/decode)", ("schemas/codec", "fastavro")),
    ("analytics (rows, chdb)", ("sinks/analytics", "analytics_consumer", "chdb")),
    (
        "retrieval search (Qdrant local, lexical, selection)",
        ("processors/retrieval", "qdrant_client", "sinks/vector_store"),
    ),
    ("phases P1-P10 (processors/phases)", ("processors/phases",)),
    ("turn glue (processors/turn)", ("processors/turn",)),
    ("pydantic (validation, model_copy)", ("pydantic",)),
    ("memory ingestion", ("sinks/memory_ingestion", "sink_consumer")),
    ("faust tables / streams", ("faust/", "mode/")),
    ("aiokafka client", ("aiokafka/",)),
    ("pipeline agents (streams/pipeline)", ("streams/pipeline",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
)
MODEL_CALL = "PipelineRuntime.in_model_thread.<locals>.<lambda>"
"""What runs on the worker's model thread is called through this frame."""
THREAD_ROOT = re.compile(r"^thread \((?:0x)?([0-9A-Fa-f]+)\)(?:: (.*))?$")


def _component(frames: Sequence[str]) -> str:
    for name, needles in COMPONENTS:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return "other"


def _pool(name: str) -> str:
    """One name per pool: ``asyncio_3`` and ``asyncio_0`` are both ``asyncio``."""
    return name.rstrip("0123456789").rstrip("_-") or name


def profile_summary(
    path: Path, seconds: float, cpu_used: dict[int, tuple[str, float]], top: int = 25
) -> dict[str, Any]:
    """Where a worker's CPU goes, from py-spy samples and /proc thread CPU.

    ``threads``: CPU cores each thread (pools merged) used over the window, measured from
    /proc; threads py-spy does not see are native (torch's intra-op workers, chdb, ...) and
    show under their OS name. ``components`` and ``self_top`` split each Python thread's
    measured CPU by the share of its samples: a sample goes to the first of COMPONENTS on its
    stack (so model time reached from a phase counts as model time), or to the function on
    top of the stack. Weighting by measured CPU corrects py-spy counting a thread that waits
    in a system call as busy. ``share`` is of the process's CPU. Unnamed native threads
    (``native: python``) are torch's OpenMP intra-op workers: they vanish with
    ``OMP_NUM_THREADS=1``. ``model_thread_calls``: what the model thread's samples run
    (``CachedEmbedder.embed``: query embeddings; ``Indexer.add``: memory ingestion and pack
    indexing), as shares of its samples."""
    per_thread: dict[int, Counter[str]] = defaultdict(Counter)
    per_thread_leaf: dict[int, Counter[str]] = defaultdict(Counter)
    names: dict[int, str] = {}
    model_calls: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        root = THREAD_ROOT.match(frames[0])
        if root is None:
            continue
        raw_tid = root.group(1)
        tid = int(raw_tid, 16) if frames[0].startswith("thread (0x") else int(raw_tid)
        names[tid] = root.group(2) or f"thread {tid}"
        count = int(count_text)
        names_only = [f.split(" (")[0] for f in frames[1:]]
        if MODEL_CALL in names_only:
            at = names_only.index(MODEL_CALL)
            model_calls[names_only[at + 1] if at + 1 < len(names_only) else "?"] += count
        per_thread[tid][_component(frames[1:])] += count
        per_thread_leaf[tid][frames[-1] if len(frames) > 1 else "?"] += count
    total_cpu = sum(cpu for _, cpu in cpu_used.values())
    if total_cpu <= 0:
        return {"error": "no CPU time measured"}
    threads: dict[str, float] = defaultdict(float)
    components: dict[str, float] = defaultdict(float)
    leaves: dict[str, float] = defaultdict(float)
    for tid, (comm, cpu) in cpu_used.items():
        if tid in names:
            threads[_pool(names[tid])] += cpu
            for counter, source in ((components, per_thread[tid]), (leaves, per_thread_leaf[tid])):
                samples = sum(source.values())
                for key, n in source.items():
                    counter[key] += cpu * n / samples
        else:
            threads[f"native: {_pool(comm)}"] += cpu
            components[f"native threads ({_pool(comm)})"] += cpu

    def rows(cpu: dict[str, float], n: int | None = None) -> list[dict[str, Any]]:
        ranked = sorted(((v, k) for k, v in cpu.items() if v > 0), reverse=True)[:n]
        return [
            {"name": k, "cores": round(v / seconds, 3), "share": round(v / total_cpu, 4)}
            for v, k in ranked
        ]

    return {
        "seconds": round(seconds, 1),
        "samples": sum(sum(c.values()) for c in per_thread.values()),
        "cpu_cores": round(total_cpu / seconds, 3),
        "threads": rows(threads),
        "components": rows(components),
        "self_top": rows(leaves, top),
        "model_thread_calls": [
            {"name": k, "share": round(v / sum(model_calls.values()), 4)}
            for k, v in model_calls.most_common(8)
        ],
    }


async def stream_run(
    base: Settings, workers: int, args: argparse.Namespace, root: Path, broker_pid: int | None
) -> dict[str, Any]:
    """One pipeline (a fresh topic prefix) with ``workers`` workers: open loop, closed loop."""
    run_dir = root / f"workers-{workers}"
    run_dir.mkdir()
    settings = base.model_copy(
        update={
            "topic_prefix": f"bench{uuid.uuid4().hex[:10]}",
            "data_dir": run_dir / "w0",
            "packs_dir": REPO / "packs",
            "partitions": args.partitions,
            "analytics": base.analytics.model_copy(
                update={"enabled": not args.no_analytics, "query_port": 0}
            ),
            "webhooks": base.webhooks.model_copy(update={"enabled": False}),
        }
    )
    result: dict[str, Any] = {"workers": workers, "topic_prefix": settings.topic_prefix}
    t0 = time.monotonic()
    with quiet("aiokafka.consumer.fetcher"):  # "not leader" while fresh topics settle
        await ensure_topics(settings)
        await publish_pack(settings, load_pack(EXAMPLE_PACK))
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
        async with TurnClient(settings) as client:

            async def ask(channel_id: str, message: str, deadline: float) -> Turn:
                loop = asyncio.get_running_loop()
                t = loop.time()
                turn = Turn(await client.send(turn_input(channel_id, message)))
                try:
                    response = await client.response(turn.turn_id, max(0.0, deadline - loop.time()))
                except TimeoutError:
                    return turn
                turn.answered_at = loop.time()
                turn.e2e_ms = (turn.answered_at - t) * 1000
                turn.response = response
                return turn

            def counted(turns: Sequence[Turn]) -> dict[str, int]:
                counts = [client.response_counts[t.turn_id] for t in turns]
                return {
                    "lost": sum(1 for c in counts if c == 0),
                    "duplicates": sum(c - 1 for c in counts if c > 1),
                }

            groups = [
                pipeline_group(settings.topic_prefix),
                MEMORY_GROUP.name(settings.topic_prefix),
            ]
            if settings.analytics.enabled:
                groups.append(analytics_group(settings))
            await wait_for_groups(settings.bootstrap_servers, groups, workers, procs)
            warm_sessions = max(1, min(args.warmup, 2 * args.partitions))
            warm, _ = await closed_loop(
                ask, texts, warm_sessions, -(-args.warmup // warm_sessions), "warm", 120.0
            )
            await wait_for_groups(settings.bootstrap_servers, groups, workers, procs)
            result["ready_s"] = round(time.monotonic() - t0, 1)
            errors = sum(
                1 for t in warm if t.response and t.response.status is ResponseStatus.ERROR
            )
            result["warmup"] = {"turns": len(warm), "errors": errors, **counted(warm)}
            print(
                f"[{workers} worker(s)] ready in {result['ready_s']} s ({len(warm)} warm-up "
                f"turns, {result['warmup']['lost']} lost, {errors} errors)",
                flush=True,
            )
            if errors + result["warmup"]["lost"] == len(warm):
                raise RuntimeError(f"no warm-up turn was answered well; see {run_dir}")

            stage: dict[str, Any]
            if args.unloaded_turns > 0:
                stage = {}
                loop = asyncio.get_running_loop()
                with watch.stage("unloaded", stage):
                    turns = []
                    stop_at = loop.time() + UNLOADED_MAX_S
                    for i in range(args.unloaded_turns):
                        if loop.time() > stop_at:
                            break
                        channel = f"unloaded-{i % args.active_sessions}"
                        turns.append(await ask(channel, texts.next(), loop.time() + args.drain))
                    await asyncio.sleep(SETTLE_S)
                stage["turns"] = len(turns)
                stage.update(latency_report(turns, transport=True))
                stage.update(counted(turns))
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
                stage.update(latency_report(turns, transport=True))
                stage.update(counted(turns))
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
                stage.update(latency_report(turns, transport=True))
                stage.update(counted(turns))
                result["open_loop"] = stage
                print_open(f"[{workers} worker(s)] open loop", stage)
    finally:
        if watch is not None:
            await watch.stop()
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))
    assert watch is not None
    result["rss_mb"] = {n: watch.rss_mb(n) for n in pids if n.startswith("worker")}
    return result


# -- the in-process baseline -----------------------------------------------------------------


def in_process_deps() -> tuple[AgentPack, TurnDeps]:
    """The example pack and the ports ``run_turn`` needs: the real embedder, Qdrant in
    memory, the pack's own tools, this process's settings (the baseline and the soak's
    replay)."""
    from processors.phases.tools import PackToolExecutor, PythonToolExecutor
    from processors.retrieval import Indexer, LexicalIndexes
    from processors.retrieval.pack_items import sync_pack
    from sinks.embedder import default_embedder
    from sinks.vector_store import VectorStore

    pack = load_pack(EXAMPLE_PACK)
    embedder = default_embedder()
    store = VectorStore.memory(embedder.dim)
    lexicon = LexicalIndexes(store.documents)
    sync_pack(Indexer(store, embedder, lexicon), pack)
    deps = TurnDeps(
        embedder=embedder,
        vectors=store,
        lexicon=lexicon,
        tools=lambda _pack: PackToolExecutor(PythonToolExecutor(EXAMPLE_PACK)),
        settings=load_settings(),
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
        turns = [
            await ask(f"unloaded-{i % args.active_sessions}", texts.next(), math.inf)
            for i in range(args.unloaded_turns)
        ]
    stage["turns"] = len(turns)
    stage.update(latency_report(turns, transport=False))
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
        result["closed_loop"] = stage
        print_closed("[in-process] closed loop", stage)
    total = sum(regenerated.values())
    result["regenerated_share"] = round(regenerated[True] / total, 4) if total else 0.0
    return result


# -- output ----------------------------------------------------------------------------------


def _p(stats: dict[str, float], digits: int = 1) -> str:
    if not stats.get("count"):
        return "n/a"
    return "/".join(f"{stats[k]:.{digits}f}" for k in ("p50", "p95", "p99"))


def print_open(title: str, stage: dict[str, Any]) -> None:
    wait_key = "send_lag_ms" if "send_lag_ms" in stage else "queue_wait_ms"
    wait = wait_key.removesuffix("_ms").replace("_", " ")
    line = (
        f"{title}: {stage['sent']} turns at {stage['rate_per_s']:g}/s  "
        f"e2e p50/p95/p99 {_p(stage['e2e_ms'])} ms  {wait} p99 "
        f"{stage[wait_key].get('p99', 0):.1f} ms  errors {stage['errors']}"
    )
    if stage.get("overloaded"):
        line += f"\n    overloaded: served {stage['served_turns_per_s']:g} turns/s"
    if stage["unanswered"]:
        line += f"\n    {stage['unanswered']} turns unanswered: percentiles cover answered turns"
    if "transport_overhead_ms_per_hop" in stage:
        line += (
            f"\n    phases (critical path) p50 {stage['phase_sum_ms'].get('p50', 0):.1f} ms  "
            f"overhead/hop p50 {stage['transport_overhead_ms_per_hop'].get('p50', 0):.2f} ms  "
            f"lost {stage['lost']} dup {stage['duplicates']}"
        )
    line += f"\n    cpu cores {stage.get('cpu_cores')}"
    phases = stage["phases_ms"]
    line += "\n    " + "  ".join(f"{k} {v['p50']:.1f}/{v['p99']:.1f}" for k, v in phases.items())
    print(line, flush=True)


def print_unloaded(title: str, stage: dict[str, Any]) -> None:
    line = f"{title}: {stage['turns']} turns one at a time  p50/p95/p99 {_p(stage['e2e_ms'])} ms"
    if "transport_overhead_ms_per_hop" in stage:
        line += (
            f"\n    phases (critical path) p50 {stage['phase_sum_ms'].get('p50', 0):.1f} ms  "
            f"overhead/hop p50 {stage['transport_overhead_ms_per_hop'].get('p50', 0):.2f} ms  "
            f"lost {stage['lost']} dup {stage['duplicates']}"
        )
    line += f"\n    cpu cores {stage.get('cpu_cores')}"
    print(line, flush=True)


def print_closed(title: str, stage: dict[str, Any]) -> None:
    line = (
        f"{title}: {stage['sessions']} sessions x {stage['turns_per_session']} turns  "
        f"{stage['turns_per_s']:.1f} turns/s (steady {stage.get('steady_turns_per_s', 0):.1f})  "
        f"e2e p50/p95/p99 {_p(stage['e2e_ms'])} ms"
    )
    if "lost" in stage:
        line += f"  lost {stage['lost']} dup {stage['duplicates']}"
    line += f"\n    cpu cores {stage.get('cpu_cores')}"
    print(line, flush=True)


def print_profile(profile: dict[str, Any]) -> None:
    if "error" in profile:
        print(f"profile failed: {profile['error']}")
        return
    print(
        f"profile of worker 0: {profile['cpu_cores']:.2f} cores busy over {profile['seconds']} s "
        f"({profile['samples']} samples)"
    )
    for title in ("threads", "components", "self_top"):
        print(f"  {title} (cores, share of the worker's CPU):")
        for row in profile[title][:12]:
            print(f"    {row['cores']:5.2f}  {row['share'] * 100:5.1f}%  {row['name']}")
    print("  model thread, by the call it runs (share of its samples):")
    for row in profile["model_thread_calls"]:
        print(f"    {row['share'] * 100:5.1f}%  {row['name']}")


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    base = result.get("baseline") or {}
    out: dict[str, Any] = {}
    for run in result["streaming"]:
        key = f"workers_{run['workers']}"
        entry: dict[str, float] = {}
        s_open, b_open = run.get("open_loop"), base.get("open_loop")
        if s_open and b_open and b_open["e2e_ms"].get("p50"):
            entry["latency_p50"] = round(s_open["e2e_ms"]["p50"] / b_open["e2e_ms"]["p50"], 2)
            entry["latency_p99"] = round(s_open["e2e_ms"]["p99"] / b_open["e2e_ms"]["p99"], 2)
        s_idle, b_idle = run.get("unloaded"), base.get("unloaded")
        if s_open and b_idle and b_idle["e2e_ms"].get("p50"):
            entry["latency_p50_vs_unloaded"] = round(
                s_open["e2e_ms"]["p50"] / b_idle["e2e_ms"]["p50"], 2
            )
        if s_idle and b_idle and b_idle["e2e_ms"].get("p50") and s_idle["e2e_ms"].get("p50"):
            entry["unloaded_latency_p50"] = round(
                s_idle["e2e_ms"]["p50"] / b_idle["e2e_ms"]["p50"], 2
            )
        s_closed, b_closed = run.get("closed_loop"), base.get("closed_loop")
        if s_closed and b_closed and b_closed["turns_per_s"]:
            entry["throughput"] = round(s_closed["turns_per_s"] / b_closed["turns_per_s"], 2)
        out[key] = entry
    runs = {r["workers"]: r for r in result["streaming"]}
    if 1 in runs and 2 in runs and "closed_loop" in runs[1] and "closed_loop" in runs[2]:
        one = runs[1]["closed_loop"]["turns_per_s"]
        out["scale_2_over_1_workers"] = round(runs[2]["closed_loop"]["turns_per_s"] / one, 2)
    return out


# -- main ------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
        "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
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
    result["ratios"] = ratios(result)
    result["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


async def streaming(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The broker (or ``--bootstrap``), then one pipeline per worker count."""
    root = Path(tempfile.mkdtemp(prefix="turnstream-bench-turns-"))
    failed = True
    try:
        if args.bootstrap:
            base = load_settings(kafka_bootstrap=args.bootstrap, data_dir=root)
            broker = None
        else:
            base = private_broker_settings(root)
            broker = LocalKafka(base)
            t0 = time.monotonic()
            await asyncio.to_thread(broker.up)
            print(f"local broker up on {base.bootstrap_servers} in {time.monotonic() - t0:.1f} s")
        result["settings"] = {
            "bootstrap": base.bootstrap_servers,
            "partitions": args.partitions,
            "worker_concurrency": base.worker_concurrency,
            "analytics": not args.no_analytics,
            "webhooks": False,
        }
        try:
            broker_pid = broker.status().pid if broker is not None else None
            for workers in args.workers:
                result["streaming"].append(await stream_run(base, workers, args, root, broker_pid))
        finally:
            if broker is not None:
                await asyncio.to_thread(broker.down)
        failed = False
    finally:
        if failed or args.keep:
            print(f"worker logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _workers(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(c < 0 for c in counts):
        raise argparse.ArgumentTypeError("worker counts: 1, 2, or 1,2 (0: baseline only)")
    return [c for c in counts if c > 0]


def print_summary(result: dict[str, Any]) -> None:
    print("\nsummary")
    for run in result["streaming"]:
        closed, opened = run.get("closed_loop", {}), run.get("open_loop", {})
        rss = max((v.get("max", 0.0) for v in run["rss_mb"].values()), default=0.0)
        rss_open = max((v.get("open_loop", 0.0) for v in run["rss_mb"].values()), default=0.0)
        hop = opened.get("transport_overhead_ms_per_hop", {}).get("p50", 0.0)
        print(
            f"  streaming, {run['workers']} worker(s): "
            f"{closed.get('turns_per_s', 0):.1f} turns/s closed loop; "
            f"e2e p50/p95/p99 {_p(opened.get('e2e_ms', {}))} ms "
            f"at {opened.get('rate_per_s', 0):g}/s; overhead/hop p50 {hop:.2f} ms; "
            f"worker RSS max {rss:.0f} MB "
            f"({rss_open:.0f} MB with {opened.get('active_sessions', 0)} sessions)"
        )
    base = result.get("baseline")
    if base:
        print(
            f"  in-process: {base.get('closed_loop', {}).get('turns_per_s', 0):.1f} turns/s "
            f"closed loop; p50/p95/p99 {_p(base.get('open_loop', {}).get('e2e_ms', {}))} ms "
            "open loop"
        )
    for key, value in result["ratios"].items():
        print(f"  ratio {key}: {value}")


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
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
