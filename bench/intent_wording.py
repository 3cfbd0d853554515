"""Intent wording robustness: the labelled set against wordings nobody tuned on.

    python -m bench.intent_wording [--json PATH]

Runs ``bench.retrieval.evaluate`` (the production path of a first turn: ``understand`` ->
``retrieve_one`` per type -> ``join`` -> canonical intent; one round, no throughput) on

- ``bench/data/acme_retrieval_set.yaml``: the labelled set (intent, rule recall/precision,
  scenario top-1);
- ``bench/data/acme_unseen_wordings.yaml``: 48 casual, misspelt and mixed-language messages
  written from the example pack's intent descriptions only (how: the file's header);
- ``bench/data/brightwatt_unseen_wordings.yaml``: the same for the second example pack;
- ``*_unseen_wordings_2.yaml`` (36 each): written from intent ids and descriptions by
  another author before the P4.1 wording step (``processors/retrieval/query_wording.py``);
  its misses were seen while the glossary was written, so it is no blind test of it;
- ``*_unseen_wordings_3.yaml`` (24 each): written before the glossary and run once, for
  the final figures: the blind test of the wording step,

and prints intent top-1 of each and the gap between the labelled set and the acme unseen
set (the issue's target: both >= 0.90, within 3 points). The JSON holds every figure and miss.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.retrieval import ROOT, evaluate, load_set

SETS = {
    "acme_labelled": ROOT / "bench" / "data" / "acme_retrieval_set.yaml",
    "acme_unseen": ROOT / "bench" / "data" / "acme_unseen_wordings.yaml",
    "brightwatt_unseen": ROOT / "bench" / "data" / "brightwatt_unseen_wordings.yaml",
    "acme_unseen_2": ROOT / "bench" / "data" / "acme_unseen_wordings_2.yaml",
    "brightwatt_unseen_2": ROOT / "bench" / "data" / "brightwatt_unseen_wordings_2.yaml",
    "acme_heldout_3": ROOT / "bench" / "data" / "acme_unseen_wordings_3.yaml",
    "brightwatt_heldout_3": ROOT / "bench" / "data" / "brightwatt_unseen_wordings_3.yaml",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for name, path in SETS.items():
        report[name] = figures = evaluate(load_set(path), rounds=1)
        counts = figures["counts"]
        line = f"{name:18} intent top-1 {figures['intent_top1']:.3f} of {counts['messages']}"
        if "rule_recall" in figures:
            line += (
                f"  rule recall {figures['rule_recall']:.3f}"
                f"  precision {figures['rule_precision']:.3f}"
                f"  scenario top-1 {figures['scenario_top1']:.3f}"
            )
        print(line)
    gap = report["acme_labelled"]["intent_top1"] - report["acme_unseen"]["intent_top1"]
    report["gap_labelled_minus_unseen"] = round(gap, 4)
    print(f"gap (labelled - unseen, acme): {gap * 100:+.1f} points")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
