"""The decoded-value cache (``streams.pipeline.decoded``) on a real RocksDB table of the
worker's topology (no broker): a RocksDB read returns a new bytes object each time, so the
cache must compare the bytes, not their identity, to serve a value decoded before; and a
value written underneath is decoded afresh."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

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
