"""Tenant isolation, path by path: two tenants run the same agent pack (``acme-shop`` and a
copy as ``globex`` with its own shop data and one extra rule), and the same customer address
and customer number send the same message, with the same turn ids. Nothing of one tenant
reaches the other: retrieval, session state, customer data, memories, analytics views and
webhook deliveries.

Turns run in one process (``run_turn`` over a vector store, lexical index and state that both
tenants share, as a worker's are), in both vector-store layouts: one collection per scope
(local default) and one shared collection per type filtered by payload (the server layout).
The webhook test runs the real webhook consumer on the session's Kafka broker.
"""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from processors.retrieval.model import Scope
from schemas.domain.retrieval import RetrievalType
from schemas.domain.turn_input import Channel, TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.events.completed_turn import CompletedTurn
from schemas.events.webhook import DeliveryStatus, WebhookDelivery
from sinks.analytics.rows import completed_turn_rows, merge, webhook_delivery_rows
from sinks.analytics.store import AnalyticsStore
from sinks.analytics.views import REPORT
from sinks.memory_ingestion import memory_item
from sinks.pack_files import load_pack
from sinks.vector_store import Layout
from sinks.webhooks.delivery import Deliverer, DeliveryJob, RetryPolicy
from sinks.webhooks.events import events_from_turn
from sinks.webhooks.secrets import secret_variable
from sinks.webhooks.ssrf import GuardedResolver
from streams.pack_publisher import publish_pack
from streams.pack_registry import PackRegistry
from streams.pipeline.table_ports import customer_table_key, session_table_key
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.webhook_consumer import WebhookConsumer
from tests.test_analytics_helpers import analytics_settings, open_store, publish_completed
from tests.test_security_helpers import EXAMPLE, SHOP, Turns, tenant_copy
from tests.test_webhooks_helpers import Receiver

A, B = "acme-shop", "globex"
ADDRESS, CUSTOMER = "shared-visitor", "C-1001"
REFUND = "Hi, I want a refund of 900 dollars for order A-10023, it arrived broken"
B_ONLY_RULE = "globex_price_match"
B_RULE_YAML = f"""  - id: {B_ONLY_RULE}
    name: Offer a price match
    condition_text: The customer asks for a refund or their money back for an order.
    examples: ["I want a refund", "refund my order", "give me my money back"]
    action_text: Offer a price match before any refund.
    priority: 70"""


def _globex_shop() -> dict[str, Any]:
    """The same customer number and order number as acme-shop's, another person and order."""
    shop = copy.deepcopy(SHOP)
    shop["customers"][0].update(
        name="Yuki Tanaka", email="yuki.tanaka@globex.example", tier="standard"
    )
    shop["orders"][0].update(
        total=80.0,
        items=["Globex desk lamp"],
        shipping_address="9 Harbor Road, Seattle, WA 98101",
        tracking_number="GX-7788-0001",
        delivered_at="2025-05-20",
    )
    return shop


GLOBEX_SHOP = _globex_shop()
A_FACTS = {"Dana Whitfield", "dana.whitfield@example.com", "gold", "649", "Trailblazer"}
B_FACTS = {"Yuki Tanaka", "yuki.tanaka@globex.example", "Globex desk lamp", "GX-7788-0001"}


@pytest.fixture(scope="module")
def globex_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("tenants") / B / "support"
    return tenant_copy(target, B, shop=GLOBEX_SHOP, extra_rules=B_RULE_YAML)


@pytest.fixture(scope="module", params=[Layout.PER_SCOPE, Layout.SHARED], ids=str)
def turns(request: pytest.FixtureRequest, globex_dir: Path) -> Turns:
    turns = Turns.create(request.param)
    turns.add_pack()
    turns.add_pack(globex_dir)
    return turns


@dataclass(frozen=True)
class Both:
    a: tuple[Any, TurnRecord]
    b: tuple[Any, TurnRecord]


async def _both(turns: Turns, message: str, turn_id: str) -> Both:
    """The same message, address, customer number and turn id, to each tenant."""
    said = [
        await turns.say(
            message, turn_id=turn_id, tenant_id=tenant, channel_id=ADDRESS, customer_id=CUSTOMER
        )
        for tenant in (A, B)
    ]
    return Both(said[0], said[1])


def _candidates(record: TurnRecord, rtype: RetrievalType | None = None) -> set[str]:
    return {
        candidate.item_id
        for selection in record.context.retrievals
        if rtype is None or selection.retrieval_type is rtype
        for candidate in selection.candidates
    }


async def test_retrieval_finds_only_the_tenants_own_objects(turns: Turns) -> None:
    turns.forget()
    both = await _both(turns, REFUND, "iso-retrieval")

    assert B_ONLY_RULE in _candidates(both.b[1], RetrievalType.RULES)  # it would be found
    assert B_ONLY_RULE not in _candidates(both.a[1])
    assert B_ONLY_RULE not in {r.rule_id for r in both.a[1].context.applied_rules}
    a_pack = turns.packs[(A, "support")]
    own = {r.id for r in a_pack.rules} | {s.id for s in a_pack.scenarios}
    own |= {i.id for i in a_pack.intents}
    for rtype in (RetrievalType.RULES, RetrievalType.SCENARIOS, RetrievalType.INTENTS):
        assert _candidates(both.a[1], rtype) <= own


async def test_session_state_is_kept_per_tenant(turns: Turns) -> None:
    turns.forget()
    first = await _both(turns, REFUND, "iso-session-1")
    _, a_record = await turns.say(
        "yes please", turn_id="iso-session-2", tenant_id=A, channel_id=ADDRESS, customer_id=CUSTOMER
    )

    a_session = turns.state.sessions[(A, a_record.session_id)]
    b_session = turns.state.sessions[(B, first.b[1].session_id)]
    assert a_record.session_id == first.a[1].session_id != first.b[1].session_id
    assert (a_session.turn_count, b_session.turn_count) == (2, 1)
    a_said = {m.text for m in a_session.recent_messages}
    assert "yes please" in a_said and "yes please" not in {
        m.text for m in b_session.recent_messages
    }
    b_context = first.b[1].context
    assert b_context.session is None or b_context.session.turn_count == 0
    # the pipeline's own table keys and partition key keep tenants apart for the same ids
    assert session_table_key(A, "s-1") != session_table_key(B, "s-1")
    given = {
        t: TurnInput(
            tenant_id=t,
            agent_id="support",
            channel=Channel.WEBCHAT,
            channel_id=ADDRESS,
            message="x",
        )
        for t in (A, B)
    }
    assert given[A].session_key != given[B].session_key


async def test_customer_data_comes_from_the_tenants_own_records(turns: Turns) -> None:
    turns.forget()
    both = await _both(turns, REFUND, "iso-data")

    def values(record: TurnRecord) -> str:
        store = record.context.customer_data
        assert store is not None
        return " ".join(entry.value for entry in store.variables.values())

    a_text, b_text = both.a[0].text, both.b[0].text
    assert "Dana Whitfield" in values(both.a[1]) and "Yuki Tanaka" in values(both.b[1])
    assert not {f for f in B_FACTS if f in values(both.a[1]) or f in a_text}
    assert not {f for f in A_FACTS if f in values(both.b[1]) or f in b_text}
    stored_a = turns.state.customer_data[(A, CUSTOMER)]
    stored_b = turns.state.customer_data[(B, CUSTOMER)]
    assert stored_a.variables["customer_tier"].value == '"gold"'
    assert stored_b.variables["customer_tier"].value == '"standard"'
    assert customer_table_key(A, CUSTOMER) != customer_table_key(B, CUSTOMER)


async def test_memories_are_found_only_by_their_own_tenant(turns: Turns) -> None:
    turns.forget()
    first = await _both(turns, REFUND, "iso-memory-1")  # the same turn id in both tenants
    a_item, b_item = memory_item(first.a[1]), memory_item(first.b[1])
    assert a_item is not None and b_item is not None
    assert a_item[1].text != b_item[1].text  # the answers differ: each tenant's own data

    turns.ports.indexer.add(a_item[0], [a_item[1]])  # only acme-shop remembers so far
    again = await _both(turns, "about my refund for order A-10023 again", "iso-memory-2")
    assert _candidates(again.a[1], RetrievalType.MEMORIES) == {"iso-memory-1"}  # it is found
    assert _candidates(again.b[1], RetrievalType.MEMORIES) == set()

    turns.ports.indexer.add(b_item[0], [b_item[1]])  # the same id in globex: a point of its own
    for tenant, item in ((A, a_item), (B, b_item)):
        scope = Scope(tenant, "support", RetrievalType.MEMORIES, CUSTOMER)
        assert [doc.text for doc in turns.ports.store.documents(scope)] == [item[1].text]


# -- analytics: a tenant's views are what they would be without the other tenant ------------


@pytest.fixture(scope="module")
async def both_records(globex_dir: Path) -> list[TurnRecord]:
    """Three turns of one conversation in each tenant, with the same turn ids."""
    turns = Turns.create()
    turns.add_pack()
    turns.add_pack(globex_dir)
    records: list[TurnRecord] = []
    for i, message in enumerate([REFUND, "yes please", "where is my order A-10024?"]):
        both = await _both(turns, message, f"iso-analytics-{i}")
        records += [both.a[1], both.b[1]]
    return records


def _completed(record: TurnRecord) -> CompletedTurn:
    return CompletedTurn(
        session_key=record.context.input.session_key, record=record, emitted_at=record.completed_at
    )


def _delivery(tenant: str) -> WebhookDelivery:
    """The same subscription id and delivery id in both tenants."""
    return WebhookDelivery(
        delivery_id="dlv-same",
        subscription_id="crm_sync",
        tenant_id=tenant,
        event_type="turn_completed",
        url=f"https://hooks.{tenant}.example/in",
        payload="{}",
        attempt=1,
        status=DeliveryStatus.DELIVERED,
        http_status=200,
        at=datetime(2025, 6, 1, tzinfo=UTC),
    )


def _view_rows(store: AnalyticsStore, view: str, tenant: str) -> list[tuple[object, ...]]:
    result = store.query(f"SELECT * FROM {view} WHERE tenant_id = {{t:String}}", {"t": tenant})
    return sorted(result.rows, key=repr)


def _store_with(records: list[TurnRecord], tenants: set[str]) -> AnalyticsStore:
    store = open_store(analytics_settings())
    chosen = [r for r in records if r.tenant_id in tenants]
    sensitive = {f.key for f in load_pack(EXAMPLE).fields if f.sensitive}  # both tenants'
    store.write(
        merge(
            completed_turn_rows(_completed(r), store_texts=True, sensitive_fields=sensitive)
            for r in chosen
        )
    )
    store.write(merge(webhook_delivery_rows(_delivery(t)) for t in sorted(tenants)))
    return store


def test_analytics_views_of_a_tenant_do_not_change_when_another_tenant_writes(
    both_records: list[TurnRecord],
) -> None:
    stores = {
        "shared": _store_with(both_records, {A, B}),
        A: _store_with(both_records, {A}),
        B: _store_with(both_records, {B}),
    }
    try:
        for tenant in (A, B):
            filled = set()
            for view in REPORT:
                alone = _view_rows(stores[tenant], view.name, tenant)
                shared = _view_rows(stores["shared"], view.name, tenant)
                assert shared == alone, view.name
                filled |= {view.name} if shared else set()
            assert {"v_phase_latency", "v_rule_hit_rate", "v_webhook_delivery"} <= filled
            turns = _view_rows(stores["shared"], "turns", tenant)
            assert len(turns) == 3  # the same turn ids in both tenants: no row replaced another
            assert REFUND in repr(turns)  # texts are stored (nothing sensitive in it)
        rules_a = _view_rows(stores["shared"], "v_rule_hit_rate", A)
        assert rules_a and B_ONLY_RULE not in repr(rules_a)
        texts_a = repr(_view_rows(stores["shared"], "turns", A))
        assert not {f for f in B_FACTS if f in texts_a}
    finally:
        for store in stores.values():
            store.close()


# -- webhooks --------------------------------------------------------------------------------


def _hooks(receiver: Receiver, env: str) -> str:
    return (
        "webhooks:\n"
        f"  - id: crm_sync\n    url: {receiver.url}\n"
        f"    events: [turn_completed, escalation_requested, scenario_completed]\n"
        f"    secret_env: {env}\n"
    )


async def _wait_until(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture
async def hook_settings(kafka_settings: Settings) -> AsyncIterator[Settings]:
    settings = kafka_settings.model_copy(
        update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}", "partitions": 2}
    )
    hooks = settings.webhooks.model_copy(
        update={"allow_private_targets": True, "backoff_initial_s": 0.02, "backoff_max_s": 0.1}
    )
    settings = settings.model_copy(update={"webhooks": hooks})
    await ensure_topics(settings)
    yield settings


@pytest.mark.integration
async def test_webhooks_go_only_to_the_tenants_own_subscriptions(
    hook_settings: Settings, both_records: list[TurnRecord], tmp_path: Path
) -> None:
    values = {A: "whsec-acme-0001", B: "whsec-globex-0002"}
    secrets = {
        "WEBHOOK_SECRET__ACME_SHOP__ACME_HOOK_SECRET": values[A],
        "WEBHOOK_SECRET__GLOBEX__GLOBEX_HOOK_SECRET": values[B],
    }
    with Receiver(values[A].encode()) as to_a, Receiver(values[B].encode()) as to_b:
        packs = {
            A: tenant_copy(tmp_path / A, A, webhooks=_hooks(to_a, "ACME_HOOK_SECRET")),
            B: tenant_copy(
                tmp_path / B, B, shop=GLOBEX_SHOP, webhooks=_hooks(to_b, "GLOBEX_HOOK_SECRET")
            ),
        }
        for pack_dir in packs.values():
            await publish_pack(hook_settings, load_pack(pack_dir))
        registry = PackRegistry(hook_settings)
        await registry.start()
        consumer = WebhookConsumer(hook_settings, registry, secrets=secrets.get)
        await consumer.start()
        try:
            await registry.wait_for(A, "support")
            await registry.wait_for(B, "support")
            completed = [_completed(r) for r in both_records]
            expected = {
                tenant: {
                    event.event_id
                    for c in completed
                    if c.record.tenant_id == tenant
                    for event in events_from_turn(c)
                }
                for tenant in (A, B)
            }
            await publish_completed(hook_settings, completed)
            total = len(expected[A]) + len(expected[B])
            await _wait_until(
                lambda: len(to_a.successes()) + len(to_b.successes()) >= total, "deliveries"
            )
            dispatcher = consumer.dispatcher
            assert dispatcher is not None
            await _wait_until(lambda: not any(dispatcher.backlog().values()), "empty lanes")
        finally:
            await consumer.stop()
            await registry.stop()

    for receiver, tenant in ((to_a, A), (to_b, B)):
        hits = receiver.snapshot()
        assert all(hit.verified for hit in hits)  # signed with this tenant's own secret
        bodies = [hit.body.decode() for hit in hits]
        assert all(f'"tenant_id":"{tenant}"' in body for body in bodies)
        got = {body.split('"event_id":"', 1)[1].split('"', 1)[0] for body in bodies}
        assert got == expected[tenant]
    assert set(to_a.successes()).isdisjoint(to_b.successes())  # delivery ids differ too


async def test_a_pack_cannot_sign_with_another_tenants_webhook_secret(
    both_records: list[TurnRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """globex's pack names acme's secret: under its bare name (as packs used to) and as acme's
    own tenant-scoped variable, both set in the worker's environment. globex's delivery is
    dead-lettered unsent, with the reason; acme's, through the same subscription, is signed
    with acme's secret: the tenant binding, nothing else, makes the difference."""
    acme_secret = "whsec-acme-only-0003"
    name = "ACME_CRM_WEBHOOK_SECRET"
    monkeypatch.setenv(name, acme_secret)  # the bare name
    acme_variable = secret_variable(A, name)
    assert acme_variable == "WEBHOOK_SECRET__ACME_SHOP__ACME_CRM_WEBHOOK_SECRET"
    monkeypatch.setenv(acme_variable, acme_secret)  # acme's own
    monkeypatch.delenv(f"WEBHOOK_SECRET__GLOBEX__{name}", raising=False)
    a_record = next(r for r in both_records if r.tenant_id == A)
    b_record = next(r for r in both_records if r.tenant_id == B)
    log: list[WebhookDelivery] = []
    dead: list[WebhookDelivery] = []
    asked: list[str] = []

    async def keep(record: WebhookDelivery) -> None:
        log.append(record)

    async def dead_letter(record: WebhookDelivery) -> None:
        dead.append(record)

    def environment(variable: str) -> str | None:
        asked.append(variable)
        return os.environ.get(variable)

    # the receiver checks signatures with acme's secret
    with Receiver(acme_secret.encode()) as receiver:
        subscription = receiver.subscription("crm_sync", ["turn_completed"], name)
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private=True))
        async with aiohttp.ClientSession(connector=connector) as session:
            deliverer = Deliverer(
                session,
                RetryPolicy(max_attempts=3, initial_s=0.01, max_s=0.02),
                allow_private=True,
                on_attempt=keep,
                on_exhausted=dead_letter,
                secrets=environment,
            )
            b_event = events_from_turn(_completed(b_record))[0]
            b_final = await deliverer.deliver(DeliveryJob.of(subscription, b_event))
            a_event = events_from_turn(_completed(a_record))[0]
            a_final = await deliverer.deliver(DeliveryJob.of(subscription, a_event))
        hits = receiver.snapshot()

    assert asked == [f"WEBHOOK_SECRET__GLOBEX__{name}", acme_variable]  # never the bare name
    assert (b_final.tenant_id, b_final.attempt, b_final.status) == (
        B,
        1,
        DeliveryStatus.EXHAUSTED,
    )
    assert (
        b_final.error == f"secret {name} of tenant {B} is not set: WEBHOOK_SECRET__GLOBEX__{name}"
    )
    assert dead == [b_final]  # the webhook dead letter, with the reason
    assert a_final.status is DeliveryStatus.DELIVERED
    assert [(hit.delivery_id, hit.verified) for hit in hits] == [(a_final.delivery_id, True)]
    assert not any(f'"tenant_id":"{B}"'.encode() in hit.body for hit in hits)
