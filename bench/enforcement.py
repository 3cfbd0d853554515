"""P10 lane 1 (enforcement expressions) per turn: CPU time and latency, alone and while the
loop's default thread pool is busy (as retrieval keeps it under load).

    python bench/enforcement.py [--turns 2000] [--busy 16] [--json PATH]

Each turn checks the example pack's hard constraints (every GLOBAL one plus the applied
rules') against a typical answer. ``alone``: one turn at a time; ``busy``: the same while
``--busy`` blocking 5 ms calls at a time queue on the default executor, with 20 turns in
flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from processors.phases.enforcement import constraints_to_check, enforce
from schemas.domain.outcome import Resolution, TurnOutcome
from schemas.domain.plan import ResponsePlan, ResponseType
from schemas.domain.rules import AppliedRule, RuleVerdict
from schemas.pack.agent_pack import AgentPack
from sinks.pack_files import load_pack

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
ANSWER_TEXT = "I can refund 40 USD for order A-10023 today; it should arrive by 2026-12-03."
VARIABLES = {"customer_tier": "standard", "order_id": "A-10023", "order_total": 60.0}


async def one(pack: AgentPack, applied: list[AppliedRule]) -> float:
    started = time.perf_counter()
    await enforce(
        ANSWER_TEXT,
        ResponsePlan(response_type=ResponseType.ANSWER),
        applied,
        pack,
        VARIABLES,
        attempt=1,
        max_attempts=3,
        outcome=TurnOutcome(resolution=Resolution.RESOLVED),
    )
    return (time.perf_counter() - started) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def main(turns: int, busy: int) -> dict[str, object]:
    pack = load_pack(PACK_DIR)
    applied = [
        AppliedRule(rule_id=r.id, score=1.0, verdict=RuleVerdict.APPLIES)
        for r in pack.rules
        if r.is_hard_constraint
    ]
    rules = [r for r in constraints_to_check(pack, applied) if r.enforcement_expression]
    for _ in range(50):
        await one(pack, applied)
    cpu, wall = time.process_time(), time.perf_counter()
    alone = [await one(pack, applied) for _ in range(turns)]
    cpu_ms = (time.process_time() - cpu) / turns * 1000
    alone_wall = (time.perf_counter() - wall) / turns * 1000

    stop = asyncio.Event()

    async def retrieval_like() -> None:
        while not stop.is_set():
            await asyncio.to_thread(time.sleep, 0.005)

    load = [asyncio.create_task(retrieval_like()) for _ in range(busy)]
    await asyncio.sleep(0.05)
    loaded: list[float] = []

    async def turn_source(n: int) -> None:
        for _ in range(n):
            loaded.append(await one(pack, applied))

    await asyncio.gather(*(turn_source(max(1, turns // 20 // 4)) for _ in range(20)))
    stop.set()
    await asyncio.gather(*load)
    return {
        "expressions_per_turn": len(rules),
        "alone": {
            "cpu_ms_per_turn": round(cpu_ms, 3),
            "wall_ms_per_turn": round(alone_wall, 3),
            "p50_ms": pct(alone, 0.5),
            "p99_ms": pct(alone, 0.99),
        },
        "busy_default_pool": {
            "blocking_calls_in_flight": busy,
            "turns_in_flight": 20,
            "p50_ms": pct(loaded, 0.5),
            "p99_ms": pct(loaded, 0.99),
            "mean_ms": round(statistics.fmean(loaded), 3),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--busy", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main(args.turns, args.busy))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
