"""Retrieval quality and P4 latency on the example pack's labelled message set.

Indexes the pack with the real all-MiniLM-L6-v2 embedder into Qdrant (in memory), then for
every labelled message: P4.1 (one embedding, timed alone) and the four retrievals in
parallel (`p4_latency_ms`, embedding excluded). The canonical intent is `merge_intent` with
no sensor intent, so `intent_top1` measures retrieval alone. Prints a summary and the misses;
`--json PATH` writes the figures.

    python bench/retrieval.py --json bench/results/retrieval.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from processors.pack import load_pack
from processors.retrieval import (
    Indexer,
    LexicalIndexes,
    RetrievalType,
    build_query_features,
    merge_intent,
    retrieve_all,
)
from processors.retrieval.pack_items import sync_pack
from sinks.embedder import SentenceTransformerEmbedder, default_embedder
from sinks.vector_store import VectorStore
from streams.settings import RetrievalSettings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACK = ROOT / "packs" / "acme-shop" / "support"
DEFAULT_SET = ROOT / "bench" / "data" / "acme_retrieval_set.yaml"


@dataclass(frozen=True)
class Labelled:
    text: str
    intent: str
    rules: frozenset[str]
    scenario: str | None


@dataclass
class Evaluation:
    intent_hits: int = 0
    rules_expected: int = 0
    rules_found: int = 0
    rules_retrieved: int = 0
    rules_correct: int = 0
    scenario_labelled: int = 0
    scenario_hits: int = 0
    scenario_unlabelled: int = 0
    scenario_false_starts: int = 0
    p4_ms: list[float] = field(default_factory=list)
    embedding_ms: list[float] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)


def load_set(path: Path) -> list[Labelled]:
    raw = yaml.safe_load(path.read_text())["messages"]
    return [
        Labelled(m["text"], m["intent"], frozenset(m["rules"]), m.get("scenario"))
        for m in raw
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def evaluate(
    pack_dir: Path, messages: list[Labelled], settings: RetrievalSettings
) -> dict[str, Any]:
    """Index the pack, run P4 for every message, and score it against the labels."""
    pack = load_pack(pack_dir)
    tenant, agent = pack.agent.tenant_id, pack.agent.agent_id
    embedder = default_embedder()
    store = VectorStore.memory(embedder.dim)
    lexicon = LexicalIndexes(store.documents)
    sync_pack(Indexer(store, embedder, lexicon), pack)

    async def p4(text: str) -> tuple[Any, float, float]:
        started = time.perf_counter()
        query = build_query_features(text, embedder)
        embedded = time.perf_counter()
        outcomes = await retrieve_all(query, tenant, agent, None, store, lexicon, settings)
        done = time.perf_counter()
        return outcomes, (embedded - started) * 1000, (done - embedded) * 1000

    for warm in ("warm up the model", "and the store"):
        await p4(warm)

    ev = Evaluation()
    for message in messages:
        outcomes, embed_ms, p4_ms = await p4(message.text)
        ev.embedding_ms.append(embed_ms)
        ev.p4_ms.append(p4_ms)
        intent, _, _ = merge_intent(None, 0.0, outcomes[RetrievalType.INTENTS].items)
        rules = {item.object_id for item in outcomes[RetrievalType.RULES].items}
        scenarios = [item for item in outcomes[RetrievalType.SCENARIOS].items]
        top_scenario = scenarios[0].object_id if scenarios else None

        ev.intent_hits += intent == message.intent
        ev.rules_expected += len(message.rules)
        ev.rules_found += len(message.rules & rules)
        ev.rules_retrieved += len(rules)
        ev.rules_correct += len(rules & message.rules)
        if message.scenario is None:
            ev.scenario_unlabelled += 1
            ev.scenario_false_starts += top_scenario is not None
        else:
            ev.scenario_labelled += 1
            ev.scenario_hits += top_scenario == message.scenario
        if intent != message.intent or not message.rules <= rules:
            ev.misses.append(
                {
                    "text": message.text,
                    "intent": [message.intent, intent],
                    "rules_missed": sorted(message.rules - rules),
                }
            )

    n = len(messages)
    return {
        "messages": n,
        "pack": str(pack_dir),
        "intent_top1": round(ev.intent_hits / n, 4),
        "rule_recall": round(ev.rules_found / max(1, ev.rules_expected), 4),
        "rule_precision": round(ev.rules_correct / max(1, ev.rules_retrieved), 4),
        "scenario_top1": round(ev.scenario_hits / max(1, ev.scenario_labelled), 4),
        "scenario_false_start_rate": round(
            ev.scenario_false_starts / max(1, ev.scenario_unlabelled), 4
        ),
        "p4_latency_ms": {
            "p50": round(statistics.median(ev.p4_ms), 2),
            "p99": round(_percentile(ev.p4_ms, 0.99), 2),
        },
        "embedding_ms": {
            "p50": round(statistics.median(ev.embedding_ms), 2),
            "p99": round(_percentile(ev.embedding_ms, 0.99), 2),
        },
        "settings": settings.model_dump(mode="json"),
        "misses": ev.misses,
    }


def embedding_throughput(texts: list[str], batch_sizes: tuple[int, ...] = (1, 8, 32)) -> dict[
    str, float
]:
    """Embeddings per second of the raw model (no cache) at each batch size."""
    inner = SentenceTransformerEmbedder()
    rates: dict[str, float] = {}
    for size in batch_sizes:
        inner.embed(texts[:size])
        started = time.perf_counter()
        done = 0
        for start in range(0, len(texts) - size + 1, size):
            inner.embed(texts[start : start + size])
            done += size
        rates[str(size)] = round(done / (time.perf_counter() - started), 1)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, default=DEFAULT_PACK)
    parser.add_argument("--set", type=Path, default=DEFAULT_SET)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    messages = load_set(args.set)
    result = asyncio.run(evaluate(args.pack, messages, load_settings().retrieval))
    result["embeddings_per_s"] = embedding_throughput([m.text for m in messages] * 2)
    for miss in result["misses"]:
        print(f"miss: {miss['text']!r} intent {miss['intent']} rules missed {miss['rules_missed']}")
    summary = {key: value for key, value in result.items() if key not in ("misses", "settings")}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
