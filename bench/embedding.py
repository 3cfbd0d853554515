"""Embedding throughput of the default model at batch sizes 1, 8 and 32.

    python bench/embedding.py [--texts 256] [--backend torch|onnx-int8|both] [--json PATH]

Two corpora, because a batch is padded to its longest text and cost follows length:
``short`` (4-6 words, like intent phrases) and ``message`` (8-20 words, like a customer
message with context). Uses the uncached embedder and distinct texts, so every text is
really encoded. ``--backend both`` runs the two backends (sentence-transformers, the
reference, and the int8 onnxruntime export of ``sinks.embedder_onnx``, exported into the
settings' cache dir on first use) one after the other, then compares their vectors on the
messages of the labelled retrieval set: cosine of each ONNX row to the torch row (mean, min,
the five lowest), encoded at batch 32 and one text at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from processors.embedding import Embedder
from sinks.embedder import SentenceTransformerEmbedder

BACKENDS = ("torch", "onnx-int8")
LABELLED_SET = Path(__file__).resolve().parent / "data" / "acme_retrieval_set.yaml"

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


def measure(embedder: Embedder, name: str, batch: int, n: int) -> dict[str, float | int | str]:
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


def make_embedder(backend: str, threads: int | None = None) -> Embedder:
    """The uncached embedder of a backend (``threads``: onnxruntime intra-op threads)."""
    if backend == "torch":
        return SentenceTransformerEmbedder()
    from sinks.embedder_onnx import OnnxEmbedder

    started = time.perf_counter()
    onnx = OnnxEmbedder(intra_op_threads=threads)
    seconds = time.perf_counter() - started
    print(f"{onnx.model_id}: {'exported' if onnx.exported else 'cached'} in {seconds:.1f} s")
    return onnx


def compare(reference: Embedder, other: Embedder, texts: list[str]) -> dict[str, Any]:
    """Cosine of ``other``'s rows to ``reference``'s, at batch 32 and one text at a time."""
    ref = np.concatenate([reference.embed(texts[i : i + 32]) for i in range(0, len(texts), 32)])
    out: dict[str, Any] = {"texts": len(texts)}
    for label, batch in (("batch_32", 32), ("batch_1", 1)):
        got = np.concatenate(
            [other.embed(texts[i : i + batch]) for i in range(0, len(texts), batch)]
        )
        cosines = (got * ref).sum(axis=1)
        lowest = np.argsort(cosines)[:5]
        out[label] = {
            "mean": round(float(cosines.mean()), 4),
            "min": round(float(cosines.min()), 4),
            "lowest": [[texts[i], round(float(cosines[i]), 4)] for i in lowest],
        }
    return out


def labelled_messages(path: Path = LABELLED_SET) -> list[str]:
    return [str(m["text"]) for m in yaml.safe_load(path.read_text(encoding="utf-8"))["messages"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=256, help="texts per batch size")
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="torch")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: cpus)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    embedders = {b: make_embedder(b, args.threads) for b in backends}
    runs: list[dict[str, Any]] = []
    for backend, embedder in embedders.items():
        results = [measure(embedder, c, b, args.texts) for c in CORPORA for b in BATCH_SIZES]
        runs.append({"backend": backend, "model": embedder.model_id, "results": results})
    report: dict[str, Any] = {
        "model": runs[0]["model"],
        "dim": embedders[backends[0]].dim,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(),
        "results": runs[0]["results"],
        "backends": runs,
    }
    if len(embedders) == 2:
        report["cosine_to_torch"] = compare(
            embedders["torch"], embedders["onnx-int8"], labelled_messages()
        )
    print(f"on cpu, {report['torch_threads']} torch threads, load {report['load_average']}")
    print(f"{'backend':>10} {'corpus':>8} {'batch':>6} {'emb/s':>9} {'ms/batch':>9}")
    for run in runs:
        for r in run["results"]:
            print(
                f"{run['backend']:>10} {r['corpus']:>8} {r['batch_size']:>6}"
                f" {r['per_second']:>9.1f} {r['ms_per_batch']:>9.2f}"
            )
    if "cosine_to_torch" in report:
        cos = report["cosine_to_torch"]
        for label in ("batch_32", "batch_1"):
            print(
                f"onnx-int8 vs torch on {cos['texts']} labelled messages, {label}:"
                f" mean {cos[label]['mean']:.4f} min {cos[label]['min']:.4f}"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
