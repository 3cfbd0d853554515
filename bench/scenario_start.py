"""Calibrate P6's ``dialogue.start_threshold`` on the fused scores a turn really sees.

    python -m bench.scenario_start [--json PATH] [--set PATH] [--thresholds 0.3,0.35,...]

Each message of a labelled set (default ``bench/data/acme_retrieval_set.yaml``: 151
messages, each labelled with the scenario that should start, or null) runs through the
production path of a first turn: P1-P3 (``understand``), the P4.1 embedding, one
``retrieve_one`` per type, ``join`` (canonical intent), then P6's dialogue reading
(``read_dialogue``: scenario evidence = max(retrieval, intent confidence) + field fill). For
each threshold it counts, over messages labelled with a scenario, the share where exactly
that scenario would start (``right_start``), where another one would (``wrong_start``) and
where none would (``no_start``); over messages labelled null, the share where one would
start anyway (``false_start``), with the pack's ``intent_floor`` (``--intent-floor`` tries
another, or ``none``). It also prints the spread of the best evidence score for
both groups. P5 does not run, so the informational-rule gate of the reading (a rule that
answers in words wins over a flow) is left out: the start counts are an upper bound. Only
the pack's own ``dialogue.start_threshold`` is used by turns; this bench only reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from bench.first_turn import FirstTurns
from bench.retrieval import DEFAULT_SET, load_set, percentile
from processors.embedding import CachedEmbedder
from processors.phases.dialogue import start_candidate
from processors.turn.decide import read_dialogue
from sinks.embedder import default_embedder
from sinks.pack_files import load_pack
from streams.settings import load_settings

CUSTOMER = "C-1001"
"""The example pack's logged-in demo customer (data/shop.json), as in the labelled set."""
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


async def evidence_of(messages: list[str], pack_dir: Path) -> list[list[Any]]:
    """The scenario evidence of a first turn for each message (best first), through the
    production path of a first turn (``bench.first_turn``)."""
    pack = load_pack(pack_dir)
    turns = FirstTurns(CachedEmbedder(default_embedder()), load_settings())
    turns.use(pack)
    found = []
    try:
        for text in messages:
            context = (await turns.turn(text, customer_id=CUSTOMER)).context
            assert context.customer_data is not None
            found.append(read_dialogue(context, pack, context.customer_data).reading.evidence)
    finally:
        turns.close()
    return found


def report(
    labels: list[str | None],
    evidence: list[list[Any]],
    thresholds: tuple[float, ...],
    intent_floor: float | None,
) -> dict[str, Any]:
    labelled = [i for i, label in enumerate(labels) if label is not None]
    unlabelled = [i for i, label in enumerate(labels) if label is None]
    rows = {}
    for threshold in thresholds:
        picks = [start_candidate(e, threshold, intent_floor=intent_floor) for e in evidence]
        ids = [p.scenario_id if p else None for p in picks]
        rows[str(threshold)] = {
            "right_start": sum(ids[i] == labels[i] for i in labelled) / len(labelled),
            "wrong_start": sum(ids[i] not in (None, labels[i]) for i in labelled) / len(labelled),
            "no_start": sum(ids[i] is None for i in labelled) / len(labelled),
            "false_start": (
                sum(ids[i] is not None for i in unlabelled) / len(unlabelled) if unlabelled else 0.0
            ),
        }

    def best(i: int) -> float:
        return evidence[i][0].score if evidence[i] else 0.0

    def spread(values: list[float]) -> dict[str, float]:
        return {f"p{p}": round(percentile(values, p), 3) for p in (10, 50, 90)} if values else {}

    return {
        "per_message": [
            {"label": labels[i], "evidence": [e.model_dump(mode="json") for e in evidence[i][:3]]}
            for i in range(len(labels))
        ],
        "messages": len(labels),
        "with_scenario": len(labelled),
        "without_scenario": len(unlabelled),
        "best_score_with_scenario": spread([best(i) for i in labelled]),
        "best_score_without_scenario": spread([best(i) for i in unlabelled]),
        "thresholds": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="labelled set (YAML)")
    parser.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)))
    parser.add_argument(
        "--intent-floor",
        default="pack",
        help="intent_floor to apply: a number, 'none', or 'pack' (the pack's dialogue option)",
    )
    args = parser.parse_args()
    labelled = load_set(args.set)
    messages = [e.text for e in labelled.examples]
    evidence = asyncio.run(evidence_of(messages, labelled.pack_dir))
    thresholds = tuple(float(t) for t in args.thresholds.split(","))
    floor = (
        load_pack(labelled.pack_dir).agent.dialogue.intent_floor
        if args.intent_floor == "pack"
        else None
        if args.intent_floor == "none"
        else float(args.intent_floor)
    )
    figures = report([e.scenario for e in labelled.examples], evidence, thresholds, floor)
    figures["intent_floor"] = floor
    print(f"intent_floor: {floor}")
    print(f"{figures['messages']} messages ({figures['with_scenario']} with a scenario)")
    print("best evidence, labelled with a scenario:", figures["best_score_with_scenario"])
    print("best evidence, labelled none:           ", figures["best_score_without_scenario"])
    print("threshold  right  wrong  none   false_start")
    for threshold, row in figures["thresholds"].items():
        print(
            f"{threshold:>9}  {row['right_start']:.3f}  {row['wrong_start']:.3f}  "
            f"{row['no_start']:.3f}  {row['false_start']:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
