"""Every RocksDB database of a worker shares one memory budget
(``streams.pipeline.rocks_memory``): one block cache, with the index and filter blocks and the
memtables charged to it, so the worker's table memory does not grow with the sessions held.

Real databases (rocksdict) of the pipeline's own stores, built by the worker's topology; no
broker."""

from __future__ import annotations

import os
from pathlib import Path

from streams.pipeline.rocks_memory import BudgetedOptions, shared_memory
from streams.pipeline.stores import RocksStore
from streams.pipeline.topology import build_topology
from streams.settings import load_settings

BUDGET_MB = 96
"""Not the default: a budget value of its own gets a cache of its own in this process (the
other tests' databases, on the default budget, are not counted here)."""
PARTITIONS = 24


def stores(data_dir: Path) -> list[RocksStore]:
    topology = build_topology(
        load_settings(table_store="rocksdb", data_dir=data_dir, table_store_memory_mb=BUDGET_MB)
    )
    tables = (topology.gates, topology.sessions, topology.customers)
    found = [t.data for t in tables if t is not None]
    assert len(found) == 3 and all(isinstance(s, RocksStore) for s in found)
    return found  # type: ignore[return-value]


def test_every_table_database_opens_over_the_one_shared_budget(tmp_path: Path) -> None:
    memory = shared_memory(BUDGET_MB * 2**20)
    for store in stores(tmp_path):
        assert isinstance(store.rocksdb_options, BudgetedOptions)
        assert store.rocksdb_options.memory is memory


def test_writes_to_many_databases_stay_within_the_budget(tmp_path: Path) -> None:
    """72 databases (three tables, 24 partitions: a worker's count), 200 MiB written and
    some read back: what the shared cache holds (blocks read, memtables) stays within the
    96 MiB budget. With Faust's own options each database had its own cache and memtables,
    and their sum grew with the data (up to ~8 MiB a database)."""
    memory = shared_memory(BUDGET_MB * 2**20)
    dbs = [store._db_for_partition(p) for store in stores(tmp_path) for p in range(PARTITIONS)]
    value = os.urandom(1024)
    peak = 0
    for i in range(200 * 1024):
        key = f"key-{i:08d}".encode()
        db = dbs[i % len(dbs)]
        db[key] = value
        if i % 997 == 0:
            assert db[key] == value
            peak = max(peak, memory.usage_bytes())
    for n, db in enumerate(dbs):
        for i in range(n, 200 * 1024, len(dbs) * 13):
            assert db.get(f"key-{i:08d}".encode()) == value
        peak = max(peak, memory.usage_bytes())
    assert 0 < peak <= memory.budget_bytes, peak
    for db in dbs:
        db.close()


def test_a_database_reopened_after_a_stop_keeps_the_shared_cache(tmp_path: Path) -> None:
    """rocksdict reopens an existing database with the options stored in its OPTIONS file
    unless told otherwise: every database reopened after a restart had its own 8 MiB
    cache, outside the budget."""
    memory = shared_memory(BUDGET_MB * 2**20)
    store = stores(tmp_path)[0]
    db = store._db_for_partition(0)
    db[b"key"] = b"value"
    path = Path(db.path())
    db.flush()
    db.close()
    reopened = store.rocksdb_options.open(path)
    assert reopened[b"key"] == b"value"
    assert reopened.property_int_value("rocksdb.block-cache-capacity") == memory.budget_bytes
    reopened.close()
