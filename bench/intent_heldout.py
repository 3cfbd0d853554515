"""Intent retrieval measured without tuning on the labelled set: leave-one-out and split halves.

    python -m bench.intent_heldout [--json PATH] [--set PATH] [--no-sweep]

``bench/retrieval.py`` reports intent top-1 on the labelled set; a change chosen by looking at
that figure can fit the set instead of the problem. This bench gives the figures a change has
to improve as well, each through the production path of a first turn (``bench/first_turn.py``:
``understand`` -> ``retrieve_one`` per type -> ``join``, whose canonical intent is the figure),
with the process' settings and the configuration's ``pool_top_n``:

- ``loo``: leave-one-out over the pack's own example phrases. Each intent example phrase is
  removed from the pack (index *and* the heuristic sensor's phrase list) and classified
  against the rest; top-1 over all phrases of intents with two or more. It never reads the
  labelled set.
- ``set`` / ``halves``: top-1 on the labelled set, and on its two halves (messages at even
  and at odd positions).

Both for the pack as it is (``with_descriptions``: intents indexed on their examples and
their description, the current method) and with the descriptions blanked
(``examples_only``: the method before descriptions were indexed).

``--no-sweep`` skips the hyper-parameter sweep: ``pool_top_n`` 1..5 x lexical weight
{0, 0.15, 0.3, 0.45} (vector weight ``1 - lexical``). The fusion weights are not a setting a
turn reads (``HybridParams`` defaults), so configurations with another lexical weight call
``retrieve`` on the intents directly, over the same query a turn builds (``understand``), and
merge with ``canonical_intent`` as ``join`` does. For each selection criterion (LOO,
half A, half B) it reports the configuration that criterion picks (ties go to the current
defaults, then to the smaller pool and lexical weight) and that configuration's figures on
the data it was not picked on: a default the held-out data would not pick is a default
fitted to the set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.first_turn import FirstTurns
from bench.retrieval import DEFAULT_SET, load_set
from processors.embedding import Embedder
from processors.retrieval import HybridParams, Scope, canonical_intent, retrieve
from processors.turn.retrieval_stage import query_features
from schemas.domain.retrieval import RetrievalType
from schemas.pack import AgentPack
from sinks.embedder import default_embedder
from sinks.pack_files import load_pack
from streams.settings import RetrievalSettings, load_settings

POOLS = (1, 2, 3, 4, 5)
LEXICAL_WEIGHTS = (0.0, 0.15, 0.3, 0.45)


@dataclass(frozen=True)
class Config:
    pool_top_n: int
    lexical_weight: float

    @property
    def name(self) -> str:
        return f"pool={self.pool_top_n} lexical={self.lexical_weight}"


class IntentIndex:
    """First turns against one agent's pack, re-synced when the pack changes."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._turns: dict[int, FirstTurns] = {}

    def close(self) -> None:
        for turns in self._turns.values():
            turns.close()

    def _first_turns(self, pool_top_n: int) -> FirstTurns:
        if pool_top_n not in self._turns:
            process = load_settings()
            intents = process.retrieval.intents.model_copy(update={"pool_top_n": pool_top_n})
            retrieval = process.retrieval.model_copy(update={"intents": intents})
            self._turns[pool_top_n] = FirstTurns(
                self._embedder, process.model_copy(update={"retrieval": retrieval})
            )
        return self._turns[pool_top_n]

    def classify(
        self, pack: AgentPack, messages: Sequence[str], config: Config
    ) -> list[str | None]:
        """Sync ``pack``, then each message's canonical intent under ``config``."""
        turns = self._first_turns(config.pool_top_n)
        turns.use(pack)
        return asyncio.run(self._classify(turns, pack, messages, config))

    async def _classify(
        self, turns: FirstTurns, pack: AgentPack, messages: Sequence[str], config: Config
    ) -> list[str | None]:
        out: list[str | None] = []
        production = config.lexical_weight == HybridParams().lexical_weight
        for message in messages:
            joined = await turns.turn(message)
            if production:
                out.append(joined.context.canonical_intent)
                continue
            hybrid = HybridParams(
                vector_weight=1.0 - config.lexical_weight, lexical_weight=config.lexical_weight
            )
            scope = Scope(pack.agent.tenant_id, pack.agent.agent_id, RetrievalType.INTENTS)
            text = joined.query_text
            query = query_features(text, self._embedder.embed([text])[0])
            settings = turns.deps.settings_for(pack).retrieval.intents
            outcome = retrieve(scope, query, turns.store, turns.lexicon, settings, hybrid=hybrid)
            out.append(canonical_intent(message, pack, outcome.items)[0])
        return out


def without_descriptions(pack: AgentPack) -> AgentPack:
    intents = [i.model_copy(update={"description": ""}) for i in pack.intents]
    return pack.model_copy(update={"intents": intents})


def leave_one_out(index: IntentIndex, pack: AgentPack, config: Config) -> list[bool]:
    """For each example phrase of an intent with two or more: right without that phrase?"""
    hits = []
    for n, intent in enumerate(pack.intents):
        phrases = list(dict.fromkeys(p.strip() for p in intent.examples))
        if len(phrases) < 2:
            continue
        for phrase in phrases:
            rest = intent.model_copy(update={"examples": [p for p in phrases if p != phrase]})
            intents = [*pack.intents[:n], rest, *pack.intents[n + 1 :]]
            held_out = pack.model_copy(update={"intents": intents})
            hits.append(index.classify(held_out, [phrase], config)[0] == intent.id)
    return hits


@dataclass(frozen=True)
class Figures:
    loo: list[bool]
    set_hits: list[bool]

    def summary(self) -> dict[str, Any]:
        half_a, half_b = self.set_hits[0::2], self.set_hits[1::2]
        return {
            "loo": _share(self.loo),
            "set": _share(self.set_hits),
            "half_a": _share(half_a),
            "half_b": _share(half_b),
        }


def _share(hits: Sequence[bool]) -> dict[str, Any]:
    return {"right": sum(hits), "of": len(hits), "top1": round(sum(hits) / len(hits), 4)}


def measure(
    index: IntentIndex, pack: AgentPack, texts: Sequence[str], labels: Sequence[str], c: Config
) -> Figures:
    got = index.classify(pack, texts, c)
    return Figures(
        leave_one_out(index, pack, c), [g == e for g, e in zip(got, labels, strict=True)]
    )


def sweep(
    index: IntentIndex,
    pack: AgentPack,
    texts: Sequence[str],
    labels: Sequence[str],
    default: Config,
) -> dict[str, Any]:
    """Every configuration's figures, and what each criterion picks (see the docstring)."""
    configs = [Config(p, w) for p in POOLS for w in LEXICAL_WEIGHTS]
    figures = {c: measure(index, pack, texts, labels, c).summary() for c in configs}

    def pick(criterion: Callable[[dict[str, Any]], int]) -> Config:
        return min(
            configs,
            key=lambda c: (-criterion(figures[c]), c != default, c.pool_top_n, c.lexical_weight),
        )

    picks = {
        "by_loo": pick(lambda f: int(f["loo"]["right"])),
        "by_half_a": pick(lambda f: int(f["half_a"]["right"])),
        "by_half_b": pick(lambda f: int(f["half_b"]["right"])),
    }
    return {
        "default": default.name,
        "configs": {c.name: figures[c] for c in configs},
        "picks": {criterion: {"config": c.name, **figures[c]} for criterion, c in picks.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="labelled set (YAML)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the parameter sweep")
    args = parser.parse_args()
    labelled = load_set(args.set)
    pack = load_pack(labelled.pack_dir)
    texts = [ex.text for ex in labelled.examples]
    labels = [ex.intent for ex in labelled.examples]
    intents = RetrievalSettings().intents
    default = Config(intents.pool_top_n, HybridParams().lexical_weight)
    index = IntentIndex(default_embedder())
    report: dict[str, Any] = {"pack": str(labelled.pack_dir), "default": default.name}
    try:
        variants = {"examples_only": without_descriptions(pack), "with_descriptions": pack}
        for name, variant in variants.items():
            report[name] = measure(index, variant, texts, labels, default).summary()
            print(f"{name:18} {_line(report[name])}")
        if not args.no_sweep:
            for name, variant in variants.items():
                report[f"sweep_{name}"] = result = sweep(index, variant, texts, labels, default)
                for criterion, picked in result["picks"].items():
                    print(f"{name:18} {criterion:10} {picked['config']:22} {_line(picked)}")
    finally:
        index.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _line(f: dict[str, Any]) -> str:
    return "  ".join(
        f"{k} {f[k]['right']}/{f[k]['of']} ({f[k]['top1']:.3f})"
        for k in ("loo", "set", "half_a", "half_b")
    )


if __name__ == "__main__":
    main()
