"""The RocksDB table store keeps its local databases only across a clean stop
(``streams.pipeline.stores``): a worker killed with SIGKILL leaves local writes whose
changelog records never reached the broker (a turn marked answered whose response was never
sent), so a start after a crash recovers the table from its whole changelog instead.

Real RocksDB databases (rocksdict) of the pipeline's own stores, no broker: the stores are
built by the worker's topology and driven through their start and stop."""

from __future__ import annotations

from pathlib import Path

from faust.types import TP

from streams.pipeline.stores import RocksStore
from streams.pipeline.topology import build_topology
from streams.settings import load_settings

KEY = b"session-key"


def gate_store(data_dir: Path) -> RocksStore:
    """The session-gate table's store of a fresh worker topology on ``data_dir``."""
    topology = build_topology(load_settings(table_store="rocksdb", data_dir=data_dir))
    assert topology.gates is not None
    store = topology.gates.data
    assert isinstance(store, RocksStore)
    return store


def changelog_tp(store: RocksStore) -> TP:
    return TP(store.table.changelog_topic_name, 0)  # type: ignore[attr-defined]


async def write_and_leave(data_dir: Path, *, clean: bool) -> None:
    """A worker's life: start, a write with its changelog offset, then a stop (clean) or
    nothing (a SIGKILL: the process ends without its stop)."""
    store = gate_store(data_dir)
    await store.on_start()
    store._db_for_partition(0).put(KEY, b"answered")
    store.set_persisted_offset(changelog_tp(store), 41)
    if clean:
        await store.stop()
    else:  # the lock a killed process holds is gone with it
        store._dbs.pop(0).close()


async def test_after_a_clean_stop_the_local_database_and_its_offset_are_kept(
    tmp_path: Path,
) -> None:
    await write_and_leave(tmp_path, clean=True)
    store = gate_store(tmp_path)
    assert store.clean_marker().exists()
    await store.on_start()
    assert not store.clean_marker().exists()  # a crash from here on leaves no marker
    assert store.persisted_offset(changelog_tp(store)) == 41  # recovery reads only the tail
    assert store._db_for_partition(0).get(KEY) == b"answered"


async def test_after_a_crash_the_local_databases_are_discarded_for_the_changelog(
    tmp_path: Path,
) -> None:
    await write_and_leave(tmp_path, clean=False)
    store = gate_store(tmp_path)
    assert [p.name for p in store.partition_databases()] == ["session-gate-0.db"]
    await store.on_start()
    assert store.partition_databases() == []
    assert store.persisted_offset(changelog_tp(store)) is None  # the whole changelog
    assert store._db_for_partition(0).get(KEY) is None


async def test_a_store_that_never_started_does_not_mark_a_crashed_database_clean(
    tmp_path: Path,
) -> None:
    """A topology built only to inspect it (and stopped) never checked the databases."""
    await write_and_leave(tmp_path, clean=False)
    inspected = gate_store(tmp_path)
    await inspected.stop()
    assert not inspected.clean_marker().exists()
    store = gate_store(tmp_path)
    await store.on_start()
    assert store.persisted_offset(changelog_tp(store)) is None


async def test_a_stop_while_the_app_runs_does_not_mark_the_databases_clean(
    tmp_path: Path,
) -> None:
    """Faust's store stops itself when a partition database stays locked, then raises: the
    app (and its agents' writes) still running, so the databases are not known clean."""
    store = gate_store(tmp_path)
    await store.on_start()
    store.app._started.set()  # as a running app's
    await store.stop()
    assert not store.clean_marker().exists()


async def test_only_this_tables_partition_databases_are_discarded(tmp_path: Path) -> None:
    store = gate_store(tmp_path)
    for name in ("session-gate-0.db", "session-gate-11.db", "session-gate-backups"):
        (store.path / name).mkdir(parents=True, exist_ok=True)
    (store.path / "session-gate-x.db").mkdir()
    (store.path / "session-gate-state-0.db").mkdir()  # not this table's
    assert [p.name for p in store.discard_unless_clean()] == [
        "session-gate-0.db",
        "session-gate-11.db",
    ]
    left = sorted(p.name for p in store.path.iterdir())
    assert left == ["session-gate-backups", "session-gate-state-0.db", "session-gate-x.db"]
