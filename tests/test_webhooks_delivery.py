"""Webhook signing, the SSRF guard, events, and delivery against a real loopback receiver."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from schemas.domain.plan import ResponseType
from schemas.domain.scenario import ScenarioAction
from schemas.events.webhook import DeliveryStatus, WebhookDelivery
from sinks.webhooks import signing
from sinks.webhooks.delivery import Deliverer, DeliveryJob, Dispatcher, RetryPolicy
from sinks.webhooks.events import events_from_turn
from sinks.webhooks.secrets import secret_variable
from sinks.webhooks.signing import SignatureError
from sinks.webhooks.ssrf import GuardedResolver, TargetRefusedError, check_address, check_url
from tests.test_analytics_helpers import decision, make_turn
from tests.test_webhooks_helpers import Receiver

SECRET = b"whsec-test-0123456789"
ENV = "TEST_HOOK_SECRET"
TENANT = "t1"  # make_turn's
SECRETS = {f"WEBHOOK_SECRET__T1__{ENV}": SECRET.decode()}
FAST = RetryPolicy(max_attempts=4, initial_s=0.01, max_s=0.05, timeout_s=10)

# -- signing ---------------------------------------------------------------------------------


def test_a_signature_verifies_and_any_change_breaks_it() -> None:
    body = b'{"event_id":"e1"}'
    header = signing.signature_header(SECRET, 1_700_000_000, body)
    assert signing.verify(SECRET, header, body, now=1_700_000_010) == 1_700_000_000
    with pytest.raises(SignatureError, match="does not match"):
        signing.verify(SECRET, header, body + b" ", now=1_700_000_010)
    with pytest.raises(SignatureError, match="does not match"):
        signing.verify(b"other", header, body, now=1_700_000_010)
    with pytest.raises(SignatureError, match="tolerance"):
        signing.verify(SECRET, header, body, now=1_700_000_000 + 301)
    with pytest.raises(SignatureError):
        signing.verify(SECRET, None, body)
    with pytest.raises(SignatureError):
        signing.verify(SECRET, "v1=abc", body, now=1_700_000_000)


def test_delivery_ids_are_stable_per_event_and_subscription() -> None:
    one = signing.delivery_id("t", "a", "crm", "turn_completed:T1")
    assert one == signing.delivery_id("t", "a", "crm", "turn_completed:T1")
    assert one != signing.delivery_id("t", "a", "erp", "turn_completed:T1")
    assert one != signing.delivery_id("t", "a", "crm", "turn_completed:T2")
    assert one.startswith("dlv_") and len(one) == 36


# -- the SSRF guard --------------------------------------------------------------------------

REFUSED = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "192.0.2.10", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "0.0.0.0", "224.0.0.1",
]  # fmt: skip


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(TargetRefusedError):
        check_address(address, allow_private=False)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    check_address(ipaddress.ip_address(address), allow_private=False)


def test_allowing_private_targets_still_refuses_multicast_and_unspecified() -> None:
    check_address("127.0.0.1", allow_private=True)
    check_address("10.0.0.1", allow_private=True)
    for address in ("0.0.0.0", "224.0.0.1", "::"):
        with pytest.raises(TargetRefusedError):
            check_address(address, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com",
        "http:///nohost",
        "http://127.0.0.1:8080/h",
        "http://[::1]/h",
        "http://localhost/h",  # resolves to loopback
        "http://127.1/h",  # a short form of 127.0.0.1
    ],
)
async def test_urls_that_are_refused(url: str) -> None:
    with pytest.raises(TargetRefusedError):
        await check_url(url, allow_private=False)


async def test_the_resolver_refuses_private_answers_at_connect_time() -> None:
    resolver = GuardedResolver(allow_private=False)
    try:
        with pytest.raises(TargetRefusedError):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    allowed = GuardedResolver(allow_private=True)
    try:
        assert await allowed.resolve("localhost", 80)
    finally:
        await allowed.close()


# -- events ----------------------------------------------------------------------------------


def test_a_turn_raises_its_events_with_stable_ids() -> None:
    plain = make_turn("T1")
    escalated = make_turn(
        "T2",
        response_type=ResponseType.ESCALATE,
        decisions=[decision(ScenarioAction.COMPLETE, scenario="returns")],
    )
    assert [e.event_id for e in events_from_turn(plain)] == ["turn_completed:T1"]
    events = events_from_turn(escalated)
    assert [(e.event_type, e.event_id) for e in events] == [
        ("turn_completed", "turn_completed:T2"),
        ("escalation_requested", "escalation_requested:T2"),
        ("scenario_completed", "scenario_completed:T2:returns"),
    ]
    body = json.loads(events[0].body)
    assert body["data"]["turn_id"] == "T2" and body["tenant_id"] == "t1"
    assert events_from_turn(escalated) == events  # same turn, same events, same bytes


# -- delivery --------------------------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.attempts: list[WebhookDelivery] = []
        self.dead: list[WebhookDelivery] = []

    async def attempt(self, record: WebhookDelivery) -> None:
        self.attempts.append(record)

    async def dead_letter(self, record: WebhookDelivery) -> None:
        self.dead.append(record)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private=True))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


MakeDeliverer = Callable[..., Deliverer]


@pytest.fixture
def make_deliverer(session: aiohttp.ClientSession) -> Callable[..., tuple[Deliverer, Log]]:
    def make(
        policy: RetryPolicy = FAST, allow_private: bool = True, secrets: dict[str, str] = SECRETS
    ) -> tuple[Deliverer, Log]:
        log = Log()
        deliverer = Deliverer(
            session,
            policy,
            allow_private=allow_private,
            on_attempt=log.attempt,
            on_exhausted=log.dead_letter,
            secrets=secrets.get,
        )
        return deliverer, log

    return make


def job_for(receiver: Receiver, turn_id: str = "T1", sub: str = "crm") -> DeliveryJob:
    event = events_from_turn(make_turn(turn_id))[0]
    return DeliveryJob.of(receiver.subscription(sub, ["turn_completed"], ENV), event)


async def test_failed_attempts_are_retried_until_delivered(
    make_deliverer: Callable[..., tuple[Deliverer, Log]],
) -> None:
    deliverer, log = make_deliverer()
    with Receiver(SECRET, fail_first=2) as receiver:
        job = job_for(receiver)
        final = await deliverer.deliver(job)
    assert final.status is DeliveryStatus.DELIVERED
    assert [(r.attempt, r.status, r.http_status) for r in log.attempts] == [
        (1, DeliveryStatus.RETRYING, 503),
        (2, DeliveryStatus.RETRYING, 503),
        (3, DeliveryStatus.DELIVERED, 200),
    ]
    assert {r.delivery_id for r in log.attempts} == {job.delivery_id}
    hits = receiver.snapshot()
    assert [(h.attempt, h.verified, h.delivery_id) for h in hits] == [
        (1, True, job.delivery_id),
        (2, True, job.delivery_id),
        (3, True, job.delivery_id),
    ]
    assert hits[0].body == job.event.body.encode()
    assert log.dead == []


async def test_a_delivery_that_keeps_failing_is_dead_lettered(
    make_deliverer: Callable[..., tuple[Deliverer, Log]],
) -> None:
    deliverer, log = make_deliverer(RetryPolicy(max_attempts=3, initial_s=0.01, max_s=0.02))
    with Receiver(SECRET, fail_first=99, fail_status=500) as receiver:
        final = await deliverer.deliver(job_for(receiver))
    assert final.status is DeliveryStatus.EXHAUSTED
    assert [r.status for r in log.attempts] == [
        DeliveryStatus.RETRYING,
        DeliveryStatus.RETRYING,
        DeliveryStatus.EXHAUSTED,
    ]
    assert log.dead == [final]


async def test_a_client_error_is_not_retried(
    make_deliverer: Callable[..., tuple[Deliverer, Log]],
) -> None:
    deliverer, log = make_deliverer()
    with Receiver(SECRET, fail_first=99, fail_status=410) as receiver:
        final = await deliverer.deliver(job_for(receiver))
    assert (final.attempt, final.status, final.http_status) == (1, DeliveryStatus.EXHAUSTED, 410)
    assert len(receiver.snapshot()) == 1 and log.dead == [final]


async def test_a_refused_target_and_a_missing_secret_send_nothing(
    make_deliverer: Callable[..., tuple[Deliverer, Log]],
) -> None:
    guarded, log = make_deliverer(allow_private=False)
    no_secret, log2 = make_deliverer(secrets={})
    with Receiver(SECRET) as receiver:
        refused = await guarded.deliver(job_for(receiver))
        unsigned = await no_secret.deliver(job_for(receiver))
        assert receiver.snapshot() == []
    assert (refused.attempt, refused.status) == (1, DeliveryStatus.EXHAUSTED)
    assert refused.error is not None and "target refused" in refused.error
    assert unsigned.error == f"secret {ENV} of tenant t1 is not set: WEBHOOK_SECRET__T1__{ENV}"
    assert log.dead == [refused] and log2.dead == [unsigned]


# -- secrets are bound to the tenant ---------------------------------------------------------


def test_a_secret_variable_names_one_tenant_and_one_secret() -> None:
    assert secret_variable("acme-shop", "CRM_SECRET") == "WEBHOOK_SECRET__ACME_SHOP__CRM_SECRET"
    assert secret_variable("a1", "X") == "WEBHOOK_SECRET__A1__X"
    # what could make two (tenant, name) pairs meet on one variable is refused
    for tenant, name in [
        ("acme", "SHOP__CRM"),  # would be acme-shop's CRM
        ("acme_shop", "CRM"),  # not a tenant id: "_" would collide with "-"
        ("ACME-SHOP", "CRM"),
        ("acme-shop", "_CRM"),
        ("acme-shop", "CRM_"),
        ("acme-shop", "crm"),
        ("acme-shop", ""),
        ("", "CRM"),
        ("-acme", "CRM"),
        ("acme shop", "CRM"),
        ("a" * 65, "CRM"),
    ]:
        assert secret_variable(tenant, name) is None, (tenant, name)
    pairs = [(t, n) for t in ("a", "a-b", "a-b-c", "ab", "a--b") for n in ("X", "B_X", "X_Y_Z")]
    names = [secret_variable(t, n) for t, n in pairs]
    assert None not in names and len(set(names)) == len(pairs)


async def test_the_secret_is_looked_up_only_under_the_events_tenant(
    session: aiohttp.ClientSession,
) -> None:
    asked: list[str] = []

    def lookup(name: str) -> str | None:
        asked.append(name)
        return {**SECRETS, ENV: "the bare name must never be read"}.get(name)

    log = Log()
    deliverer = Deliverer(
        session,
        FAST,
        allow_private=True,
        on_attempt=log.attempt,
        on_exhausted=log.dead_letter,
        secrets=lookup,
    )
    with Receiver(SECRET) as receiver:
        own = await deliverer.deliver(job_for(receiver, "T1"))
        other = events_from_turn(make_turn("T2", tenant="t2"))[0]
        sub = receiver.subscription("crm", ["turn_completed"], ENV)
        foreign = await deliverer.deliver(DeliveryJob.of(sub, other))
        hits = receiver.snapshot()
    assert asked == [f"WEBHOOK_SECRET__T1__{ENV}", f"WEBHOOK_SECRET__T2__{ENV}"]
    assert own.status is DeliveryStatus.DELIVERED
    assert (foreign.attempt, foreign.status) == (1, DeliveryStatus.EXHAUSTED)
    assert foreign.error == f"secret {ENV} of tenant t2 is not set: WEBHOOK_SECRET__T2__{ENV}"
    assert log.dead == [foreign]
    assert [(hit.delivery_id, hit.verified) for hit in hits] == [(own.delivery_id, True)]


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_a_slow_endpoint_does_not_hold_other_subscriptions_back(
    make_deliverer: Callable[..., tuple[Deliverer, Log]],
) -> None:
    deliverer, log = make_deliverer()
    dispatcher = Dispatcher(deliverer, concurrency=2, max_pending=3)
    release = threading.Event()
    done: list[str] = []
    try:
        with Receiver(SECRET, hold=release) as slow, Receiver(SECRET) as fast:
            slow_jobs = [job_for(slow, f"S{i}", sub="slow") for i in range(4)]
            fast_jobs = [job_for(fast, f"F{i}", sub="fast") for i in range(6)]
            for job in slow_jobs + fast_jobs[:3]:
                dispatcher.submit(job, lambda job=job: done.append(job.delivery_id))
            dispatcher.submit(fast_jobs[0], lambda: done.append("duplicate"))
            await wait_until(lambda: {j.delivery_id for j in fast_jobs[:3]} <= set(done), "fast")
            # more work for the fast subscription while the slow one still holds its requests
            for job in fast_jobs[3:]:
                dispatcher.submit(job, lambda job=job: done.append(job.delivery_id))
            fast_ids = {job.delivery_id for job in fast_jobs}
            await wait_until(lambda: fast_ids <= set(done), "fast deliveries")
            # the slow lane holds two requests in flight and one queued; the fourth job
            # exceeded its backlog (3) and was dead-lettered without an attempt
            assert {j.delivery_id for j in slow_jobs[:3]}.isdisjoint(done)
            assert [r.delivery_id for r in log.dead] == [slow_jobs[3].delivery_id]
            assert log.dead[0].error == "backlog full: not attempted"
            assert "duplicate" in done and dispatcher.duplicates == 1
            release.set()
            every = fast_ids | {j.delivery_id for j in slow_jobs}
            await wait_until(lambda: every <= set(done), "slow deliveries")
            assert set(fast.successes().values()) == {1} and len(fast.successes()) == 6
            assert len(slow.successes()) == 3
    finally:
        await dispatcher.close()


def test_offsets_are_committable_only_below_unfinished_deliveries() -> None:
    from aiokafka.structs import TopicPartition

    from streams.webhook_consumer import OffsetTracker

    tp = TopicPartition("t", 0)
    tracker = OffsetTracker()
    tracker.begin(tp, 10, 0)  # no subscription: done at once
    assert tracker.committable() == {tp: 11}
    tracker.begin(tp, 11, 2)
    tracker.begin(tp, 12, 1)
    tracker.begin(tp, 13, 0)
    assert tracker.committable() == {tp: 11}
    tracker.done(tp, 12)  # a later record finished first: still held at 11
    tracker.done(tp, 11)
    assert tracker.committable() == {tp: 11}
    tracker.done(tp, 11)
    assert tracker.committable() == {tp: 14} and tracker.pending() == 0
