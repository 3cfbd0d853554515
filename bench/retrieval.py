"""P4 retrieval quality and latency on a labelled set of customer messages.

    python -m bench.retrieval [--json PATH] [--pack DIR] [--set PATH] [--rounds N]
                              [--backend torch|onnx-int8]

Indexes the pack (real all-MiniLM-L6-v2, Qdrant in memory), then runs each message as the
first turn of a session through the production path (``bench/first_turn.py``): ``understand``
(P1-P3, so the query text is the one a turn embeds), P4.1 (one embedding plus lexical
features, timed as ``embedding_ms``), one ``retrieve_one`` per type in parallel, as the four
retrieval consumers run them, and ``join``, which settles the canonical intent (timed together
as ``p4_latency_ms``, embedding excluded; memories are searched for a known customer who has
none stored). Settings come from ``load_settings()``, so ``TURNSTREAM_RETRIEVAL__*`` variables
try other values (the JSON records the ones used), with the pack's own ``agent.yaml``
overrides laid over them as a worker does (recorded under ``pack_overrides``). A set whose
messages carry only ``intent`` (``bench/data/acme_unseen_wordings.yaml``) gives intent top-1
only. ``--backend``
picks the embedder for both the index and the queries (default: the settings'
``embedder_backend``, i.e. ``TURNSTREAM_EMBEDDER_BACKEND``, else torch).

Figures:

- ``intent_top1``: share of messages whose canonical intent is the labelled one;
- ``rule_recall`` / ``rule_precision``: micro-averaged over the *selected* rules; rules the set
  lists as ``always_applicable`` are neither required nor counted as wrong. This is P4 alone:
  P5 then filters the retrieved rules, so P4 trades precision for recall on purpose;
- ``scenario_top1``: over messages labelled with a scenario, the best selected scenario is it;
- ``scenario_false_start_rate``: over messages labelled ``null``, the best scenario still
  scores ``>= scenarios.min_score``;
- latency p50/p99 (nearest rank) over ``--rounds`` passes after a warm-up (embedding: the
  first pass only, later ones would hit the embedder's cache), and embedding throughput at
  batch sizes 1, 8 and 32 on texts the cache has not seen (``embeddings_per_s``, keys
  ``"1"``, ``"8"``, ``"32"``; ``bench/embedding.py`` measures the same on synthetic corpora of
  two lengths).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.first_turn import BENCH_CUSTOMER, FirstTurns
from processors.embedding import Embedder
from processors.retrieval import RetrievalType
from processors.retrieval.intent import SENSOR_INTENT_WEIGHT
from schemas.pack import AgentPack
from sinks.embedder import EmbedderBackend, default_embedder
from sinks.pack_files import load_pack
from streams.settings import RetrievalSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SET = ROOT / "bench" / "data" / "acme_retrieval_set.yaml"
DEFAULT_PACK = "packs/acme-shop/support"
BATCH_SIZES = (1, 8, 32)
WARMUP_TURNS = 10


@dataclass(frozen=True)
class Example:
    """One labelled message."""

    text: str
    intent: str
    rules: frozenset[str] = frozenset()
    scenario: str | None = None


@dataclass(frozen=True)
class LabelledSet:
    pack_dir: Path
    always_applicable: frozenset[str]
    examples: tuple[Example, ...]
    intent_only: bool = False
    """The set labels intents only (no ``rules`` / ``scenario`` keys): no rule or scenario
    figures are computed from it."""


def load_set(path: Path = DEFAULT_SET) -> LabelledSet:
    """Read a set file; its ``pack`` path (default: the example pack) is relative to the
    repository root."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    intent_only = all("rules" not in m and "scenario" not in m for m in raw["messages"])
    examples = tuple(
        Example(str(m["text"]), str(m["intent"]), frozenset(m.get("rules", [])), m.get("scenario"))
        for m in raw["messages"]
    )
    pack_dir = ROOT / raw.get("pack", DEFAULT_PACK)
    always = frozenset(raw.get("always_applicable", []))
    return LabelledSet(pack_dir, always, examples, intent_only)


@dataclass(frozen=True)
class Turn:
    """What P4 gave for one message."""

    intent: str | None
    rules: tuple[str, ...]
    scenario: str | None
    scenario_score: float
    embedding_ms: float
    p4_ms: float


class IndexedPack:
    """A pack indexed in an in-memory Qdrant, running first turns up to the retrieval join."""

    def __init__(self, pack: AgentPack, embedder: Embedder, settings: RetrievalSettings) -> None:
        process = load_settings().model_copy(update={"retrieval": settings})
        self._turns = FirstTurns(embedder, process)
        self.points = self._turns.use(pack)

    def close(self) -> None:
        self._turns.close()

    async def turn(self, message: str) -> Turn:
        """``understand`` -> P4.1 -> ``retrieve_one`` per type -> ``join``."""
        joined = await self._turns.turn(message, BENCH_CUSTOMER)
        scenarios = joined.selected_ids(RetrievalType.SCENARIOS)
        best = joined.best_score(RetrievalType.SCENARIOS)
        return Turn(
            intent=joined.context.canonical_intent,
            rules=tuple(joined.selected_ids(RetrievalType.RULES)),
            scenario=scenarios[0] if scenarios else None,
            scenario_score=best if best is not None else -math.inf,
            embedding_ms=joined.embedding_ms,
            p4_ms=joined.p4_ms,
        )


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty sample."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 3), "p99": round(percentile(values, 99), 3)}


def _ratio(hits: int, total: int) -> float:
    return round(hits / total, 4) if total else 1.0


def score(
    labelled: LabelledSet, turns: Sequence[Turn], scenario_min_score: float
) -> dict[str, Any]:
    """Quality figures, counts and misses of one pass over the set."""
    misses: list[dict[str, Any]] = []
    intent_hits = labelled_rules = found = retrieved = 0
    scenario_hits = scenario_total = false_starts = null_total = 0
    for ex, turn in zip(labelled.examples, turns, strict=True):
        if turn.intent == ex.intent:
            intent_hits += 1
        else:
            misses.append(_miss("intent", ex.text, ex.intent, turn.intent))
        if labelled.intent_only:
            continue
        got = [r for r in turn.rules if r not in labelled.always_applicable]
        labelled_rules += len(ex.rules)
        found += len(ex.rules.intersection(got))
        retrieved += len(got)
        if not ex.rules.issubset(got):
            miss = _miss("rules", ex.text, sorted(ex.rules), got)
            misses.append({**miss, "missing": sorted(ex.rules.difference(got))})
        if ex.scenario is None:
            null_total += 1
            false_starts += turn.scenario_score >= scenario_min_score
        else:
            scenario_total += 1
            if turn.scenario == ex.scenario:
                scenario_hits += 1
            else:
                misses.append(_miss("scenario", ex.text, ex.scenario, turn.scenario))
    if labelled.intent_only:
        return {
            "intent_top1": _ratio(intent_hits, len(turns)),
            "counts": {"messages": len(turns), "intent_right": intent_hits},
            "misses": misses,
        }
    return {
        "intent_top1": _ratio(intent_hits, len(turns)),
        "rule_recall": _ratio(found, labelled_rules),
        "rule_precision": _ratio(found, retrieved),
        "scenario_top1": _ratio(scenario_hits, scenario_total),
        "scenario_false_start_rate": _ratio(false_starts, null_total),
        "counts": {
            "messages": len(turns),
            "labelled_rules": labelled_rules,
            "retrieved_rules": retrieved,
            "scenario_labelled": scenario_total,
            "scenario_null": null_total,
        },
        "misses": misses,
    }


def _miss(kind: str, text: str, expected: object, got: object) -> dict[str, Any]:
    return {"kind": kind, "text": text, "expected": expected, "got": got}


async def _passes(indexed: IndexedPack, texts: Sequence[str], rounds: int) -> list[list[Turn]]:
    """Warm up (model, store, thread pool), then ``rounds`` sequential passes over ``texts``."""
    for i in range(WARMUP_TURNS):
        await indexed.turn(f"warm-up turn {i}: where is my order?")
    return [[await indexed.turn(t) for t in texts] for _ in range(rounds)]


def embedding_throughput(embedder: Embedder, texts: Sequence[str]) -> dict[str, float]:
    """Embeddings per second at each batch size, on salted texts the cache has never seen."""
    out: dict[str, float] = {}
    for batch in BATCH_SIZES:
        fresh = [f"{t} #{batch}.{i}" for i, t in enumerate(texts)]
        embedder.embed([f"warm-up batch {batch}.{i}" for i in range(batch)])
        started = time.perf_counter()
        for i in range(0, len(fresh), batch):
            embedder.embed(fresh[i : i + batch])
        out[str(batch)] = round(len(fresh) / (time.perf_counter() - started), 1)
    return out


def evaluate(
    labelled: LabelledSet,
    *,
    pack_dir: Path | None = None,
    settings: RetrievalSettings | None = None,
    rounds: int = 1,
    throughput: bool = False,
    backend: EmbedderBackend | None = None,
) -> dict[str, Any]:
    """Index the pack, warm up, run the set ``rounds`` times and return every figure.
    ``settings`` default to the process settings; the pack's ``agent.yaml`` overrides are laid
    over them by the turn, as in a worker. ``backend`` embeds the pack and the messages
    (default: the process settings' ``embedder_backend``)."""
    embedder = default_embedder(backend=backend)
    pack_dir = pack_dir or labelled.pack_dir
    pack = load_pack(pack_dir)
    settings = settings or load_settings().retrieval
    applied = pack.agent.apply_to(load_settings().model_copy(update={"retrieval": settings}))
    indexed = IndexedPack(pack, embedder, settings)
    texts = [ex.text for ex in labelled.examples]
    try:
        passes = asyncio.run(_passes(indexed, texts, max(1, rounds)))
    finally:
        indexed.close()
    report: dict[str, Any] = {
        "pack": str(pack_dir),
        "path": "understand -> retrieve_one per type -> join (bench/first_turn.py)",
        "model": embedder.model_id,
        "store": "qdrant :memory:",
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "rounds": len(passes),
        "indexed_points": indexed.points,
        **score(labelled, passes[0], applied.retrieval.scenarios.min_score),
        "p4_latency_ms": _spread([t.p4_ms for p in passes for t in p]),
        "embedding_ms": _spread([t.embedding_ms for t in passes[0]]),
        "settings": {
            "retrieval": applied.retrieval.model_dump(mode="json"),
            "pack_overrides": pack.agent.retrieval.model_dump(mode="json", exclude_unset=True),
            "canonical_intent": {"sensor": "heuristic", "sensor_weight": SENSOR_INTENT_WEIGHT},
        },
    }
    if throughput:
        report["embeddings_per_s"] = embedding_throughput(embedder, texts)
    return report


def print_summary(report: dict[str, Any]) -> None:
    """The figures, then every miss with what was expected and what came back."""
    counts = report["counts"]
    print(f"{report['model']}, {report['store']}, {report['cpus']} cpus: {report['pack']}")
    print(f"{counts['messages']} messages, {report['rounds']} rounds, {report['indexed_points']}")
    print(f"intent top-1           {report['intent_top1']:.3f}")
    if "rule_recall" not in report:  # an intent-only set
        print(f"misses ({len(report['misses'])}):")
        for miss in report["misses"]:
            print(f"  {miss['text']!r}: expected {miss['expected']}, got {miss['got']}")
        return
    print(f"rule recall            {report['rule_recall']:.3f}  of {counts['labelled_rules']}")
    print(f"rule precision         {report['rule_precision']:.3f}  of {counts['retrieved_rules']}")
    print(f"scenario top-1         {report['scenario_top1']:.3f}  of {counts['scenario_labelled']}")
    print(
        f"scenario false starts  {report['scenario_false_start_rate']:.3f}"
        f"  of {counts['scenario_null']}"
    )
    print(f"P4 latency ms          {report['p4_latency_ms']}")
    print(f"embedding ms           {report['embedding_ms']}")
    if "embeddings_per_s" in report:
        print(f"embeddings per s       {report['embeddings_per_s']}")
    print(f"misses ({len(report['misses'])}):")
    for miss in report["misses"]:
        missing = f"  missing {miss['missing']}" if "missing" in miss else ""
        print(f"  [{miss['kind']}] {miss['text']!r}")
        print(f"      expected {miss['expected']}  got {miss['got']}{missing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--pack", type=Path, help="pack folder (default: the set's pack)")
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="labelled set (YAML)")
    parser.add_argument("--rounds", type=int, default=5, help="passes for the latency figures")
    parser.add_argument(
        "--backend",
        choices=["torch", "onnx-int8"],
        help="embedder for the index and the queries (default: the settings' embedder_backend)",
    )
    args = parser.parse_args()
    report = evaluate(
        load_set(args.set),
        pack_dir=args.pack,
        rounds=args.rounds,
        throughput=True,
        backend=args.backend,
    )
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
