"""The webhook consumer end to end: real broker, real pack registry, real receiver.

The receiver fails the first two attempts of every delivery and verifies every signature;
turns are replayed. Each event id is delivered successfully exactly once, after three signed
attempts, every attempt is on the delivery-log topic, and the analytics consumer logs them
in ClickHouse, where the webhook view counts them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from schemas.codec import decode_as
from schemas.domain.plan import ResponseType
from schemas.events.webhook import DeliveryStatus, WebhookDelivery
from schemas.pack.webhooks import WebhookSubscription
from sinks.analytics.store import AnalyticsStore
from sinks.pack_files import load_pack
from sinks.webhooks.signing import delivery_id
from streams.analytics_consumer import AnalyticsConsumer
from streams.kafka_clients import consumer_kwargs
from streams.pack_publisher import publish_pack
from streams.pack_registry import PackRegistry
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.topics import WEBHOOK_DEAD_LETTER, WEBHOOK_DELIVERIES
from streams.webhook_consumer import WebhookConsumer
from tests.test_analytics_helpers import (
    analytics_settings,
    make_turn,
    open_store,
    publish_completed,
)
from tests.test_pack_validate import EXAMPLE
from tests.test_webhooks_helpers import Receiver

pytestmark = pytest.mark.integration

TENANT, AGENT = "acme-shop", "support"
SECRET = b"whsec-integration-secret"
SECRETS = {"WEBHOOK_SECRET__ACME_SHOP__ACME_TEST_HOOK_SECRET": SECRET.decode()}


@pytest.fixture
async def settings(kafka_settings: Settings) -> Settings:
    isolated = kafka_settings.model_copy(
        update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}", "partitions": 2}
    )
    settings = analytics_settings(isolated, flush_interval_s=0.2)
    hooks = settings.webhooks.model_copy(
        update={
            "allow_private_targets": True,  # the receiver is on loopback
            "backoff_initial_s": 0.02,
            "backoff_max_s": 0.1,
            "max_attempts": 5,
        }
    )
    settings = settings.model_copy(update={"webhooks": hooks})
    await ensure_topics(settings)
    return settings


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[AnalyticsStore]:
    store = await asyncio.to_thread(open_store, settings)
    yield store
    await asyncio.to_thread(store.close)


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def read_all(settings: Settings, topic: str) -> list[WebhookDelivery]:
    consumer = AIOKafkaConsumer(
        group_id=None, auto_offset_reset="earliest", **consumer_kwargs(settings)
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found: list[WebhookDelivery] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                found += [decode_as(r.value, WebhookDelivery) for r in records]
        return found
    finally:
        await consumer.stop()


async def test_each_event_is_delivered_once_signed_and_every_attempt_logged(
    settings: Settings, store: AnalyticsStore
) -> None:
    with Receiver(SECRET, fail_first=2) as receiver:
        crm = receiver.subscription(
            "crm_sync", ["turn_completed", "escalation_requested"], "ACME_TEST_HOOK_SECRET"
        )
        off = WebhookSubscription(
            id="disabled_hook",
            url=receiver.url,
            events=["turn_completed"],
            secret_env="ACME_TEST_HOOK_SECRET",
            enabled=False,
        )
        pack = load_pack(EXAMPLE)
        await publish_pack(settings, pack.model_copy(update={"webhooks": [crm, off]}))
        registry = PackRegistry(settings)
        await registry.start()
        await registry.wait_for(TENANT, AGENT)

        services = [
            WebhookConsumer(settings, registry, secrets=SECRETS.get),
            AnalyticsConsumer(settings, store=store),
        ]
        for service in services:
            await service.start()
        try:
            turns = [
                make_turn(
                    f"{settings.topic_prefix}-T{i}",
                    tenant=TENANT,
                    agent=AGENT,
                    session=f"s{i}",
                    response_type=ResponseType.ESCALATE if i == 2 else ResponseType.ANSWER,
                )
                for i in range(5)
            ]
            stranger = make_turn("no-pack-turn", tenant="nobody", agent="none")
            records = [*turns, turns[0], stranger, turns[1]]  # two replays
            await publish_completed(settings, records)

            expected = {
                delivery_id(TENANT, AGENT, "crm_sync", f"turn_completed:{t.record.turn_id}")
                for t in turns
            } | {
                delivery_id(
                    TENANT, AGENT, "crm_sync", f"escalation_requested:{turns[2].record.turn_id}"
                )
            }

            def webhook_rows() -> int:
                return int(store.query("SELECT count() FROM webhook_deliveries FINAL").rows[0][0])

            await wait_until(lambda: set(receiver.successes()) == expected, "six deliveries")
            await wait_until(lambda: webhook_rows() == 3 * len(expected), "attempts in ClickHouse")
        finally:
            for service in reversed(services):
                await service.stop()
            await registry.stop()

    hits = receiver.snapshot()
    assert receiver.successes() == Counter({did: 1 for did in expected})
    assert all(hit.verified for hit in hits)
    by_delivery: dict[str, list[int]] = defaultdict(list)
    for hit in hits:
        by_delivery[hit.delivery_id].append(hit.status)
    assert {did: statuses for did, statuses in by_delivery.items()} == {
        did: [503, 503, 200] for did in expected
    }
    assert {hit.event_type for hit in hits} == {"turn_completed", "escalation_requested"}

    logged = await read_all(settings, WEBHOOK_DELIVERIES.name(settings.topic_prefix))
    attempts: dict[str, list[tuple[int, DeliveryStatus]]] = defaultdict(list)
    for record in logged:
        attempts[record.delivery_id].append((record.attempt, record.status))
    R, D = DeliveryStatus.RETRYING, DeliveryStatus.DELIVERED
    assert {did: sorted(a) for did, a in attempts.items()} == {
        did: [(1, R), (2, R), (3, D)] for did in expected
    }
    assert await read_all(settings, WEBHOOK_DEAD_LETTER.name(settings.topic_prefix)) == []

    view = store.query(
        "SELECT subscription_id, deliveries, delivered, exhausted, attempts, success_rate, "
        "attempts_per_delivery FROM v_webhook_delivery WHERE tenant_id = {t:String}",
        {"t": TENANT},
    )
    assert view.rows == [("crm_sync", 6, 6, 0, 18, 1.0, 3.0)]


async def test_a_secret_the_tenant_does_not_have_dead_letters_the_delivery_unsent(
    settings: Settings,
) -> None:
    """The pack names a secret that exists in the worker's environment only under its bare
    name and under another tenant's scope: nothing is sent, the delivery is dead-lettered
    with the reason, and the consumer goes on."""
    name = "ACME_TEST_HOOK_SECRET"
    secrets = {name: SECRET.decode(), f"WEBHOOK_SECRET__GLOBEX__{name}": SECRET.decode()}
    with Receiver(SECRET) as receiver:
        pack = load_pack(EXAMPLE)
        crm = receiver.subscription("crm_sync", ["turn_completed"], name)
        await publish_pack(settings, pack.model_copy(update={"webhooks": [crm]}))
        registry = PackRegistry(settings)
        await registry.start()
        await registry.wait_for(TENANT, AGENT)
        consumer = WebhookConsumer(settings, registry, secrets=secrets.get)
        await consumer.start()
        try:
            turn = make_turn(f"{settings.topic_prefix}-N", tenant=TENANT, agent=AGENT)
            await publish_completed(settings, [turn])
            dispatcher = consumer.dispatcher
            assert dispatcher is not None
            await wait_until(lambda: dispatcher.exhausted == 1, "the dead letter")
        finally:
            await consumer.stop()
            await registry.stop()
        assert receiver.snapshot() == []

    (dead,) = await read_all(settings, WEBHOOK_DEAD_LETTER.name(settings.topic_prefix))
    assert dead.delivery_id == delivery_id(
        TENANT, AGENT, "crm_sync", f"turn_completed:{turn.record.turn_id}"
    )
    assert (dead.attempt, dead.status, dead.http_status) == (1, DeliveryStatus.EXHAUSTED, None)
    assert (
        dead.error
        == f"secret {name} of tenant {TENANT} is not set: WEBHOOK_SECRET__ACME_SHOP__{name}"
    )
    assert SECRET.decode() not in dead.model_dump_json()
