"""py-spy on a worker, and where its CPU goes (bench/profile_worker.md)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness.procwatch import thread_cpu


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
