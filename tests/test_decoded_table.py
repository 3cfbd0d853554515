"""The decoded-value cache (``streams.pipeline.decoded``) on a real RocksDB table of the
worker's topology (no broker): a RocksDB read returns a new bytes object each time, so the
cache must compare the bytes, not their identity, to serve a value decoded before; and a
value written underneath is decoded afresh."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from faust.types import TP

from schemas.codec import encode
from schemas.events.pipeline_state import RetrievalJoin
from streams.pipeline import decoded
from streams.pipeline.decoded import DecodedTable
from streams.pipeline.stores import RocksStore
from streams.pipeline.topology import build_topology
from streams.settings import load_settings

KEY = b"tenant:session"


async def test_a_rocksdb_read_of_unchanged_bytes_is_not_decoded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topology = build_topology(load_settings(table_store="rocksdb", data_dir=tmp_path))
    assert topology.joins is not None
    store = topology.joins.data
    assert isinstance(store, RocksStore)
    db = store._db_for_partition(0)
    first = RetrievalJoin(turn_id="turn-1", done=True, deadline=datetime(2026, 1, 1, tzinfo=UTC))
    db.put(KEY, encode(first))

    decodes: list[bytes] = []
    real = decoded.decode_as

    def counting(raw: bytes, model: type[RetrievalJoin]) -> RetrievalJoin:
        decodes.append(raw)
        return real(raw, model)

    monkeypatch.setattr(decoded, "decode_as", counting)
    joins = DecodedTable(topology.joins, RetrievalJoin)
    assert topology.joins.get(KEY) is not topology.joins.get(KEY)  # new bytes every read
    assert joins.get(KEY) == first
    assert joins.get(KEY) == first
    assert len(decodes) == 1

    second = first.model_copy(update={"turn_id": "turn-2"})
    db.put(KEY, encode(second))  # written underneath (a changelog recovery, another writer)
    assert joins.get(KEY) == second
    assert len(decodes) == 2


def join_table(tmp_path: Path) -> tuple[DecodedTable[RetrievalJoin], RocksStore]:
    topology = build_topology(load_settings(table_store="rocksdb", data_dir=tmp_path))
    assert topology.joins is not None
    store = topology.joins.data
    assert isinstance(store, RocksStore)
    return DecodedTable(topology.joins, RetrievalJoin), store


def join_of(n: int) -> RetrievalJoin:
    return RetrievalJoin(turn_id=f"turn-{n}", done=False, deadline=datetime(2026, 1, 1, tzinfo=UTC))


async def test_a_whole_table_scan_reads_every_key_and_caches_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timer scanning every idle session must not make the cache hold them all (worker
    memory then grew with the sessions held)."""
    joins, store = join_table(tmp_path)
    active = {TP(store.table.changelog_topic_name, 0)}  # type: ignore[attr-defined]
    monkeypatch.setattr(store.app.assignor, "assigned_actives", lambda: active)
    db = store._db_for_partition(0)
    for n in range(2500):
        db.put(f"t:s{n}".encode(), encode(join_of(n)))
    db.put(b"t:garbled", b"\x00not avro")
    assert joins.get(b"t:s7") == join_of(7)  # a session being worked on: cached
    scanned = {key: join async for key, join in joins.scan()}
    assert len(scanned) == 2500 and b"t:garbled" not in scanned
    assert scanned[b"t:s2499"] == join_of(2499)
    assert list(joins._decoded) == [b"t:s7"]


def test_the_cache_keeps_the_latest_sessions_and_drops_the_oldest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decoded, "MAX_ENTRIES", 3)
    joins, store = join_table(tmp_path)
    db = store._db_for_partition(0)
    for n in range(5):
        db.put(f"t:s{n}".encode(), encode(join_of(n)))
    for n in (0, 1, 2, 0, 3, 4):  # s0 read again: it is newer than s1 and s2
        assert joins.get(f"t:s{n}".encode()) == join_of(n)
    assert list(joins._decoded) == [b"t:s0", b"t:s3", b"t:s4"]


async def test_a_rescan_is_due_once_after_each_completed_recovery(tmp_path: Path) -> None:
    """The watchdog and the join deadlines read their whole table once per recovery (a
    start, a rebalance), not on every tick: at 100k sessions a scan every few seconds
    decoded every idle session over and over."""
    joins, store = join_table(tmp_path)
    rescan = decoded.Rescan(joins.table)
    first = rescan.due()
    assert first is not None  # never scanned: once at start
    rescan.done(first)
    assert rescan.due() is None
    await store.on_recovery_completed(set(), set())
    again = rescan.due()
    assert again is not None
    rescan.done(again)
    assert rescan.due() is None
