"""Delivering webhook events: signed POSTs, retries with backoff and jitter, per-subscription
lanes so that a slow endpoint only slows itself.

:class:`Deliverer` makes the attempts of one delivery and reports each one (a
``WebhookDelivery`` with status DELIVERED, RETRYING or EXHAUSTED); the caller produces them to
the delivery-log topic and EXHAUSTED ones to the webhook dead-letter topic.

* 2xx: delivered. Redirects are not followed (a redirect could lead past the SSRF guard).
* Network errors, timeouts, 408, 425, 429 and 5xx: retried after
  ``min(backoff_max_s, backoff_initial_s * 2**(n-1))`` times a random factor in [0.5, 1]
  (a ``Retry-After`` in seconds is honoured up to ``backoff_max_s``), until ``max_attempts``.
* Other 4xx, a refused target (``ssrf``) or a missing secret: exhausted at once; retrying
  would not help.

**Secrets are the tenant's own.** A subscription's ``secret_env`` is a name within its
tenant's secrets: the deliverer looks up only ``WEBHOOK_SECRET__<TENANT>__<NAME>`` for the
tenant of the event (``sinks.webhooks.secrets``), never the name as it stands, so one
tenant's pack cannot sign with another tenant's secret. A secret that is not set for the
tenant exhausts the delivery at once, unsigned and unsent, with the reason in its record
(and so on the webhook dead-letter topic).

:class:`Dispatcher` gives every subscription its own queue and
``concurrency_per_subscription`` workers; a subscription whose backlog reaches
``max_pending_per_subscription`` has new deliveries dead-lettered at once (status EXHAUSTED,
error ``backlog full``) instead of holding the consumer, and so every other tenant, back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from processors.backoff import Backoff
from schemas.events.webhook import DeliveryStatus, WebhookDelivery
from schemas.pack.webhooks import WebhookSubscription
from schemas.settings import WebhookSettings
from sinks.analytics.rows import redact_url
from sinks.webhooks import signing
from sinks.webhooks.events import WebhookEvent
from sinks.webhooks.secrets import secret_variable
from sinks.webhooks.ssrf import TargetRefusedError, check_url

logger = logging.getLogger(__name__)

USER_AGENT = "turnstream-webhooks/1"
MAX_ERROR_CHARS = 500
RETRYABLE_STATUS = frozenset({408, 425, 429})
RECENT_DELIVERIES = 100_000

AttemptSink = Callable[[WebhookDelivery], Awaitable[None]]
SecretLookup = Callable[[str], str | None]
"""Reads a variable by its full name (the process environment by default); the deliverer asks
it only for tenant-scoped names (``sinks.webhooks.secrets.secret_variable``)."""


@dataclass(frozen=True)
class DeliveryJob:
    delivery_id: str
    subscription: WebhookSubscription
    event: WebhookEvent

    @classmethod
    def of(cls, subscription: WebhookSubscription, event: WebhookEvent) -> DeliveryJob:
        did = signing.delivery_id(event.tenant_id, event.agent_id, subscription.id, event.event_id)
        return cls(did, subscription, event)

    @property
    def lane(self) -> tuple[str, str, str]:
        return (self.event.tenant_id, self.event.agent_id, self.subscription.id)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_s: float = 1.0
    max_s: float = 60.0
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, cfg: WebhookSettings) -> RetryPolicy:
        return cls(cfg.max_attempts, cfg.backoff_initial_s, cfg.backoff_max_s, cfg.timeout_s)

    def delay(self, failed_attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.max_s, max(0.0, retry_after))
        return Backoff(self.initial_s, self.max_s, low=0.5, high=1.0).delay(failed_attempt)


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    retryable: bool = False
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: use the backoff


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class Deliverer:
    """Runs the attempts of one delivery (see the module docstring)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: RetryPolicy,
        *,
        allow_private: bool,
        on_attempt: AttemptSink,
        on_exhausted: AttemptSink,
        secrets: SecretLookup = os.environ.get,
    ) -> None:
        self._session = session
        self._policy = policy
        self._allow_private = allow_private
        self._on_attempt = on_attempt
        self._on_exhausted = on_exhausted
        self._secrets = secrets

    def _record(
        self, job: DeliveryJob, attempt: int, status: DeliveryStatus, outcome: _Outcome
    ) -> WebhookDelivery:
        return WebhookDelivery(
            delivery_id=job.delivery_id,
            subscription_id=job.subscription.id,
            tenant_id=job.event.tenant_id,
            event_type=job.event.event_type,
            url=redact_url(job.subscription.url),
            payload=job.event.body,
            attempt=attempt,
            status=status,
            http_status=outcome.http_status,
            error=outcome.error,
            at=datetime.now(UTC),
        )

    async def _report(self, record: WebhookDelivery) -> None:
        await self._on_attempt(record)
        if record.status is DeliveryStatus.EXHAUSTED:
            await self._on_exhausted(record)

    async def shed(self, job: DeliveryJob, reason: str) -> WebhookDelivery:
        """Give up on a delivery without trying it (its lane's backlog is full)."""
        record = self._record(job, 1, DeliveryStatus.EXHAUSTED, _Outcome(False, error=reason))
        await self._report(record)
        return record

    async def deliver(self, job: DeliveryJob) -> WebhookDelivery:
        body = job.event.body.encode()
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(job, body, attempt)
            last = outcome.ok or not outcome.retryable or attempt >= self._policy.max_attempts
            if outcome.ok:
                status = DeliveryStatus.DELIVERED
            else:
                status = DeliveryStatus.EXHAUSTED if last else DeliveryStatus.RETRYING
            record = self._record(job, attempt, status, outcome)
            await self._report(record)
            if last:
                return record
            await asyncio.sleep(self._policy.delay(attempt, outcome.retry_after))

    async def _attempt(self, job: DeliveryJob, body: bytes, attempt: int) -> _Outcome:
        sub = job.subscription
        tenant = job.event.tenant_id
        variable = secret_variable(tenant, sub.secret_env)
        secret = self._secrets(variable) if variable is not None else None
        if not secret:
            where = variable or "the tenant id has no variable name"
            error = f"secret {sub.secret_env} of tenant {tenant} is not set: {where}"
            return _Outcome(False, error=_short(error))
        try:
            await check_url(sub.url, allow_private=self._allow_private)
        except TargetRefusedError as exc:
            return _Outcome(False, error=_short(f"target refused: {exc}"))
        except OSError as exc:
            return _Outcome(False, retryable=True, error=_short(str(exc)))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            signing.SIGNATURE_HEADER: signing.signature_header(
                secret.encode(), int(time.time()), body
            ),
            signing.DELIVERY_HEADER: job.delivery_id,
            signing.EVENT_HEADER: job.event.event_type,
            signing.ATTEMPT_HEADER: str(attempt),
        }
        timeout = aiohttp.ClientTimeout(total=self._policy.timeout_s)
        try:
            async with self._session.post(
                sub.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                await response.content.read(64 * 1024)
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, TargetRefusedError):
                return _Outcome(False, error=_short(f"target refused: {exc.os_error}"))
            return _Outcome(False, retryable=True, error=_short(f"connection failed: {exc}"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _Outcome(False, retryable=True, error=_short(f"{type(exc).__name__}: {exc}"))
        if 200 <= status < 300:
            return _Outcome(True, http_status=status)
        retryable = status >= 500 or status in RETRYABLE_STATUS
        return _Outcome(
            False,
            retryable=retryable,
            http_status=status,
            error=f"HTTP {status}",
            retry_after=retry_after if retryable else None,
        )


Done = Callable[[], None]


class _Lane:
    def __init__(self, name: str, workers: int) -> None:
        self.name = name
        self.queue: asyncio.Queue[tuple[DeliveryJob, Done]] = asyncio.Queue()
        self.pending = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.size = workers


class Dispatcher:
    """Per-subscription lanes (see the module docstring). ``submit(job, done)`` calls ``done``
    once the delivery is finished (delivered, exhausted or skipped as a duplicate); a job
    whose delivery id is in flight or finished recently in this process is skipped."""

    def __init__(
        self,
        deliverer: Deliverer,
        *,
        concurrency: int,
        max_pending: int,
    ) -> None:
        self._deliverer = deliverer
        self._concurrency = concurrency
        self._max_pending = max_pending
        self._lanes: dict[tuple[str, str, str], _Lane] = {}
        self._in_flight: set[str] = set()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.exhausted = 0
        self.duplicates = 0

    def backlog(self) -> dict[str, int]:
        return {lane.name: lane.pending for lane in self._lanes.values()}

    def submit(self, job: DeliveryJob, done: Done) -> None:
        did = job.delivery_id
        if did in self._in_flight or did in self._finished:
            self.duplicates += 1
            done()
            return
        lane = self._lanes.get(job.lane)
        if lane is None:
            lane = _Lane(":".join(job.lane), self._concurrency)
            self._lanes[job.lane] = lane
        self._in_flight.add(did)
        if lane.pending >= self._max_pending:
            task = asyncio.create_task(self._shed(job, done))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)
            return
        lane.pending += 1
        lane.queue.put_nowait((job, done))
        if len(lane.tasks) < min(lane.size, lane.pending):
            lane.tasks.append(
                asyncio.create_task(self._work(lane), name=f"webhook lane {lane.name}")
            )

    def _finish(self, did: str, record: WebhookDelivery | None) -> None:
        self._in_flight.discard(did)
        if record is None:
            return
        if record.status is DeliveryStatus.DELIVERED:
            self.delivered += 1
        else:
            self.exhausted += 1
        self._finished[did] = None
        while len(self._finished) > RECENT_DELIVERIES:
            self._finished.popitem(last=False)

    async def _shed(self, job: DeliveryJob, done: Done) -> None:
        record = None
        try:
            record = await self._deliverer.shed(job, "backlog full: not attempted")
        except Exception:
            logger.exception("webhooks: shedding %s failed", job.delivery_id)
        finally:
            self._finish(job.delivery_id, record)
            done()

    async def _work(self, lane: _Lane) -> None:
        while True:
            job, done = await lane.queue.get()
            record: WebhookDelivery | None = None
            try:
                record = await self._deliverer.deliver(job)
            except asyncio.CancelledError:
                self._in_flight.discard(job.delivery_id)
                raise
            except Exception:
                # a bug, not an endpoint failure: logged, and not allowed to hold every later
                # offset of the partition back
                logger.exception("webhooks: delivery %s failed unexpectedly", job.delivery_id)
            finally:
                lane.pending -= 1
            self._finish(job.delivery_id, record)
            done()

    async def close(self) -> None:
        """Cancel every lane: unfinished deliveries are retried after a restart."""
        tasks = [task for lane in self._lanes.values() for task in lane.tasks]
        tasks += list(self._side_tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
