"""Background embeddings in a child process at a lower CPU priority.

Why a process: the worker's model thread embeds every turn's query. A pack loaded while
turns run (issue 20: 10,770 texts, 110 s of model time) used to run on that thread, and
another tenant's turn waited behind it for the whole load. Queued behind each other in one
process, a turn would still share the GIL and the two cores with the load; in a child at a
higher ``nice`` (``pack_index_niceness``, 10: ~10 % of a contended core) the kernel runs the
worker's threads first and the load takes what is left.

The child (``python -m sinks.embed_process BACKEND CACHE_DIR NICENESS``; not
``multiprocessing``, which would re-run the caller's main module) loads the same model (same
backend, same ``model_id``, so its vectors are interchangeable with the worker's) and is
started on the first call: a reload that changes nothing starts nothing. Closing the adapter
ends the child (its ~0.5 GB go with it). Over its pipes: one JSON list of texts per line in;
a line ``ok ROWS DIM`` and the float32 rows, or ``error MESSAGE``, out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from processors.embedding import Embedder, Vectors
from sinks.embedder import EmbedderBackend, default_embedder


class EmbedProcessError(RuntimeError):
    """The child failed to start or to embed; the message says why."""


class EmbedProcess:
    """An :class:`Embedder` whose ``embed`` runs in a low-priority child process; ``dim`` and
    ``model_id`` are those of ``like``, the worker's embedder of the same backend. Blocking:
    call it from a thread, never from the event loop."""

    def __init__(
        self,
        like: Embedder,
        backend: EmbedderBackend,
        cache_dir: Path,
        *,
        niceness: int,
    ) -> None:
        self._like = like
        module = [sys.executable, "-m", "sinks.embed_process"]
        self._argv = [*module, backend, str(cache_dir), str(niceness)]
        self._child: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._like.dim

    @property
    def model_id(self) -> str:
        return self._like.model_id

    @property
    def started(self) -> bool:
        return self._child is not None

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            child = self._start()
            assert child.stdin is not None and child.stdout is not None
            try:
                child.stdin.write(json.dumps(list(texts)).encode() + b"\n")
                child.stdin.flush()
                header = child.stdout.readline().decode().split(maxsplit=2)
            except OSError as exc:
                raise EmbedProcessError(f"embedding process gone: {exc}") from None
            if not header or header[0] != "ok":
                reason = " ".join(header[1:]) if header else f"exited ({child.poll()})"
                raise EmbedProcessError(f"embedding process failed: {reason}")
            rows, dim = int(header[1]), int(header[2])
            if (rows, dim) != (len(texts), self.dim):
                raise EmbedProcessError(f"embedding process returned {rows}x{dim}")
            raw = _read_exactly(child.stdout, rows * dim * 4)
            self.calls += 1
        return np.frombuffer(raw, dtype=np.float32).reshape(rows, dim).copy()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._closed:
            raise EmbedProcessError("embedding process closed")
        if self._child is None:
            self._child = subprocess.Popen(
                self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        return self._child

    def close(self) -> None:
        """End the child; later calls fail (one in progress in another thread too)."""
        self._closed = True
        child, self._child = self._child, None
        if child is None:
            return
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def __enter__(self) -> EmbedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EmbedProcessError(f"embedding process sent {len(data)} of {size} bytes")
    return data


def _serve(backend: EmbedderBackend, cache_dir: Path, niceness: int) -> None:
    """The child: lower its priority first, then load the model on one intra-op thread
    (torch's spinning OpenMP workers would take the worker's core) and answer until stdin
    closes. Library output goes to stderr: stdout carries only answers."""
    os.nice(niceness)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    from schemas.settings import Settings

    embedder = default_embedder(1, settings=Settings(embedder_backend=backend, cache_dir=cache_dir))
    for line in sys.stdin.buffer:
        try:
            vectors = np.ascontiguousarray(embedder.embed(json.loads(line)), dtype=np.float32)
        except Exception as exc:  # the parent learns why, the child keeps serving
            out.write(f"error {type(exc).__name__}: {exc}".replace("\n", " ").encode() + b"\n")
        else:
            out.write(f"ok {vectors.shape[0]} {vectors.shape[1]}\n".encode())
            out.write(vectors.tobytes())
        out.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))  # type: ignore[arg-type]
