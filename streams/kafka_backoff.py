"""Outages without storms: backoff for aiokafka's reconnects and for the worker's start steps.

aiokafka (0.14) has no reconnect backoff (aio-libs/aiokafka#144): every request to a node
without a live connection opens a new TCP connection, and its consumers, producers and group
coordinators retry every ``retry_backoff_ms`` (100 ms). Faust passes no backoff either. With
the broker down, a worker's ~15 clients made ~70-150 connection attempts a second (2,108 in
30 s measured under strace, 4,375 ERROR lines), and with the broker's port in the ephemeral
range one such attempt could connect the socket to itself (TCP simultaneous open on
loopback), holding the port the broker must bind when it comes back.

:func:`install_reconnect_backoff` gives every ``AIOKafkaClient`` of the process what the
Java client calls ``reconnect.backoff.ms`` / ``reconnect.backoff.max.ms`` (KIP-144): after a
failed connection to a node, the client does not try that node again for a delay that
doubles per consecutive failure from ``kafka_backoff_s`` up to ``kafka_backoff_max_s``, with
a random factor of ±20 % so that clients do not retry in step. While a node backs off, a
request to it fails at once with ``NodeNotReadyError`` (as an unconnected node does
already): the callers' own retry loops go on, but they open no socket. A connection that
turns out to be connected to itself is closed and counts as a failure.

:func:`wait_out_outage` runs one step of a worker's start (``streams.worker``) until the
cluster answers it, on the same schedule from :data:`START_FIRST_S`, with one WARNING per
retry, and gives up after ``kafka_wait_s`` with :class:`KafkaUnreachableError` (one line).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from processors.backoff import Backoff
from streams.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

START_FIRST_S = 1.0
"""A start step's first retry waits about this long (then doubling up to kafka_backoff_max_s)."""
JITTER = 0.2
"""± this fraction of each delay, at random (Kafka's clients use the same factor)."""


def jittered_backoff(first_s: float, max_s: float) -> Backoff:
    """``first_s``, doubling per failure up to ``max_s``, each delay multiplied by a random
    factor in [1 - JITTER, 1 + JITTER]."""
    return Backoff(first_s, max(first_s, max_s), 1 - JITTER, 1 + JITTER)


@dataclass
class _NodeState:
    delays: Iterator[float]
    retry_at: float = 0.0


@dataclass
class _Config:
    first_s: float = 0.1
    max_s: float = 5.0
    installed: bool = False
    attempts: int = 0
    """Connections attempted through the patched clients (a figure for tests and benches)."""
    self_connects: int = 0


_config = _Config()
_nodes: weakref.WeakKeyDictionary[AIOKafkaClient, dict[Any, _NodeState]] = (
    weakref.WeakKeyDictionary()
)


def attempts() -> int:
    """How many connections the clients of this process attempted since the install."""
    return _config.attempts


def install_reconnect_backoff(first_s: float, max_s: float) -> None:
    """Patch ``AIOKafkaClient`` (once per process; a later call only changes the delays)."""
    _config.first_s, _config.max_s = first_s, max(first_s, max_s)
    if _config.installed:
        return
    _config.installed = True
    original_get_conn = AIOKafkaClient._get_conn
    original_lookup = AIOKafkaConnection._do_version_lookup

    async def _get_conn(
        self: AIOKafkaClient,
        node_id: Any,
        *,
        group: ConnectionGroup = ConnectionGroup.DEFAULT,
        no_hint: bool = False,
    ) -> Any:
        existing = self._conns.get((node_id, group))
        if existing is not None and existing.connected():
            return existing
        nodes = _nodes.setdefault(self, {})
        state = nodes.get(node_id)
        now = time.monotonic()
        if state is not None and now < state.retry_at:
            return None  # the caller raises NodeNotReadyError and retries later
        _config.attempts += 1
        conn = await original_get_conn(self, node_id, group=group, no_hint=no_hint)
        state = nodes.get(node_id)  # read again: other requests to the node ran meanwhile
        if conn is None:
            if state is None:
                backoff = jittered_backoff(_config.first_s, _config.max_s)
                state = nodes[node_id] = _NodeState(backoff.delays())
            state.retry_at = time.monotonic() + next(state.delays)
        else:
            nodes.pop(node_id, None)
        return conn

    async def _do_version_lookup(self: AIOKafkaConnection) -> None:
        writer = self._writer
        if writer is not None:
            local, peer = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
            if local is not None and local == peer:
                _config.self_connects += 1
                raise KafkaConnectionError(
                    f"connection to {self.host}:{self.port} connected to itself (the port is "
                    "in the ephemeral range and nothing listens on it)"
                )
        await original_lookup(self)

    AIOKafkaClient._get_conn = _get_conn
    AIOKafkaConnection._do_version_lookup = _do_version_lookup


class KafkaUnreachableError(RuntimeError):
    """The cluster did not answer a step of the worker's start for ``kafka_wait_s``."""


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the cluster does not answer, as opposed to an
    answer that refuses (a bad config, a missing topic, no authorisation)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KafkaError):
            if seen.retriable or isinstance(seen, KafkaTimeoutError):
                return True
            if "metadata" in str(seen):  # "Unable to get cluster metadata over all known brokers"
                return True
        elif isinstance(seen, TimeoutError | ConnectionError):
            return True
        seen = seen.__cause__
    return False


async def wait_out_outage(settings: Settings, what: str, step: Callable[[], Awaitable[T]]) -> T:
    """``await step()`` until it does not fail for an outage (:func:`is_outage`): after each
    such failure one WARNING and a backoff (capped, jittered); after ``kafka_wait_s`` of
    failures :class:`KafkaUnreachableError`. Any other error is raised at once."""
    loop = asyncio.get_running_loop()
    delays = jittered_backoff(START_FIRST_S, settings.kafka_backoff_max_s).delays()
    began: float | None = None
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_outage(exc):
                raise
            now = loop.time()
            began = now if began is None else began
            left = settings.kafka_wait_s - (now - began)
            if left <= 0:
                raise KafkaUnreachableError(
                    f"Kafka at {settings.bootstrap_servers} did not answer for "
                    f"{settings.kafka_wait_s:.0f} s while {what} (TURNSTREAM_KAFKA_WAIT_S)"
                ) from None
            delay = min(next(delays), left)
            logger.warning(
                "broker %s unreachable while %s (%s), retrying in %.1f s",
                settings.bootstrap_servers,
                what,
                _reason(exc),
                delay,
            )
            await asyncio.sleep(delay)


def _reason(exc: BaseException) -> str:
    """The error's kind, short: its class, or ``timed out``."""
    if isinstance(exc, TimeoutError) and not isinstance(exc, KafkaError):
        return "timed out"
    return type(exc).__name__
