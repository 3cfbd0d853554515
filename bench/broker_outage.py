"""What a worker does while its broker is away: log lines and connection attempts per outage.

    python bench/broker_outage.py [--at start|run] [--after S] [--down 30] [--no-strace]

A private broker on free ports (outside the ephemeral range) in a temporary directory, the
example pack, one ``turnstream worker`` process logging at INFO. ``--at run``: one turn is
answered first, then the broker stops ``--after`` seconds later; ``--at start``: the broker
stops ``--after`` seconds after the worker process starts (mid-start). The broker stays down
``--down`` seconds, then starts again on its data dir and one more turn is sent. Prints the
worker's log lines by level during the outage, its ``connect()`` calls to the broker's port
(``strace -f -e trace=connect`` attached to the worker for the outage; ``--no-strace`` skips
it), whether the worker survived, and whether it answered after the restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness.pipeline import pipeline_settings, prepare  # noqa: E402
from schemas.domain.turn_input import Channel, TurnInput  # noqa: E402
from streams.local_kafka import LocalKafka, private_broker_settings  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.turn_client import TurnClient  # noqa: E402
from streams.worker_process import WorkerProcess  # noqa: E402

_LEVEL = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


async def _answer(settings: Settings, who: str) -> str:
    message = TurnInput(
        tenant_id="acme-shop",
        agent_id="support",
        channel=Channel.WEBCHAT,
        channel_id=who,
        message="where is my order A-10024?",
    )
    async with TurnClient(settings) as client:
        turn_id = await client.send(message)
        response = await client.response(turn_id, timeout=300)
        return str(response.status.value)


async def run(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="turnstream-outage-"))
    base = private_broker_settings(root)
    broker = LocalKafka(base)
    await asyncio.to_thread(broker.up)
    settings = pipeline_settings(base, "o", partitions=4, analytics=False, data_dir=root / "data")
    settings = settings.model_copy(update={"ops": settings.ops.model_copy(update={"port": 0})})
    await prepare(settings)
    log = root / "worker.log"
    worker = WorkerProcess(settings, log, inherit=False, log_level="INFO")
    strace: subprocess.Popen[bytes] | None = None
    try:
        worker.start()
        if args.at == "run":
            print("answered before the outage:", await _answer(settings, "before"))
        await asyncio.sleep(args.after)
        await asyncio.to_thread(broker.down)
        since = len(log.read_text().splitlines())
        print(f"broker {base.bootstrap_servers} stopped; worker alive: {worker.alive()}")
        trace = root / "strace.txt"
        if args.strace and shutil.which("strace") and worker.alive():
            command = ["strace", "-f", "-qq", "-e", "trace=connect", "-p", str(worker.pid)]
            strace = subprocess.Popen([*command, "-o", str(trace)])
        await asyncio.sleep(args.down)
        if strace is not None:
            strace.terminate()
            strace.wait()
        outage = log.read_text(errors="replace").splitlines()[since:]
        levels: dict[str, int] = {}
        for line in outage:
            if found := _LEVEL.match(line):
                levels[found[1]] = levels.get(found[1], 0) + 1
        port = f"htons({base.kafka_port})"
        attempts = (
            sum(port in line for line in trace.read_text().splitlines()) if trace.exists() else None
        )
        print(
            f"{args.down:.0f} s outage: {len(outage)} log lines {levels}; connect() calls to "
            f"the broker's port: {attempts}; worker alive: {worker.alive()} "
            f"(exit code {worker.exit_code()})"
        )
        await asyncio.to_thread(broker.up)
        answered = await _answer(settings, "after") if worker.alive() else "no worker"
        print(f"broker back; answered after the outage: {answered}; log: {log}")
        return 0 if worker.alive() and answered == "OK" else 1
    finally:
        if strace is not None and strace.poll() is None:
            strace.terminate()
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(broker.down)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--at", choices=("start", "run"), default="run")
    parser.add_argument("--after", type=float, default=2.0, help="seconds before the stop")
    parser.add_argument("--down", type=float, default=30.0, help="seconds stopped")
    parser.add_argument("--no-strace", dest="strace", action="store_false")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
