"""Faust's producer made idempotent, so a retried produce never writes a record twice.

faust-streaming configures its aiokafka producer with ``enable_idempotence`` only under
``processing_guarantee="exactly_once"`` (``Producer._settings_extra``); the pipeline runs
at least once (effects idempotent by turn id), so Faust's producer was not idempotent. When a
broker goes away after it appended a batch but before its answer arrived (a node restart, a
leader or controller SIGKILL), aiokafka sends the batch again and the partition holds it
twice. On the response topic that is a customer answered twice: seen in
``tests/test_cluster_failover.py`` (a rolling restart and a controller SIGKILL each left one
turn with two response records). An idempotent producer numbers its batches per partition
and the leader drops a batch it already has, across leader changes too. It needs
``acks="all"``, which the app sets anyway (``producer_acks=-1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers.aiokafka import Producer


class IdempotentProducer(Producer):
    """Faust's aiokafka producer with ``enable_idempotence`` whatever the guarantee."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


def use_idempotent_producer(app: faust.App) -> None:
    """Make ``app`` build :class:`IdempotentProducer`; before its producer is first used."""
    # This app's transport only (a ClassVar set on the instance): other apps keep Faust's.
    setattr(app.transport, "Producer", IdempotentProducer)  # noqa: B010
