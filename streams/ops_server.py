"""The operator endpoint of a worker: ``/health``, ``/ready`` and ``/metrics`` over HTTP, on
the worker's own event loop (aiohttp).

* ``/health`` — liveness: 200 whenever the process's event loop runs (the answer is made on
  it, so a blocked or dead loop gets no answer at all).
* ``/ready`` — 200 once the worker can take its share of the work, else 503; both with a JSON
  body ``{"ready": bool, "reasons": [...], ...}`` whose reasons say what is still missing
  (see :meth:`streams.worker.Worker.readiness`).
* ``/metrics`` — the process's Prometheus metrics (``streams.metrics``) in the text format.

Served on ``ops.host:ops.port`` (``TURNSTREAM_OPS__HOST`` / ``__PORT``, default
127.0.0.1:9464); port 0 serves nothing. A port already taken is logged and the worker runs
on without the endpoint: observing a worker must never be the reason it does not work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    """Whether the worker is ready, and if not, why; ``details`` go into the body as is."""

    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.reasons


class OpsServer:
    def __init__(self, host: str, port: int, readiness: Callable[[], Readiness]) -> None:
        self.host = host
        self.port = port
        self._readiness = readiness
        self._runner: web.AppRunner | None = None

    @property
    def serving(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self.port == 0:
            return
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            logger.warning(
                "ops endpoint not served on %s:%d (%s); set TURNSTREAM_OPS__PORT (0: none)",
                self.host,
                self.port,
                exc.strerror or exc,
            )
            return
        self._runner = runner
        logger.info("ops endpoint on http://%s:%d (/health /ready /metrics)", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _ready(self, _request: web.Request) -> web.Response:
        state = self._readiness()
        body = {"ready": state.ready, "reasons": state.reasons, **state.details}
        return web.json_response(body, status=200 if state.ready else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
