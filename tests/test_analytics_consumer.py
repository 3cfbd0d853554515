"""The analytics consumer on a real broker: ClickHouse down during a load, then back.

"Down" is real: the data directories of the test database's tables are made unwritable
(``chattr +i`` as root, read-only permissions otherwise), so chdb itself fails every insert
(``filesystem error: create_directories: Operation not permitted``) until they are writable
again. While every insert fails, nothing is committed and nothing is stored (raw counts);
once inserts succeed, the offsets are committed and every turn's rows are there: exactly once
in the raw table for a turn whose record came once, and exactly once under ``FINAL`` (the
product's reading: every analyst view reads ``FINAL``, since a record read twice, by a
replay after a crash or a rebalance, is written twice and collapsed only when
``ReplacingMergeTree`` merges) for the replayed ones, poison records included. A second
consumer group replaying the whole stream into the same tables changes no ``FINAL`` count,
and after ``OPTIMIZE ... FINAL`` the raw counts equal them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from schemas.codec import encode
from schemas.domain.customer_data import (
    CustomerDataStore,
    VariableEntry,
    VariableScope,
    VariableSource,
    VariableType,
)
from schemas.events.analytics import AnalyticsEvent
from schemas.events.dead_letter import DeadLetter
from schemas.events.webhook import DeliveryStatus, WebhookDelivery
from schemas.fields import json_text
from sinks.analytics import rows, tables
from sinks.analytics.privacy import Pseudonyms
from sinks.analytics.store import AnalyticsStore
from sinks.pack_files import load_pack
from streams.analytics_consumer import AnalyticsConsumer, group_id
from streams.kafka_clients import consumer_kwargs
from streams.pack_publisher import publish_pack
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.topics import ANALYTICS_EVENTS, DEAD_LETTER, TURN_COMPLETED, WEBHOOK_DELIVERIES
from tests.test_analytics_helpers import (
    DAY1,
    analytics_settings,
    make_turn,
    open_store,
    produce,
    publish_completed,
    varied_turns,
)
from tests.test_pack_validate import EXAMPLE

pytestmark = pytest.mark.integration

TURN_COUNT = 60
REPLAYED = 20


def table_dirs(store: AnalyticsStore) -> list[Path]:
    """The data directories of every table of the store's database."""
    found = store.query(
        "SELECT data_paths FROM system.tables WHERE database = {db:String}",
        {"db": store.database},
    ).rows
    return [Path(p) for (paths,) in found for p in paths]


def _writable(directory: Path) -> bool:
    probe = directory / f"probe-{uuid.uuid4().hex[:6]}"
    try:
        probe.mkdir()
    except OSError:
        return False
    probe.rmdir()
    return True


@contextlib.contextmanager
def unwritable(dirs: list[Path]) -> Iterator[None]:
    """Make ``dirs`` unwritable for this process (root included) while inside."""
    immutable = os.geteuid() == 0
    if immutable and shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory unwritable")
    modes = {d: d.stat().st_mode for d in dirs}
    try:
        for d in dirs:
            if immutable:
                done = subprocess.run(["chattr", "+i", str(d)], capture_output=True, check=False)
                if done.returncode != 0:
                    pytest.skip(f"chattr +i failed here: {done.stderr.decode().strip()}")
            else:
                d.chmod(stat.S_IRUSR | stat.S_IXUSR)
        if any(_writable(d) for d in dirs):
            pytest.skip("the table directories stay writable on this file system")
        yield
    finally:
        for d in dirs:
            if immutable:
                subprocess.run(["chattr", "-i", str(d)], capture_output=True, check=False)
            else:
                d.chmod(modes[d])


@pytest.fixture
async def settings(kafka_settings: Settings) -> Settings:
    isolated = kafka_settings.model_copy(
        update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}", "partitions": 2}
    )
    settings = analytics_settings(
        isolated, batch_size=16, flush_interval_s=0.2, retry_initial_s=0.05, retry_max_s=0.2
    )
    await ensure_topics(settings)
    return settings


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[AnalyticsStore]:
    opened = await asyncio.to_thread(open_store, settings)
    yield opened
    await asyncio.to_thread(opened.close)


async def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        offsets: dict[TopicPartition, int] = await consumer.end_offsets(parts)
        return {tp: o for tp, o in offsets.items() if o > 0}
    finally:
        await consumer.stop()


async def committed(settings: Settings, parts: list[TopicPartition]) -> dict[TopicPartition, Any]:
    consumer = AIOKafkaConsumer(group_id=group_id(settings), **consumer_kwargs(settings))
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) for tp in parts}
    finally:
        await consumer.stop()


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def count(store: AnalyticsStore, sql: str) -> Any:
    return store.query(sql).rows[0][0]


def the_load(settings: Settings) -> tuple[list[tuple[str, bytes | None, bytes]], Any]:
    prefix = settings.topic_prefix
    turns = varied_turns(TURN_COUNT, prefix=f"{prefix}-turn")
    completed = TURN_COMPLETED.name(prefix)
    load: list[tuple[str, bytes | None, bytes]] = [
        (completed, t.session_key.encode(), encode(t)) for t in turns
    ]
    load += [(completed, t.session_key.encode(), encode(t)) for t in turns[:REPLAYED]]
    load.append((completed, b"t1:webchat:poison", b"not avro at all"))
    load += [
        (
            DEAD_LETTER.name(prefix),
            None,
            encode(
                DeadLetter(
                    source_topic=f"{prefix}.turn.requested",
                    partition=0,
                    offset=i,
                    key=b"t1:webchat:x",
                    reason="bad_marker",
                    detail="junk",
                    original=b"junk",
                    at=DAY1,
                )
            ),
        )
        for i in range(3)
    ]
    load += [
        (
            WEBHOOK_DELIVERIES.name(prefix),
            b"dlv_1",
            encode(
                WebhookDelivery(
                    delivery_id="dlv_1",
                    subscription_id="crm",
                    tenant_id="t1",
                    event_type="turn_completed",
                    url="https://crm.example.com/h",
                    payload=json_text({}),
                    attempt=n,
                    status=DeliveryStatus.DELIVERED if n == 4 else DeliveryStatus.RETRYING,
                    at=DAY1 + timedelta(seconds=n),
                )
            ),
        )
        for n in (1, 2, 3, 4, 4)  # the last attempt twice: a producer retry
    ]
    load += [
        (
            ANALYTICS_EVENTS.name(prefix),
            b"t1:webchat:x",
            encode(
                AnalyticsEvent(
                    event_id=f"e{i}",
                    tenant_id="t1",
                    turn_id="x",
                    event_type="rule_matched",
                    at=DAY1,
                )
            ),
        )
        for i in range(2)
    ]
    expected = rows.merge(rows.completed_turn_rows(t) for t in turns).counts()
    return load, expected


async def test_clickhouse_down_during_a_load_loses_and_duplicates_nothing(
    settings: Settings, store: AnalyticsStore
) -> None:
    consumer = AnalyticsConsumer(settings, store=store)
    load, expected = the_load(settings)
    topics = sorted({topic for topic, _, _ in load})
    with unwritable(table_dirs(store)):
        await consumer.start()
        try:
            await produce(settings, load)
            ends = await end_offsets(settings, topics)
            assert sum(ends.values()) == len(load)

            await wait_until(lambda: consumer.stats.write_failures >= 3, "three failed writes")
            assert "Operation not permitted" in (consumer.stats.last_error or "")
            assert consumer.stats.committed == {} and consumer.stats.batches == 0
            assert set((await committed(settings, list(ends))).values()) == {None}
            for table in tables.ALL_TABLES:  # nothing stored, not even part of a batch
                assert count(store, f"SELECT count() FROM {table.name}") == 0, table.name
        except BaseException:
            await consumer.stop()
            raise
    try:  # ClickHouse can write again
        await wait_until(lambda: consumer.stats.committed == ends, "every offset committed")
    finally:
        await consumer.stop()

    assert consumer.stats.records == len(load)
    assert consumer.stats.write_failures >= 3 and consumer.stats.poison == 1
    assert await committed(settings, list(ends)) == ends
    turns = varied_turns(TURN_COUNT, prefix=f"{settings.topic_prefix}-turn")
    once = [t.record.turn_id for t in turns[REPLAYED:]]  # their record came once
    sent_once = rows.merge(rows.completed_turn_rows(t) for t in turns[REPLAYED:]).counts()
    ids = ", ".join(f"'{t}'" for t in once)
    for table in tables.TURN_TABLES:
        name = table.name
        assert count(store, f"SELECT count() FROM {name} FINAL") == expected[name], name
        raw = count(store, f"SELECT count() FROM {name} WHERE turn_id IN ({ids})")
        assert raw == sent_once[name], name  # no retry wrote anything twice
        assert count(store, f"SELECT count() FROM {name}") >= expected[name], name
    assert store.query(
        "SELECT count(), uniqExact(turn_id), max(n) FROM "
        "(SELECT turn_id, count() AS n FROM turns FINAL GROUP BY turn_id)"
    ).rows == [(TURN_COUNT, TURN_COUNT, 1)]
    assert store.query(
        f"SELECT count(), max(n) FROM (SELECT turn_id, count() AS n FROM turns "
        f"WHERE turn_id IN ({ids}) GROUP BY turn_id)"
    ).rows == [(TURN_COUNT - REPLAYED, 1)]
    assert store.query(
        "SELECT reason, count() FROM dead_letters FINAL GROUP BY reason ORDER BY reason"
    ).rows == [("bad_marker", 3), ("codec.bad_marker", 1)]
    assert count(store, "SELECT count() FROM webhook_deliveries FINAL") == 4
    assert count(store, "SELECT count() FROM analytics_events FINAL") == 2

    # a second group replays everything into the same tables: no FINAL count changes, and
    # once merged the raw tables hold the same rows
    replay = settings.model_copy(
        update={"analytics": settings.analytics.model_copy(update={"group_id": "replay"})}
    )
    again = AnalyticsConsumer(replay, store=store)
    await again.start()
    try:
        await wait_until(lambda: again.stats.committed == ends, "the replay")
    finally:
        await again.stop()
    for table in tables.TURN_TABLES:
        assert count(store, f"SELECT count() FROM {table.name} FINAL") == expected[table.name]
        await asyncio.to_thread(store.command, f"OPTIMIZE TABLE {table.name} FINAL")
        assert count(store, f"SELECT count() FROM {table.name}") == expected[table.name]
    assert count(store, "SELECT count() FROM dead_letters FINAL") == 4


async def test_texts_are_masked_with_the_packs_sensitive_fields_and_keys_are_pseudonyms(
    settings: Settings,
) -> None:
    """With STORE_TEXTS on and no registry given, the consumer follows the packs itself: a
    turn of a known agent has its sensitive values masked, a turn of an unknown one no texts;
    session keys are pseudonyms under the configured key."""
    key = "analytics-deployment-key-0123456789"
    cfg = settings.analytics.model_copy(update={"store_texts": True, "pseudonym_key": key})
    texts = settings.model_copy(update={"analytics": cfg})
    pack = load_pack(EXAMPLE)
    assert "new_address" in {f.key for f in pack.fields if f.sensitive}
    await publish_pack(texts, pack)
    address = "9 Harbor Road, Seattle, WA 98101"
    known = make_turn(
        f"{settings.topic_prefix}-K",
        tenant="acme-shop",
        agent="support",
        message=f"ship it to {address} please",
    )
    ctx = known.record.context
    data = CustomerDataStore(
        tenant_id="acme-shop",
        customer_id=known.record.customer_id,
        variables={
            "new_address": VariableEntry(
                value=json_text(address),
                type=VariableType.STRING,
                scope=VariableScope.CASE,
                source=VariableSource.USER,
                confidence=1.0,
                last_updated_at=DAY1,
            )
        },
        updated_at=DAY1,
    )
    known = known.model_copy(
        update={
            "record": known.record.model_copy(
                update={"context": ctx.model_copy(update={"customer_data": data})}
            )
        }
    )
    stranger = make_turn(f"{settings.topic_prefix}-U", tenant="nobody", agent="none")
    store = await asyncio.to_thread(open_store, texts)
    consumer = AnalyticsConsumer(texts, store=store)
    await consumer.start()
    try:
        await publish_completed(texts, [known, stranger])
        await wait_until(lambda: count(store, "SELECT count() FROM turns FINAL") == 2, "rows")
        stored = {
            row[0]: row[1:]
            for row in store.query(
                "SELECT turn_id, session_key, message_text, response_text FROM turns FINAL"
            ).rows
        }
    finally:
        await consumer.stop()
        await asyncio.to_thread(store.close)
    assert stored[known.record.turn_id] == (
        Pseudonyms.from_key(key).session_key(known.session_key),
        "ship it to [sensitive:new_address] please",
        "Here you go.",
    )
    assert stored[stranger.record.turn_id][1:] == ("", "")  # its pack is not known
    assert address not in repr(stored) and "visitor-" not in repr(stored)
