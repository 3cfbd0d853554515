"""One tenant's large pack loads while another tenant's turns run: their latency, normal
against during the load.

    python bench/noisy_neighbour.py [--intents 1512] [--examples 6] [--sessions 2]
                                    [--turns 60] [--json PATH] [--bootstrap HOST:PORT]

Setup: a private local broker (or ``--bootstrap``), a fresh topic prefix, the example pack
(acme-shop/support) published, one ``turnstream worker`` process (role ``all``, analytics
and webhooks off, the real all-MiniLM-L6-v2 embedder, Qdrant local) whose
``max_pack_texts`` admits the large pack. After warm-up turns:

* **normal**: ``--sessions`` acme-shop sessions each send ``--turns`` turns back to back;
* **during**: a generated pack of another tenant (``bench.harness.large_pack``: by default
  the shape of issue 20's, 1,512 intents, 10,584 texts) is published, and the same sessions
  keep sending until the worker logs that pack indexed; every turn sent inside that window
  counts, however late its answer;
* **after**: ``--turns`` turns each again, the pack loaded.

Latency is from just before the ``TurnRequested`` is produced to when its ``TurnResponse``
is consumed, in this process. The figure that matters is ``p99_ratio``: p99 during the
load over p99 of the normal turns around it (the larger of before and after, since the
shared machine's own load drifts between them). ``load_s`` is the worker's own time for
the sync (from its log), child process start included. Before the fix the load ran on the
model thread that embeds every turn's query, and a turn waited for all of it (issue 20:
109.7 s); now it runs in a child process at ``nice`` 19 (``sinks.embed_process``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/noisy_neighbour.py`: import `bench.*`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.harness.figures import summary
from bench.harness.large_pack import texts_of, write_large_pack
from bench.harness.load import Texts, Turn
from bench.harness.pipeline import pipeline_settings, prepare, private_cluster, wait_ready
from bench.harness.report import load_average, run_header, write_json
from bench.harness.streaming import StreamTurns
from schemas.events.turn_response import ResponseStatus
from sinks.pack_files import load_pack
from streams.pack_publisher import publish_pack
from streams.settings import Settings
from streams.turn_client import TurnClient
from streams.worker_process import WorkerProcess

LARGE_TENANT, LARGE_AGENT = "bulk-tenant", "catalog"
INDEXED = re.compile(r"indexed (\S+)/(\S+) v(\d+): (\d+) texts embedded in ([\d.]+) s")


@dataclass
class Window:
    """The turns of one phase of the run."""

    name: str
    turns: list[Turn]

    def latencies(self) -> list[float]:
        return [t.e2e_ms for t in self.turns if t.e2e_ms is not None]

    def report(self) -> dict[str, Any]:
        errors = sum(
            1 for t in self.turns if t.response and t.response.status is not ResponseStatus.OK
        )
        lost = sum(1 for t in self.turns if t.response is None)
        return {"e2e_ms": summary(self.latencies()), "errors": errors, "lost": lost}


def indexed_line(log: Path, tenant: str, agent: str) -> tuple[int, float] | None:
    """(texts embedded, seconds) once the worker logged the pack indexed, else None."""
    for match in INDEXED.finditer(log.read_text(errors="replace")):
        if (match.group(1), match.group(2)) == (tenant, agent):
            return int(match.group(4)), float(match.group(5))
    return None


class Turns:
    """Closed-loop acme-shop sessions over one client."""

    def __init__(self, client: TurnClient, sessions: int, run: str) -> None:
        self.stream = StreamTurns(client)
        self.sessions = sessions
        self.run = run
        self.texts = Texts.load()

    async def ask(self, channel_id: str, timeout: float) -> Turn:
        deadline = asyncio.get_running_loop().time() + timeout
        return await self.stream.ask(channel_id, self.texts.next(), deadline)

    async def fixed(self, name: str, turns: int, timeout: float = 60.0) -> Window:
        async def session(s: int) -> list[Turn]:
            return [await self.ask(f"{self.run}-{s}", timeout) for _ in range(turns)]

        done = await asyncio.gather(*(session(s) for s in range(self.sessions)))
        return Window(name, [t for ts in done for t in ts])

    async def until(self, name: str, stop: asyncio.Event, timeout: float = 60.0) -> Window:
        """Every turn sent before ``stop`` is set, however late it is answered: a turn held
        up by the load must count, and it ends only after the load."""

        async def session(s: int) -> list[Turn]:
            done: list[Turn] = []
            while not stop.is_set():
                done.append(await self.ask(f"{self.run}-{s}", timeout))
            return done

        done = await asyncio.gather(*(session(s) for s in range(self.sessions)))
        return Window(name, [t for ts in done for t in ts])


async def wait_indexed(log: Path, tenant: str, agent: str, stop: asyncio.Event) -> None:
    while indexed_line(log, tenant, agent) is None:
        await asyncio.sleep(0.1)
    stop.set()


async def measure(
    settings: Settings,
    worker: WorkerProcess,
    pack_dir: Path,
    *,
    sessions: int,
    turns: int,
    warmup: int = 20,
    load_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Normal, during and after windows around publishing the pack at ``pack_dir`` (its
    tenant's pack must not be loaded yet); ``worker`` runs with ``settings``, logging INFO."""
    pack = load_pack(pack_dir)
    tenant, agent = pack.agent.tenant_id, pack.agent.agent_id
    async with TurnClient(settings) as client:
        loop = Turns(client, sessions, f"nn{os.getpid()}-{int(time.time())}")
        await loop.fixed("warm-up", max(1, warmup // sessions))
        normal = await loop.fixed("normal", turns)
        indexed = asyncio.Event()
        published = time.monotonic()
        await publish_pack(settings, pack)
        watcher = asyncio.create_task(wait_indexed(worker.log, tenant, agent, indexed))
        try:
            during = await asyncio.wait_for(loop.until("during", indexed), load_timeout_s)
        finally:
            watcher.cancel()
        window_s = time.monotonic() - published
        after = await loop.fixed("after", turns)
    seen = indexed_line(worker.log, tenant, agent)
    assert seen is not None
    windows = {w.name: w.report() for w in (normal, during, after)}
    reference = max(windows["normal"]["e2e_ms"]["p99"], windows["after"]["e2e_ms"]["p99"])
    return {
        "pack": {"tenant": tenant, "agent": agent, "intents": len(pack.intents)},
        "texts_embedded": seen[0],
        "load_s": seen[1],
        "window_s": round(window_s, 1),
        **windows,
        "p99_ratio": round(windows["during"]["e2e_ms"]["p99"] / reference, 2),
        "p50_ratio": round(
            windows["during"]["e2e_ms"]["p50"] / windows["normal"]["e2e_ms"]["p50"], 2
        ),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    result = run_header(args)
    async with private_cluster("noisy", bootstrap=args.bootstrap, keep=args.keep) as cluster:
        limit = max(texts_of(args.intents, args.examples), 5000)
        settings = pipeline_settings(
            cluster.base, "noisy", partitions=4, analytics=False, data_dir=cluster.root / "w0"
        ).model_copy(update={"max_pack_texts": limit})
        await prepare(settings)
        pack_dir = write_large_pack(
            cluster.root / "packs",
            LARGE_TENANT,
            LARGE_AGENT,
            intents=args.intents,
            examples=args.examples,
        )
        worker = WorkerProcess(
            settings,
            cluster.root / "worker.log",
            env={"TURNSTREAM_MAX_PACK_TEXTS": str(limit)},
            log_level="INFO",
        )
        worker.start()
        try:
            await wait_ready(settings, [worker])
            result.update(
                await measure(settings, worker, pack_dir, sessions=args.sessions, turns=args.turns)
            )
        finally:
            worker.stop()
    result["loadavg_at_end"] = load_average()
    return result


def print_result(result: dict[str, Any]) -> None:
    print(
        f"pack {result['pack']['tenant']}: {result['texts_embedded']} texts indexed in "
        f"{result['load_s']} s (window {result['window_s']} s)"
    )
    for name in ("normal", "during", "after"):
        e2e = result[name]["e2e_ms"]
        print(
            f"  {name:7} {e2e['count']:4} turns  p50 {e2e.get('p50', 0):7.1f} ms  "
            f"p99 {e2e.get('p99', 0):7.1f} ms  max {e2e.get('max', 0):7.1f} ms  "
            f"errors {result[name]['errors']}  lost {result[name]['lost']}"
        )
    print(f"  p99 during / normal: {result['p99_ratio']}  p50: {result['p50_ratio']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--intents", type=int, default=1512, help="intents of the large pack")
    parser.add_argument("--examples", type=int, default=6, help="examples per intent")
    parser.add_argument("--sessions", type=int, default=2, help="acme-shop sessions at once")
    parser.add_argument("--turns", type=int, default=60, help="turns per session, normal/after")
    parser.add_argument("--bootstrap", help="an existing cluster instead of a private broker")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (worker log)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    result = asyncio.run(bench(args))
    print_result(result)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
