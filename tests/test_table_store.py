"""The worker's tables on RocksDB (``table_store=rocksdb``): a worker stopped and started
again on the same data dir continues each session where it was, and the local store carries
the changelog offset it holds up to, so a restart replays only the changelogs' tail. A
customer's data, keyed by customer and written from any session's partition, has one home
(``streams.pipeline.stores``) on RocksDB and on memory tables."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner
from rocksdict import AccessType, Rdict

from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import ResponseStatus
from streams.pipeline.topology import build_topology
from streams.settings import Settings, load_settings
from streams.turn_client import TurnClient
from tests.pipeline_support import WorkerProcess, customer_says, pipeline_settings, prepare

pytestmark = pytest.mark.integration

OFFSET_KEY = b"__faust\0offset__"
"""Where Faust's RocksDB store keeps the changelog offset a partition's database holds."""


def stored_offsets(data_dir: Path, table: str) -> dict[str, int]:
    """The persisted changelog offset of each partition database of ``table``."""
    offsets = {}
    for path in sorted((data_dir / "faust").glob(f"**/*{table}-*.db")):
        db = Rdict(str(path), access_type=AccessType.read_only())
        try:
            raw = db.get(OFFSET_KEY)
        finally:
            db.close()
        if raw is not None:
            offsets[path.name] = int(raw)
    return offsets


@pytest.mark.timeout(600)
async def test_a_restarted_worker_continues_sessions_from_its_rocksdb_store(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path / "data", table_store="rocksdb")
    await prepare(settings)
    who = f"store-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        async with TurnClient(settings, records=True) as client:
            worker.start()
            for message in ("hi", "where is my order A-10024?"):
                turn_id = await client.send(customer_says(who, message))
                assert (await client.response(turn_id, timeout=240)).status is ResponseStatus.OK
            worker.stop()

            offsets = stored_offsets(settings.data_dir, "session-state")
            assert offsets and max(offsets.values()) >= 1, offsets  # the store holds its place

            worker.start()
            turn_id = await client.send(customer_says(who, "and A-10023?"))
            assert (await client.response(turn_id, timeout=240)).status is ResponseStatus.OK
            record = await client.record(turn_id)
    finally:
        worker.stop()
    assert record.context.session is not None
    assert record.context.session.turn_count == 2  # the two turns before the restart


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the client's producer picks for ``key`` (Kafka's default partitioner)."""
    return int(DefaultPartitioner()(key, list(range(partitions)), list(range(partitions))))


def two_identities(partitions: int) -> tuple[str, str]:
    """Two visitor ids whose session keys land on different partitions."""
    first = f"home-{uuid.uuid4().hex[:8]}"
    home = partition_of(customer_says(first, "x").session_key.encode(), partitions)
    while True:
        other = f"away-{uuid.uuid4().hex[:8]}"
        if partition_of(customer_says(other, "x").session_key.encode(), partitions) != home:
            return first, other


def order_ids(record: TurnRecord) -> str:
    data = record.context.customer_data
    assert data is not None
    entry = data.variables.get("order_id")
    return "" if entry is None else str(entry.value)


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_a_customer_is_found_from_another_partition_and_a_restart_keeps_the_last_write(
    kafka_settings: Settings, tmp_path: Path, store: str
) -> None:
    """One customer (the gateway names it) speaks through two channel identities whose
    sessions live in different partitions: the second finds what the first persisted, its
    own later write moves the customer's data (a tombstone in the first partition), and a
    restarted worker (from its local store, or from the changelogs on memory) gives the
    first identity the newest data, not its partition's old copy."""
    settings = pipeline_settings(kafka_settings, tmp_path / "data", table_store=store)
    await prepare(settings)
    customer = f"C-{uuid.uuid4().hex[:6]}"
    home, away = two_identities(settings.partitions)
    worker = WorkerProcess(settings, tmp_path / "worker.log")

    async def say(client: TurnClient, who: str, message: str) -> TurnRecord:
        turn_id = await client.send(customer_says(who, message, customer_id=customer))
        assert (await client.response(turn_id, timeout=600)).status is ResponseStatus.OK
        return await client.record(turn_id)

    try:
        async with TurnClient(settings, records=True) as client:
            worker.start()
            assert "A-10023" in order_ids(await say(client, home, "where is my order A-10023?"))
            found = await say(client, away, "hello")
            assert "A-10023" in order_ids(found)  # read from the other partition
            assert "A-10024" in order_ids(await say(client, away, "and my order A-10024?"))
            worker.stop()
            worker.start()
            again = await say(client, home, "hello again")
    finally:
        worker.stop()
    assert "A-10024" in order_ids(again), order_ids(again)  # the last write, not the old copy


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_every_table_gets_the_pipelines_own_store(store: str, tmp_path: Path) -> None:
    """Faust quietly falls back to the app's store when a table's store URL is false (a
    scheme-only ``yarl`` URL is): the roaming and expiring stores must really be in use."""
    from faust.types import TableT

    from streams.pipeline import stores

    async def build() -> dict[str, type]:
        topology = build_topology(load_settings(table_store=store, data_dir=tmp_path))
        tables: dict[str, TableT[bytes, bytes] | None] = {
            "gates": topology.gates,
            "sessions": topology.sessions,
            "customers": topology.customers,
            "joins": topology.joins,
            "responses": topology.responses,
            "seen": topology.seen,
        }
        return {name: type(t.data) for name, t in tables.items() if t is not None}

    kinds = asyncio.run(build())
    roaming = stores.RoamingRocksStore if store == "rocksdb" else stores.RoamingMemoryStore
    plain = stores.RocksStore if store == "rocksdb" else stores.MemoryStore
    assert kinds.pop("sessions") is roaming and kinds.pop("customers") is roaming
    assert set(kinds.values()) == {plain}, kinds
