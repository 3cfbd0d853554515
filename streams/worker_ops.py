"""A worker's operator surface: its HTTP endpoint, its readiness, its consumer-lag gauge,
its tracing and its turns-in-flight gauge (``docs/operations.md``).

Kept apart from ``streams.worker`` so that the worker says only *when* (serve from the first
moment of the start, so ``/health`` answers while the model loads; lag and "started" once
everything runs) and this module says *what*.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiokafka.errors import KafkaError

from streams import metrics, tracing, webhook_consumer
from streams.consumer_lag import LagMonitor
from streams.ops_server import OpsServer, Readiness
from streams.sink_consumer import SinkConsumer
from streams.topics import pipeline_group

if TYPE_CHECKING:
    from streams.pipeline.base import Pipeline
    from streams.worker import Worker

logger = logging.getLogger(__name__)

_in_flight: dict[int, Mapping[bytes, object]] = {}
"""The in-flight index of each running pipeline of this process (tests run several)."""
metrics.TURNS_IN_FLIGHT.set_function(lambda: sum(len(index) for index in _in_flight.values()))


class WorkerOps:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        settings = worker.settings
        self.server = OpsServer(settings.ops.host, settings.ops.port, self.readiness)
        self.stage = "starting"
        """What the worker is doing while it starts (``/ready`` says it)."""
        self._started = False
        self._stopping = False
        self._lag: LagMonitor | None = None
        self._traced = False

    async def serve(self) -> None:
        """The endpoint, tracing and the tenant-label bound: first thing at start."""
        settings = self.worker.settings
        metrics.tenant_label.limit = settings.ops.tenant_labels
        if not tracing.enabled():  # a test may have enabled it with its own exporter
            self._traced = tracing.configure(settings)
        await self.server.start()

    def pipeline_built(self, pipeline: Pipeline) -> None:
        _in_flight[id(self)] = pipeline.in_flight_index

    async def running(self) -> None:
        """Everything started: read the lag of the worker's groups from now on."""
        settings = self.worker.settings
        if self.server.serving:
            monitor = LagMonitor(
                settings, self.groups(), settings.ops.lag_interval_s, metrics.CONSUMER_LAG
            )
            try:
                await monitor.start()
            except (KafkaError, OSError) as exc:
                logger.warning("consumer lag not measured: %s", exc)
            else:
                self._lag = monitor
        self._started = True

    async def stop(self) -> None:
        self._stopping = True
        lag, self._lag = self._lag, None
        if lag is not None:
            await lag.stop()
        _in_flight.pop(id(self), None)
        await self.server.stop()
        if self._traced:
            tracing.disable()  # flushes the spans still batched
            self._traced = False

    def groups(self) -> list[str]:
        """The consumer groups this worker belongs to: its role's Faust app and its side
        services (memory ingestion, analytics, webhooks)."""
        worker, settings = self.worker, self.worker.settings
        groups = []
        if worker.runs_pipeline:
            groups.append(pipeline_group(settings.topic_prefix, worker.role))
        for service in worker.services:
            if isinstance(service, SinkConsumer):  # memory ingestion, analytics
                groups.append(service.group)
            elif isinstance(service, webhook_consumer.WebhookConsumer):
                groups.append(webhook_consumer.group_id(settings))
        return groups

    def readiness(self) -> Readiness:
        """Ready: started, not stopping; with a Faust app, partitions assigned, no rebalance
        under way and its tables recovered; with the pipeline runtime, every pack the
        registry holds indexed and available to turns."""
        worker = self.worker
        reasons: list[str] = []
        details: dict[str, object] = {"role": worker.role.value}
        if self._stopping:
            reasons.append("stopping")
        elif not self._started:
            reasons.append(self.stage)
        topology = worker.topology
        # Before the start is done the Faust app may be built but its consumer not started
        # (a start waiting out a broker loss builds the app again), and asking it for its
        # assignment raises: the start's stage is the reason then.
        if topology is not None and self._started and not self._stopping:
            app = topology.app
            assigned = app.consumer.assignment()
            details["assigned_partitions"] = len(assigned)
            if app.rebalancing:
                reasons.append("rebalancing")
            elif not assigned:
                reasons.append("no partitions assigned")
            recovery = app.tables.recovery  # type: ignore[attr-defined]  # untyped in Faust
            if recovery.in_recovery or not recovery.completed.is_set():
                reasons.append("tables recovering")
        if worker.runs_pipeline and worker.runtime_started:
            packs: dict[str, int] = {}
            missing: list[str] = []
            for snap in worker.runtime.registry.snapshots():
                name = f"{snap.tenant}/{snap.agent}"
                packs[name] = snap.version
                if worker.runtime.versions.get(snap.tenant, snap.agent, snap.version) is None:
                    missing.append(f"{name} v{snap.version}")
            details["packs"] = packs
            if missing:
                reasons.append("packs not indexed yet: " + ", ".join(missing))
        return Readiness(reasons, details)
