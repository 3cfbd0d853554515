"""``turnstream worker [--role ROLE]``: the pipeline's stages in one process.

Start order: topics (created if missing), the runtime (model, vector store, packs, each
pack indexed), the role's Faust app, then the services outside the Faust app (memory
ingestion with the retrieval role; analytics and webhooks). Stop in reverse.

A broker lost at any step of the start is waited out (``streams.kafka_backoff``): the step
is retried with a capped, jittered backoff and one WARNING per retry ("broker ... unreachable
while ..., retrying in N s"); a Faust app whose start failed is stopped and built again. After
``kafka_wait_s`` without an answer the start fails with :class:`KafkaUnreachableError`, which
``turnstream worker`` prints as one line (exit 1), after closing what had started.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from processors.llm_budget import stall_problem
from streams.analytics_consumer import AnalyticsConsumer
from streams.analytics_services import Service, analytics_services
from streams.kafka_backoff import (
    KafkaUnreachableError,
    install_reconnect_backoff,
    wait_out_outage,
)
from streams.kafka_ready import wait_until_serving
from streams.pipeline.base import Pipeline
from streams.pipeline.runtime import PipelineRuntime
from streams.pipeline.topology import Topology, build_topology
from streams.pipeline.wiring import register
from streams.roles import PIPELINE_ROLES, Role, runs
from streams.settings import Settings, SettingsError
from streams.sink_catalog import SINKS, SinkContext
from streams.topic_admin import TopicReport, ensure_topics
from streams.topics import pipeline_group
from streams.webhook_consumer import WebhookConsumer
from streams.worker_ops import WorkerOps

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["KafkaUnreachableError", "Worker", "inside_a_command", "run_worker"]

APP_STOP_TIMEOUT_S = 30.0


class Worker:
    def __init__(self, settings: Settings, role: Role = Role.ALL) -> None:
        problem = stall_problem(settings)
        if problem is not None:  # the watchdog would drive again turns waiting on the model
            raise SettingsError(problem)
        self.settings = settings
        self.role = role
        self.runtime = PipelineRuntime(settings)
        self._topology: Topology | None = None
        self._services: list[Service] = []
        self._runtime_started = False
        self._runtime_begun = False  # a runtime whose start failed half-way is stopped too
        self._registry_only = False
        self.ops = WorkerOps(self)

    @property
    def topology(self) -> Topology | None:
        return self._topology

    @property
    def services(self) -> list[Service]:
        return list(self._services)

    @property
    def runtime_started(self) -> bool:
        return self._runtime_started

    @property
    def runs_pipeline(self) -> bool:
        return self.role is Role.ALL or self.role in PIPELINE_ROLES

    async def start(self) -> None:
        """Start, serving the ops endpoint from the first moment (``/ready`` says 503 and
        why until everything runs); a failed start stops what had started."""
        install_reconnect_backoff(self.settings.kafka_backoff_s, self.settings.kafka_backoff_max_s)
        await self.ops.serve()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        await self.ops.running()

    async def _start(self) -> None:
        self.ops.stage = "checking the topics"
        report = await self._through_outage("checking the topics", self._ensure_topics)
        if not report.ok:
            logger.warning("topics differ from the catalog: %s", "; ".join(report.mismatches))
        if (replication := report.replication_warning) is not None:
            logger.warning("%s", replication)
        if self.runs_pipeline:
            logger.info(
                "loading the embedding model (%s) and indexing the packs ...",
                self.settings.embedder_backend,
            )
            began = asyncio.get_running_loop().time()
            self.ops.stage = "loading the model and indexing the packs"
            self.runtime.registry.wait_out_outages = True
            self._runtime_begun = True
            await self.runtime.start()
            self._runtime_started = True
            logger.info(
                "model and %d pack(s) ready in %.1f s",
                len(self.runtime.registry.snapshots()),
                asyncio.get_running_loop().time() - began,
            )
            self.ops.stage = "joining the consumer group"
            await self._through_outage("joining the consumer group", self._start_app)
        elif self.role is Role.WEBHOOKS:
            self.runtime.registry.wait_out_outages = True
            self._registry_only = True
            await self.runtime.registry.start()  # subscriptions come with the packs
        if not self.runs_pipeline:
            await self._through_outage("finding the group coordinator", self._coordinator_ready)
        for service in self._side_services():
            await self._through_outage(f"starting {type(service).__name__}", service.start)
            self._services.append(service)
        freeze_startup_objects()
        logger.info("worker (%s) started on %s", self.role.value, self.settings.bootstrap_servers)

    async def _through_outage(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """``step`` retried while the cluster does not answer (``kafka_wait_s`` at most)."""
        return await wait_out_outage(self.settings, what, step)

    async def _ensure_topics(self) -> TopicReport:
        return await ensure_topics(self.settings)

    async def _start_app(self) -> None:
        """The role's Faust app, started; one whose start failed is stopped (a new one is
        built for the next try: a Faust app does not start twice)."""
        await self._coordinator_ready()
        topology = build_topology(self.settings, self.role)
        pipeline = Pipeline(topology, self.runtime)
        register(pipeline, self.settings.worker_concurrency, self.role)
        self.ops.pipeline_built(pipeline)
        self._topology = topology
        try:
            await topology.app.start()
        except BaseException:
            self._topology = None
            await self._stop_app(topology)
            raise

    @staticmethod
    async def _stop_app(topology: Topology) -> None:
        try:
            async with asyncio.timeout(APP_STOP_TIMEOUT_S):
                await topology.app.stop()
        except Exception as exc:  # a half-started app: what is left is closed with the process
            logger.warning("stopping the Faust app failed: %r", exc)

    async def _coordinator_ready(self) -> None:
        """Wait for the group coordinator (all of ``__consumer_offsets``, so every group of
        this worker): else each first JoinGroup logs GroupCoordinatorNotAvailable at ERROR."""
        group = pipeline_group(self.settings.topic_prefix, self.role)
        waiting = await wait_until_serving(self.settings.bootstrap_servers, group=group)
        if waiting:
            logger.warning("starting while Kafka is not ready: %s", "; ".join(waiting[:3]))

    def _side_services(self) -> list[Service]:
        services: list[Service] = []
        runtime = self.runtime
        ctx = SinkContext(
            self.settings,
            indexer=lambda: runtime.indexer,
            embedder=lambda: runtime.deps.embedder,
            run_in_model_thread=runtime.in_model_thread,
        )
        services += [sink.consumer(ctx) for sink in SINKS if runs(self.role, sink.role)]
        extra = analytics_services(self.settings, self.runtime.registry)
        if self.role is Role.ALL:
            services += extra
        elif self.role is Role.ANALYTICS:
            services += [s for s in extra if isinstance(s, AnalyticsConsumer)]
        elif self.role is Role.WEBHOOKS:
            services += [s for s in extra if isinstance(s, WebhookConsumer)]
        return services

    async def stop(self) -> None:
        await self.ops.stop()  # not ready from here on
        for service in reversed(self._services):
            try:
                await service.stop()
            except Exception:
                logger.exception("stopping %s failed", type(service).__name__)
        self._services.clear()
        topology, self._topology = self._topology, None
        if topology is not None:
            await self._stop_app(topology)
        if self._runtime_begun:
            await self.runtime.stop()
        elif self._registry_only:
            await self.runtime.registry.stop()
        logger.info("worker (%s) stopped", self.role.value)


def inside_a_command(settings: Settings) -> Settings:
    """The settings of a worker that a command runs in its own process (demo, chat, pack
    test): it serves no ops endpoint unless one is configured, since the default port belongs
    to the ``turnstream worker`` processes of the host (a second one would only warn)."""
    if "ops" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"ops": settings.ops.model_copy(update={"port": 0})})


def freeze_startup_objects() -> None:
    """Move everything allocated while starting (the model, the libraries, the packs and their
    indexes: millions of objects) out of the garbage collector's reach. Each full collection
    scanned all of them: 140-270 ms with the event loop stopped, every 10-20 s under load,
    measured in a worker; the turns' own short-lived objects are still collected as before."""
    gc.collect()
    gc.freeze()


async def run_worker(
    settings: Settings, role: Role = Role.ALL, stop: asyncio.Event | None = None
) -> None:
    """Run until ``stop`` is set, or SIGINT / SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings, role)
    await worker.start()
    try:
        await stop.wait()
    finally:
        await worker.stop()
