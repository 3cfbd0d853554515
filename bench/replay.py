"""Replay of 1,000 recorded turns against the pack that recorded them (issue 18: < 30 s).

Recording: the pack's conversation tests (``<pack>/tests/*.yaml``), each played again and
again as a new visitor and session until ``--turns`` turns ran, through the in-process turn
runner with the pack's real tools; the turns are written to an export file (``--no-mask``)
and read back.
Measured, the recording itself not included:

* ``cli_s``: ``turnstream replay run PACK --from-export FILE --json ...`` in a fresh process,
  wall clock: imports, model load, pack indexing, reading the export, every turn, the
  report. This is the figure of the issue's target (< 30 s);
* ``replay_s``: ``streams.replay_run.replay_pack`` in this process, after the recording
  (the model is loaded and its embedding cache holds the messages already: a warm figure).

The number of changed turns is printed too: it must be 0 (the determinism check).

    python bench/replay.py [--turns 1000] [--json bench/results/replay.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from processors.pack.conversations import load_suite
from processors.phases.tools import PackToolExecutor
from processors.replay.recording import RecordedTurn, recorded_turn
from processors.replay.report import summarize
from processors.tool_policy import ToolPolicy
from processors.turn.in_process import MemoryState, run_turn
from schemas.domain.turn_input import TurnInput
from schemas.events.turn_requested import TurnRequested
from sinks.pack_files import PackFiles, load_pack
from sinks.python_tools import PythonToolExecutor
from sinks.turn_deps import RetrievalPorts
from streams.replay_run import replay_pack
from streams.replay_source import read_export, write_export
from streams.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
CLI = [
    sys.executable,
    "-c",
    "import sys; from streams.cli import main; sys.exit(main(sys.argv[1:]))",
]


async def record(pack_dir: Path, settings: Settings, turns: int) -> list[RecordedTurn]:
    """``turns`` turns of the pack's test conversations, run in process with real tools."""
    pack = load_pack(pack_dir)
    suite = load_suite(PackFiles(pack_dir), pack)
    if not suite.conversations:
        raise SystemExit(f"{pack_dir}: no conversation tests to record")
    ports = RetrievalPorts.in_memory(settings)
    ports.sync(pack)
    executor = PackToolExecutor(PythonToolExecutor(pack_dir, ToolPolicy.of(settings.tools)))
    deps = ports.turn_deps(settings, lambda _p: executor)
    state = MemoryState()
    state.add_pack(pack)
    recorded: list[RecordedTurn] = []
    round_ = 0
    try:
        while len(recorded) < turns:
            round_ += 1
            for n, loaded in enumerate(suite.conversations):
                channel_id = f"bench-{round_}-{n}"
                for turn in loaded.conversation.turns:
                    if len(recorded) >= turns:
                        return recorded
                    given = TurnInput(
                        tenant_id=pack.agent.tenant_id,
                        agent_id=pack.agent.agent_id,
                        channel=loaded.conversation.channel,
                        channel_id=channel_id,
                        customer_id=loaded.conversation.customer_id,
                        session_id=channel_id,
                        message=turn.say,
                    )
                    request = TurnRequested(
                        turn_id=f"turn-{uuid.uuid4().hex}", input=given, sent_at=datetime.now(UTC)
                    )
                    _response, got = await run_turn(request, state, deps)
                    recorded.append(recorded_turn(request, got))
    finally:
        ports.close()
    return recorded


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, default=REPO / "packs" / "acme-shop" / "support")
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    settings = load_settings()
    started = time.perf_counter()
    turns = await record(args.pack, settings, args.turns)
    record_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "turns.jsonl"
        write_export(turns, export, None, mask=False)
        size = export.stat().st_size
        started = time.perf_counter()
        read = read_export(export)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        run = await replay_pack(read.turns, args.pack, settings)
        replay_s = time.perf_counter() - started
        report = Path(tmp) / "report.json"
        command = [
            *CLI,
            "replay",
            "run",
            str(args.pack),
            "--from-export",
            str(export),
            "--json",
            str(report),
            "--fail-on",
            "any",
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        cli_s = time.perf_counter() - started
        if done.returncode not in (0, 1) or not report.exists():
            raise SystemExit(f"the replay command failed: {done.stderr or done.stdout}")
        cli_changed = json.loads(report.read_text())["summary"]["changed_turns"]
    summary = summarize(run)
    figures = {
        "turns": summary.turns,
        "conversations": summary.conversations,
        "changed_turns": summary.changed_turns,
        "export_bytes": size,
        "record_s": round(record_s, 2),
        "cli_s": round(cli_s, 2),
        "cli_changed_turns": cli_changed,
        "cli_turns_per_s": round(summary.turns / cli_s, 1),
        "read_export_s": round(read_s, 3),
        "replay_s": round(replay_s, 2),
        "replay_turns_per_s": round(summary.turns / replay_s, 1),
        "target_s": 30,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    for key, value in figures.items():
        print(f"{key:>16}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main())
