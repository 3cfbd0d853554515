"""Sustained analytics rows/s into the embedded ClickHouse engine (chdb).

    python bench/analytics.py [--turns 20000] [--batch 1000] [--json PATH]

Builds the rows of ``--turns`` distinct completed turns (the fully populated sample turn with
a new turn id each: 17 rows in 9 tables per turn) and writes them with the analytics sink's
own ``AnalyticsStore.write``, ``--batch`` turns per write (the consumer's batch size), into a
fresh data dir in a temporary directory. Reports:

* ``build``: row building alone (Python, per turn);
* ``write``: inserts alone, rows/s over the whole run (sustained, not a burst);
* ``build+write``: both, as the consumer does them (decoding from Kafka not included);
* a check that ``count() FINAL`` finds every row once.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from schemas.events.completed_turn import CompletedTurn
from schemas.samples import SESSION_KEY, turn_record
from sinks.analytics import rows, tables
from sinks.analytics.store import AnalyticsStore
from streams.settings import load_settings


def make_turns(count: int) -> list[CompletedTurn]:
    record = turn_record()
    intents = ("refund_request", "order_status", "shipping", "returns", None)
    turns = []
    for i in range(count):
        ctx = record.context.model_copy(update={"canonical_intent": intents[i % len(intents)]})
        copy = record.model_copy(update={"turn_id": f"bench-{i:07d}", "context": ctx})
        turns.append(
            CompletedTurn(session_key=SESSION_KEY, record=copy, emitted_at=copy.completed_at)
        )
    return turns


def run(turn_count: int, batch_turns: int) -> dict[str, Any]:
    turns = make_turns(turn_count)
    with tempfile.TemporaryDirectory(prefix="turnstream-bench-") as tmp:
        settings = load_settings(data_dir=Path(tmp), clickhouse_url=None)
        store = AnalyticsStore.open(settings)
        try:
            started = time.perf_counter()
            batches = [
                rows.merge(rows.completed_turn_rows(t) for t in turns[i : i + batch_turns])
                for i in range(0, len(turns), batch_turns)
            ]
            build_s = time.perf_counter() - started
            total_rows = sum(len(b) for b in batches)

            started = time.perf_counter()
            for batch in batches:
                store.write(batch)
            write_s = time.perf_counter() - started

            counted = sum(
                int(store.query(f"SELECT count() FROM {t.name} FINAL").rows[0][0])
                for t in tables.TURN_TABLES
            )
        finally:
            store.close()
    return {
        "turns": turn_count,
        "rows": total_rows,
        "rows_per_turn": round(total_rows / turn_count, 2),
        "batch_turns": batch_turns,
        "rows_per_batch": round(total_rows / len(batches)),
        "build_rows_per_s": round(total_rows / build_s),
        "write_rows_per_s": round(total_rows / write_s),
        "build_and_write_rows_per_s": round(total_rows / (build_s + write_s)),
        "turns_per_s": round(turn_count / (build_s + write_s)),
        "write_ms_per_batch": round(write_s * 1000 / len(batches), 2),
        "rows_found_with_final": counted,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000, help="turns per write")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = run(args.turns, args.batch)
    for key, value in result.items():
        print(f"{key:28} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["rows_found_with_final"] == result["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
