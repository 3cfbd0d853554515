"""``turnstream worker [--role ROLE]``: the pipeline's stages in one process.

Start order: topics (created if missing), the runtime (model, vector store, packs, each
pack indexed), the role's Faust app, then the services outside the Faust app (memory
ingestion with the retrieval role; analytics and webhooks). Stop in reverse.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from aiokafka.errors import KafkaConnectionError

from processors.llm_budget import stall_problem
from streams.analytics_consumer import AnalyticsConsumer
from streams.analytics_services import Service, analytics_services
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

BROKER_RETRY_S = 2.0


class KafkaUnreachableError(RuntimeError):
    """The cluster did not answer while the worker started."""


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
        why until everything runs); a failed start closes it again."""
        await self.ops.serve()
        try:
            await self._start()
        except BaseException:
            await self.ops.stop()
            raise
        await self.ops.running()

    async def _start(self) -> None:
        self.ops.stage = "checking the topics"
        report = await self._topics_once_reachable()
        if not report.ok:
            logger.warning("topics differ from the catalog: %s", "; ".join(report.mismatches))
        if self.runs_pipeline:
            logger.info(
                "loading the embedding model (%s) and indexing the packs ...",
                self.settings.embedder_backend,
            )
            began = asyncio.get_running_loop().time()
            self.ops.stage = "loading the model and indexing the packs"
            await self.runtime.start()
            self._runtime_started = True
            logger.info(
                "model and %d pack(s) ready in %.1f s",
                len(self.runtime.registry.snapshots()),
                asyncio.get_running_loop().time() - began,
            )
            await self._coordinator_ready()
            self.ops.stage = "joining the consumer group"
            topology = build_topology(self.settings, self.role)
            pipeline = Pipeline(topology, self.runtime)
            register(pipeline, self.settings.worker_concurrency, self.role)
            self.ops.pipeline_built(pipeline)
            await topology.app.start()
            self._topology = topology
        elif self.role is Role.WEBHOOKS:
            await self.runtime.registry.start()  # subscriptions come with the packs
            self._registry_only = True
        if not self.runs_pipeline:
            await self._coordinator_ready()
        for service in self._side_services():
            await service.start()
            self._services.append(service)
        freeze_startup_objects()
        logger.info("worker (%s) started on %s", self.role.value, self.settings.bootstrap_servers)

    async def _topics_once_reachable(self) -> TopicReport:
        """Check the topics, waiting up to ``kafka_wait_s`` for the cluster to answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.kafka_wait_s
        while True:
            try:
                return await ensure_topics(self.settings)
            except KafkaConnectionError:
                if loop.time() >= deadline:
                    raise KafkaUnreachableError(
                        f"Kafka at {self.settings.bootstrap_servers} did not answer for "
                        f"{self.settings.kafka_wait_s:.0f} s (TURNSTREAM_KAFKA_WAIT_S)"
                    ) from None
                logger.warning(
                    "Kafka at %s is not reachable; retrying", self.settings.bootstrap_servers
                )
                await asyncio.sleep(BROKER_RETRY_S)

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
            await topology.app.stop()
        if self._runtime_started:
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
