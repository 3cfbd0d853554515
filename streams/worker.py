"""``turnstream worker``: the whole pipeline in one process.

Start order: topics (created if missing), the runtime (model, vector store, packs, each
pack indexed), the Faust app, then the P11 memory-ingestion sink. Stop in reverse.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from streams.pipeline.base import Pipeline
from streams.pipeline.runtime import PipelineRuntime
from streams.pipeline.topology import Topology, build_topology
from streams.pipeline.wiring import register
from streams.settings import Settings
from streams.topic_admin import ensure_topics

logger = logging.getLogger(__name__)


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = PipelineRuntime(settings)
        self._topology: Topology | None = None

    async def start(self) -> None:
        report = await ensure_topics(self.settings)
        if not report.ok:
            logger.warning("topics differ from the catalog: %s", "; ".join(report.mismatches))
        await self.runtime.start()
        topology = build_topology(self.settings)
        register(Pipeline(topology, self.runtime), self.settings.worker_concurrency)
        await topology.app.start()
        self._topology = topology
        logger.info("worker started on %s", self.settings.bootstrap_servers)

    async def stop(self) -> None:
        topology, self._topology = self._topology, None
        if topology is not None:
            await topology.app.stop()
        await self.runtime.stop()
        logger.info("worker stopped")


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set, or SIGINT / SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings)
    await worker.start()
    try:
        await stop.wait()
    finally:
        await worker.stop()
