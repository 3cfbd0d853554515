"""Embedding throughput of the default model at batch sizes 1, 8 and 32.

    python bench/embedding.py [--texts 256] [--json PATH]

Two corpora, because a batch is padded to its longest text and cost follows length:
``short`` (4-6 words, like intent phrases) and ``message`` (8-20 words, like a customer
message with context). Uses the uncached embedder and distinct texts, so every text is
really encoded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from sinks.embedder import SentenceTransformerEmbedder

BATCH_SIZES = (1, 8, 32)
WORDS = (
    "refund",
    "order",
    "parcel",
    "late",
    "cancel",
    "plan",
    "address",
    "moved",
    "payment",
    "card",
    "agent",
    "human",
)


CORPORA = {"short": (4, 3), "message": (8, 13)}
"""name -> (fewest words, spread): texts have fewest + i % spread words."""


def corpus(name: str, n: int, salt: int) -> list[str]:
    fewest, spread = CORPORA[name]
    return [
        " ".join(WORDS[(i * 7 + j * 3 + salt) % len(WORDS)] for j in range(fewest + i % spread))
        + f" {salt}x{i}"
        for i in range(n)
    ]


def measure(
    embedder: SentenceTransformerEmbedder, name: str, batch: int, n: int
) -> dict[str, float | int | str]:
    texts = corpus(name, n, salt=batch)
    embedder.embed(texts[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, n, batch):
        embedder.embed(texts[i : i + batch])
    seconds = time.perf_counter() - start
    return {
        "corpus": name,
        "batch_size": batch,
        "texts": n,
        "seconds": round(seconds, 4),
        "per_second": round(n / seconds, 1),
        "ms_per_batch": round(1000 * seconds / -(-n // batch), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=256, help="texts per batch size")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    embedder = SentenceTransformerEmbedder()
    results = [measure(embedder, c, b, args.texts) for c in CORPORA for b in BATCH_SIZES]
    report = {
        "model": embedder.model_id,
        "dim": embedder.dim,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "results": results,
    }
    print(f"{embedder.model_id} on cpu, {report['torch_threads']} torch threads")
    print(f"{'corpus':>8} {'batch':>6} {'emb/s':>9} {'ms/batch':>9}")
    for r in results:
        print(
            f"{r['corpus']:>8} {r['batch_size']:>6} {r['per_second']:>9.1f}"
            f" {r['ms_per_batch']:>9.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
