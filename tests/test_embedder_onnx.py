"""The int8 onnxruntime embedder: close to the torch reference, exported once, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import sinks.embedder_onnx as onnx_embedder
from processors.embedding import CachedEmbedder, Embedder
from sinks.embedder import ModelUnavailableError, default_embedder
from sinks.embedder_onnx import MODEL_FILE, OnnxEmbedder
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "Where is my parcel? It should have arrived on Monday.",
    "I want to cancel my subscription and get my money back",
    "The parcel arrived damaged, the box was crushed and the lamp inside is broken",
    "Can I talk to a human agent please, the bot is not helping me at all with my address",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_model(cache_dir: Path) -> Iterator[OnnxEmbedder]:
    """Exported once for the module, with the hub forced offline."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        model = OnnxEmbedder(cache_dir=cache_dir, intra_op_threads=2)
        yield model


@pytest.fixture(scope="module")
def torch_model() -> Embedder:
    return default_embedder(backend="torch")


def test_first_construction_exports_into_the_cache_dir(
    onnx_model: OnnxEmbedder, cache_dir: Path
) -> None:
    assert onnx_model.exported
    assert onnx_model.model_file.is_file()
    assert onnx_model.model_file.is_relative_to(cache_dir / "onnx")
    meta = json.loads((onnx_model.export_dir / "export.json").read_text("utf-8"))
    assert meta["check_cosine_min"] >= 0.95
    assert {"torch", "onnxruntime"} <= set(meta["versions"])
    leftovers = [p.name for p in onnx_model.export_dir.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_vectors_are_unit_rows_of_384(onnx_model: OnnxEmbedder) -> None:
    assert isinstance(onnx_model, Embedder)
    vecs = onnx_model.embed(TEXTS)
    assert vecs.shape == (len(TEXTS), 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert onnx_model.embed([]).shape == (0, 384)
    assert onnx_model.dim == 384


def test_close_to_the_torch_vectors(onnx_model: OnnxEmbedder, torch_model: Embedder) -> None:
    reference = torch_model.embed(TEXTS)
    cosines = (onnx_model.embed(TEXTS) * reference).sum(axis=1)
    assert cosines.min() >= 0.98, cosines
    single = np.concatenate([onnx_model.embed([t]) for t in TEXTS])
    assert (single * reference).sum(axis=1).min() >= 0.98


def test_short_texts_lose_the_most(onnx_model: OnnxEmbedder, torch_model: Embedder) -> None:
    """Few tokens average out less quantization noise: chit-chat sits near 0.95-0.98."""
    short = ["hi", "yes", "ok thanks", "refund"]
    cosines = (onnx_model.embed(short + TEXTS)[:4] * torch_model.embed(short)).sum(axis=1)
    assert cosines.min() >= 0.93, cosines


def test_rows_follow_the_input_order(onnx_model: OnnxEmbedder) -> None:
    """Texts are batched longest first; rows must still come back in the caller's order."""
    forward = onnx_model.embed(TEXTS)
    backward = onnx_model.embed(TEXTS[::-1])
    assert np.allclose(forward, backward[::-1], atol=1e-6)
    refund = onnx_model.embed(["Please refund my order", "The sky is blue", "I want my money back"])
    assert refund[0] @ refund[2] > refund[0] @ refund[1] + 0.2


def test_model_id_differs_from_torch(onnx_model: OnnxEmbedder, torch_model: Embedder) -> None:
    assert onnx_model.model_id == torch_model.model_id + "+onnx-int8"


def test_second_construction_reuses_the_export(onnx_model: OnnxEmbedder, cache_dir: Path) -> None:
    mtime = onnx_model.model_file.stat().st_mtime_ns
    again = OnnxEmbedder(cache_dir=cache_dir, intra_op_threads=1)
    assert not again.exported
    assert again.model_file == onnx_model.model_file
    assert onnx_model.model_file.stat().st_mtime_ns == mtime
    assert np.allclose(again.embed(TEXTS), onnx_model.embed(TEXTS), atol=1e-5)


def test_another_process_offline_uses_the_cached_export(
    onnx_model: OnnxEmbedder, cache_dir: Path, tmp_path: Path
) -> None:
    """A fresh process with the hub offline and an empty hub cache loads without exporting."""
    code = (
        "from sinks.embedder_onnx import OnnxEmbedder;"
        f"m = OnnxEmbedder(cache_dir={str(cache_dir)!r});"
        "print(m.exported, m.embed(['hello there']).shape)"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "False (1, 384)"
    assert not (tmp_path / "hf").exists()


def test_default_embedder_picks_the_backend(
    onnx_model: OnnxEmbedder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = default_embedder(settings=Settings(embedder_backend="onnx-int8", cache_dir=cache_dir))
    assert isinstance(chosen, CachedEmbedder)
    assert chosen.model_id == onnx_model.model_id
    monkeypatch.setenv("TURNSTREAM_EMBEDDER_BACKEND", "onnx-int8")
    monkeypatch.setenv("TURNSTREAM_CACHE_DIR", str(cache_dir))
    assert default_embedder() is chosen
    assert default_embedder(backend="torch").model_id == "sentence-transformers/all-MiniLM-L6-v2"


def test_concurrent_exports_run_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Threads racing on one export directory: one exports, the others wait and reuse it."""
    calls: list[str] = []

    def fake_export(model: object, out: Path) -> None:
        calls.append("export")
        out.write_bytes(b"fp32")

    def fake_quantize(fp32: Path, out: Path) -> None:
        out.write_bytes(b"int8:" + fp32.read_bytes())

    monkeypatch.setattr(onnx_embedder, "_load_torch_model", lambda model_dir: object())
    monkeypatch.setattr(onnx_embedder, "_export_fp32", fake_export)
    monkeypatch.setattr(onnx_embedder, "_quantize", fake_quantize)
    monkeypatch.setattr(onnx_embedder, "_check_against_torch", lambda *args: [1.0])
    export_dir = tmp_path / "export"
    results: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(onnx_embedder.ensure_export(tmp_path, export_dir))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["export"]
    assert sorted(results) == [False, False, False, True]
    assert (export_dir / MODEL_FILE).read_bytes() == b"int8:fp32"
    assert sorted(p.name for p in export_dir.iterdir()) == [".lock", "export.json", MODEL_FILE]


def test_a_failed_export_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(*args: object) -> list[float]:
        raise ModelUnavailableError("too far from torch")

    monkeypatch.setattr(onnx_embedder, "_load_torch_model", lambda model_dir: object())
    monkeypatch.setattr(onnx_embedder, "_export_fp32", lambda model, out: out.write_bytes(b"x"))
    monkeypatch.setattr(onnx_embedder, "_quantize", lambda fp32, out: out.write_bytes(b"y"))
    monkeypatch.setattr(onnx_embedder, "_check_against_torch", broken)
    with pytest.raises(ModelUnavailableError):
        onnx_embedder.ensure_export(tmp_path, tmp_path / "export")
    assert [p.name for p in (tmp_path / "export").iterdir()] == [".lock"]


def test_other_pooling_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    st = "sentence_transformers.models."
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": st + "Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": st + "Pooling"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    pooling = {"word_embedding_dimension": 384, "pooling_mode_cls_token": True}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    with pytest.raises(ModelUnavailableError, match="mean pooling"):
        OnnxEmbedder(tmp_path, cache_dir=tmp_path / "cache")
