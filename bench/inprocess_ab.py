"""The in-process turn, old code against new, in one run (issue 19 item 3).

Two child processes, one per source tree (``--old`` and ``--new``, e.g. a ``git worktree``
of the old commit and this checkout), each importing the pipeline from its own tree: the
example pack, the real embedder (``--backend``, onnx-int8 by default), Qdrant in memory,
``processors.turn.in_process.run_turn``. Both get the same turns in the same order (the
labelled messages, cycled with invisible markers so that no text repeats, spread over
``--sessions`` channels, deterministic turn ids, a clock that moves one second a turn), in
blocks of ``--block`` turns that alternate between the trees (old, new, new, old, ...) so
that load from other processes on a shared machine falls on both alike. Only one child runs
at a time; the other waits on its pipe.

Measured per block: the child's process CPU time (all its threads, ``time.process_time``)
over each ``run_turn`` call (not the bench's own request building and hashing), summed over
the block's turns and divided by them: ``cpu_ms_per_turn``; ``wall_ms_per_turn`` is the
block's wall time (hashing included) per turn. Reported: the median
and the total over blocks for each tree, and old / new (the speed-up) of each, and the
median of the blocks' old / new ratios (a block and its pair ran back to back, so this one
is the least hurt by load that comes and goes). Each turn's response
and record (their JSON, less timings) are hashed in the child; the parent checks that the
two trees answered every turn identically and names the first turn that differs (and how
many turns' responses and how many records differ: two wirings score retrieval candidates
in different float arithmetic, which shows in the records' scores first).

    git worktree add /tmp/old <old commit>
    python bench/inprocess_ab.py --old /tmp/old --new . --turns 600 --json /tmp/ab.json
    git worktree remove /tmp/old

``--vectors`` wires both trees' turns alike: ``snapshot`` (default) searches a
``SnapshotIndex`` over Qdrant in memory, as a worker does; ``store`` searches Qdrant's local
mode directly, as ``bench/harness/inprocess.py`` did up to 110e37c. ``--new-vectors`` gives
the new tree another wiring than the old (the speed-up then includes the wiring's).

Exit status 1 when any turn's answer differs between the trees.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VOLATILE = frozenset({"timings_ms", "latency_ms", "duration_ms", "elapsed_ms"})
"""Keys whose values are wall-clock measurements: left out of the comparison."""


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _digest(dumped: Any) -> str:
    text = json.dumps(_strip(dumped), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _deps(snapshot: bool) -> tuple[Any, Any]:
    """The example pack and a turn's ports, wired as ``bench.harness.inprocess`` wired them
    at the old commit (the real embedder, Qdrant in memory, the pack's tools, this process's
    settings), searched through a ``SnapshotIndex`` over the store (as the worker does) when
    ``snapshot``. Written out here so that both trees are wired alike."""
    from bench.harness.pipeline import EXAMPLE_PACK
    from processors.phases.tools import PackToolExecutor
    from processors.retrieval import Indexer, LexicalIndexes
    from processors.retrieval.pack_items import sync_pack
    from processors.retrieval.snapshot_index import SnapshotIndex
    from processors.turn.deps import TurnDeps
    from sinks.embedder import default_embedder
    from sinks.pack_files import load_pack
    from sinks.python_tools import PythonToolExecutor
    from sinks.vector_store import VectorStore
    from streams.settings import load_settings

    pack = load_pack(EXAMPLE_PACK)
    embedder = default_embedder()
    store = VectorStore.memory(embedder.dim)
    vectors = SnapshotIndex(store) if snapshot else store
    lexicon = LexicalIndexes(store.documents)
    sync_pack(Indexer(vectors, embedder, lexicon), pack)
    deps = TurnDeps(
        embedder=embedder,
        vectors=vectors,
        lexicon=lexicon,
        tools=lambda _pack: PackToolExecutor(PythonToolExecutor(EXAMPLE_PACK)),
        settings=load_settings(),
    )
    return pack, deps


def child(tree: Path, sessions: int, warmup: int, snapshot: bool) -> None:
    """One tree's pipeline, answering ``run START COUNT`` lines on stdin with one JSON line."""
    sys.path[:] = [str(tree), *(p for p in sys.path[1:] if Path(p).resolve() != tree / "bench")]
    import asyncio
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    import processors
    from bench.harness.load import Texts, turn_input
    from processors.turn.in_process import MemoryState, run_turn
    from schemas.events.turn_requested import TurnRequested
    from streams.pipeline.runtime import one_intra_op_thread
    from streams.worker import freeze_startup_objects

    source = Path(processors.__file__).resolve().parent.parent
    if source != tree.resolve():
        raise SystemExit(f"imported the pipeline from {source}, not {tree}")
    one_intra_op_thread()
    loop = asyncio.new_event_loop()
    base = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    now = [base]
    pack, deps = _deps(snapshot)
    deps = replace(deps, clock=lambda: now[0])
    state = MemoryState()
    state.add_pack(pack)
    texts = Texts.load(distinct=True)
    messages = [texts.next() for _ in range(warmup)]

    cpu = [0.0]

    def turn(index: int, channel: str) -> tuple[str, str]:
        now[0] = base + timedelta(seconds=index)
        while len(messages) <= index + warmup:
            messages.append(texts.next())
        request = TurnRequested(
            turn_id=f"ab-{channel}-{index:06d}",
            input=turn_input(channel, messages[index + warmup] if index >= 0 else messages[~index]),
            sent_at=now[0],
        )
        started = time.process_time()
        response, record = loop.run_until_complete(run_turn(request, state, deps))
        cpu[0] += time.process_time() - started
        return (
            _digest(response.model_dump(mode="json")),
            _digest(record.model_dump(mode="json")),
        )

    for i in range(warmup):
        turn(~i, f"warm-{i % 4}")
    freeze_startup_objects()
    print(json.dumps({"ready": str(source)}), flush=True)
    for line in sys.stdin:
        _, start, count = line.split()
        first, n = int(start), int(count)
        cpu[0], wall0 = 0.0, time.perf_counter()
        digests = [turn(i, f"ab-{i % sessions}") for i in range(first, first + n)]
        wall = time.perf_counter() - wall0
        print(json.dumps({"cpu_s": cpu[0], "wall_s": wall, "digests": digests}), flush=True)


class Child:
    def __init__(self, name: str, tree: Path, args: argparse.Namespace, vectors: str) -> None:
        self.name = name
        self.vectors = vectors
        env = dict(os.environ, PYTHONPATH=str(tree))
        if args.backend:
            env["TURNSTREAM_EMBEDDER_BACKEND"] = args.backend
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(tree)]
        command += ["--sessions", str(args.sessions), "--warmup", str(args.warmup)]
        command += ["--vectors", vectors]
        self.proc = subprocess.Popen(
            command, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.source = self._read()["ready"]
        self.blocks: list[dict[str, Any]] = []
        self.digests: list[list[str]] = []

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.name}: child exited ({self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def run(self, start: int, count: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {start} {count}\n")
        self.proc.stdin.flush()
        got = self._read()
        self.digests.extend(got.pop("digests"))
        self.blocks.append(got | {"turns": count})

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def summary(self) -> dict[str, Any]:
        per_turn = [1000 * b["cpu_s"] / b["turns"] for b in self.blocks]
        turns = sum(b["turns"] for b in self.blocks)
        return {
            "source": self.source,
            "vectors": self.vectors,
            "turns": turns,
            "cpu_ms_per_turn_median": round(statistics.median(per_turn), 3),
            "cpu_ms_per_turn_total": round(1000 * sum(b["cpu_s"] for b in self.blocks) / turns, 3),
            "wall_ms_per_turn_total": round(
                1000 * sum(b["wall_s"] for b in self.blocks) / turns, 3
            ),
            "cpu_ms_per_turn_blocks": [round(v, 3) for v in per_turn],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--old", type=Path, help="the old commit's tree")
    parser.add_argument("--new", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--turns", type=int, default=600, help="measured turns per tree")
    parser.add_argument("--block", type=int, default=50, help="turns per alternating block")
    parser.add_argument("--sessions", type=int, default=20, help="channels the turns rotate")
    parser.add_argument("--warmup", type=int, default=40, help="turns before measuring")
    parser.add_argument("--backend", default="onnx-int8", help="TURNSTREAM_EMBEDDER_BACKEND")
    parser.add_argument(
        "--vectors",
        choices=("snapshot", "store"),
        default="snapshot",
        help="turns search a SnapshotIndex over the store (the worker's wiring) or the store",
    )
    parser.add_argument(
        "--new-vectors",
        choices=("snapshot", "store"),
        help="the new tree's wiring when it differs from --vectors (the old one keeps --vectors)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child.resolve(), args.sessions, args.warmup, args.vectors == "snapshot")
        return 0
    if args.old is None:
        parser.error("--old is required")
    old = Child("old", args.old.resolve(), args, args.vectors)
    new = Child("new", args.new.resolve(), args, args.new_vectors or args.vectors)
    try:
        for k, start in enumerate(range(0, args.turns, args.block)):
            count = min(args.block, args.turns - start)
            order = (old, new) if k % 2 == 0 else (new, old)
            for c in order:
                c.run(start, count)
    finally:
        old.close()
        new.close()
    pairs = zip(old.digests, new.digests, strict=False)
    differing = [i for i, (a, b) in enumerate(pairs) if a != b]
    a, b = old.summary(), new.summary()
    result = {
        "backend": args.backend,
        "turns": args.turns,
        "block": args.block,
        "sessions": args.sessions,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "old": a,
        "new": b,
        "speedup_median": round(a["cpu_ms_per_turn_median"] / b["cpu_ms_per_turn_median"], 3),
        "speedup_total": round(a["cpu_ms_per_turn_total"] / b["cpu_ms_per_turn_total"], 3),
        "speedup_paired_median": round(
            statistics.median(
                x / y
                for x, y in zip(
                    a["cpu_ms_per_turn_blocks"], b["cpu_ms_per_turn_blocks"], strict=True
                )
            ),
            3,
        ),
        "answers_identical": not differing and len(old.digests) == len(new.digests),
        "turns_differing": len(differing),
        "responses_differing": sum(
            a[0] != b[0] for a, b in zip(old.digests, new.digests, strict=False)
        ),
        "records_differing": sum(
            a[1] != b[1] for a, b in zip(old.digests, new.digests, strict=False)
        ),
        "first_differing_turn": differing[0] if differing else None,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["answers_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
