"""The pipeline's Faust table stores: Faust's memory and RocksDB stores, plus what the
pipeline needs of them.

**One local home per key.** Faust writes a table key into the changelog partition (and, on
RocksDB, the local database) of the *event* being processed, and its RocksDB store reads a
key only from that partition's database. That is right for the tables keyed by the record
key (the gate, the responses, the seen turns, the joins: a key is only ever written from its
own partition), and wrong for the two that are not: customer data is keyed
``tenant:customer_id`` and session state ``tenant:session_id``, written from the partition of
whichever channel identity the customer spoke through. A returning customer in another
session then looked new on RocksDB (the replay determinism test saw it), and on the memory
store both partitions' changelogs kept a copy, so which one a restart restored depended on
the order the partitions were replayed in.

The *roaming* stores (:class:`RoamingMemoryStore`, :class:`RoamingRocksStore`) give such a
key one home among the partitions this worker holds: a read looks in the event's partition
first and then in the worker's other partitions; a write from partition ``p`` removes the
key from any other local partition ``q`` and writes a tombstone to ``q``'s changelog, so a
restart (from the local store or from the changelogs) restores exactly the last write.

What this cannot do: with several workers, each holds only its own partitions; a customer
whose data was written from a partition of another worker is not found (it looks new, as it
did on memory tables), and that worker's copy is not told about a newer write. Customer data
is shared across channel identities only within one worker (docs/operations.md).

**Expiry.** Every store here also tracks each key's partition and lets a timer delete a key
(:meth:`expire`) outside any stream event: Faust's own ``del table[key]`` needs the event of
the key's partition. The tombstone goes to the partition the key lives in, and only for
partitions this worker holds as active.

**A local store is trusted only after a clean stop.** Faust's RocksDB store writes a key to
the local database at once and sends its changelog record afterwards (the producer buffers
it); the offset it keeps in the database (``__faust\\0offset__``) is that of the last
changelog record acknowledged. A worker killed with SIGKILL leaves writes in its databases
whose changelog records never reached the broker: the seen-turns and responses tables said
a turn was answered whose response (the ``responses`` changelog *is* the customer-facing
topic) was never sent, so the restarted worker dropped the turn's replays and it was never
answered (``tests/test_pipeline_recovery.py`` on RocksDB). So :class:`RocksStore` writes a
*clean* marker (``<table>.clean`` in the table directory) only at a stop that flushed the
producer, removes it at start, and at a start without it deletes the table's partition
databases first: after a crash the table comes back from its whole changelog (as memory
tables do), after a clean stop from the local databases plus the changelog tail.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faust.stores import STORES
from faust.stores import memory as faust_memory
from faust.stores import rocksdb as faust_rocksdb
from faust.streams import current_event

from streams.pipeline.rocks_memory import budgeted

MEMORY_URL = "tsmemory://"
ROAMING_MEMORY_URL = "tsmemoryroaming://"
ROCKSDB_URL = "tsrocksdb://"
ROAMING_ROCKSDB_URL = "tsrocksdbroaming://"
CLEAN_SUFFIX = ".clean"
"""The marker a clean stop leaves beside a table's partition databases."""
FLUSH_TIMEOUT_S = 30.0
"""How long a stopping store waits for the producer to deliver the changelog records."""

logger = logging.getLogger(__name__)


def _event_partition() -> int | None:
    event = current_event()
    return None if event is None else int(event.message.partition)


class _Homes:
    """What both store kinds share: the active partitions and the tombstone."""

    table: Any
    app: Any

    _actives: tuple[object, frozenset[int]] | None = None

    def active_partitions(self) -> frozenset[int]:
        """The partitions of this table's changelog this worker holds as active. Kept until
        the assignor takes a new assignment (it replaces the object at each rebalance):
        Faust rebuilds the set of every assigned partition per call, and a sweep of 100k
        sessions asked for it several times a key (minutes of the event loop)."""
        assignor = self.app.assignor
        assignment = getattr(assignor, "_assignment", None)
        if self._actives is not None and assignment is not None and self._actives[0] is assignment:
            return self._actives[1]
        topic = self.table.changelog_topic_name
        found = frozenset(tp.partition for tp in assignor.assigned_actives() if tp.topic == topic)
        if assignment is not None:
            self._actives = (assignment, found)
        return found

    def _tombstone(self, partition: int, key: bytes) -> None:
        self.table.send_changelog(partition, key, None, value_serializer="raw")

    recoveries = 0
    """Recoveries completed (a start, each rebalance): a timer keeping an index of the table
    scans it again after one (``streams.pipeline.decoded.Rescan``)."""

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)  # type: ignore[misc]
        self.recoveries += 1


class MemoryStore(_Homes, faust_memory.Store[Any, Any]):
    """Faust's memory store, which also records the partition of each live write (Faust's
    records it only for changelog recovery)."""

    roaming = False

    def __setitem__(self, key: Any, value: Any) -> None:
        partition = _event_partition()
        if partition is not None:
            old = self._key_partition.get(key)
            moved = self.roaming and old is not None and old != partition
            if moved and old in self.active_partitions():
                self._tombstone(old, key)
            self._key_partition[key] = partition
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[key]
        self._key_partition.pop(key, None)

    def home(self, key: bytes) -> int | None:
        return self._key_partition.get(key) if key in self.data else None

    def local_items(self) -> Iterator[tuple[int, bytes, bytes]]:
        """``(partition, key, value)`` of every key in an active partition (a snapshot)."""
        active = self.active_partitions()
        for key, value in list(self.data.items()):
            partition = self._key_partition.get(key)
            if partition in active:
                yield partition, key, value

    def expire(self, key: bytes, *, tombstone: bool = True) -> bool:
        """Delete ``key`` here and, with ``tombstone``, in its changelog partition."""
        partition = self.home(key)
        if partition is None or partition not in self.active_partitions():
            return False
        del self.data[key]
        self._key_partition.pop(key, None)
        if tombstone:
            self._tombstone(partition, key)
        return True


class RoamingMemoryStore(MemoryStore):
    """A memory table whose key may be written from any partition: one local home.

    Recovery replays the partitions in no set order, and a key that moved from ``q`` to
    ``p`` has its old value and then a tombstone in ``q``: a tombstone from ``q`` deletes
    only the copy that came from ``q``, and the copies of other partitions seen meanwhile
    are kept aside until recovery ends, so the last write survives whatever the order."""

    roaming = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._spare: dict[Any, dict[int, Any]] = {}

    def apply_changelog_batch(self, batch: Any, to_key: Any, to_value: Any) -> None:
        for event in batch:
            key = to_key(event.key)
            source = int(event.message.partition)
            spare = self._spare.get(key, {})
            spare.pop(source, None)
            home = self._key_partition.get(key)
            if event.message.value is None:
                if home == source:
                    self.data.pop(key, None)
                    self._key_partition.pop(key, None)
                    if spare:
                        partition, value = spare.popitem()
                        self.data[key], self._key_partition[key] = value, partition
            else:
                if home is not None and home != source and key in self.data:
                    spare[home] = self.data[key]
                self.data[key] = to_value(event.value)
                self._key_partition[key] = source
            if spare:
                self._spare[key] = spare
            else:
                self._spare.pop(key, None)

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        self._spare.clear()
        await super().on_recovery_completed(active_tps, standby_tps)


class RocksStore(_Homes, faust_rocksdb.Store):
    """Faust's RocksDB store, with per-partition iteration and :meth:`expire`, whose local
    databases are kept only across a clean stop (the module's docstring), and whose
    databases share the process's memory budget (:mod:`streams.pipeline.rocks_memory`)."""

    roaming = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rocksdb_options = budgeted(self.rocksdb_options)

    def clean_marker(self) -> Path:
        return self._path_with_suffix(self.path / self.basename, suffix=CLEAN_SUFFIX)

    def partition_databases(self) -> list[Path]:
        """This table's partition databases on disk (``<table>-<partition>.db``)."""
        prefix = f"{self.basename.name}-"
        found = []
        for path in self.path.glob(f"{prefix}*.db"):
            if path.name.removeprefix(prefix).removesuffix(".db").isdigit():
                found.append(path)
        return sorted(found)

    def discard_unless_clean(self) -> list[Path]:
        """At start, before any database opens: delete this table's partition databases
        unless the last stop was clean, then remove the marker (a crash from now on leaves
        none). Returns the databases deleted."""
        marker = self.clean_marker()
        discarded = [] if marker.exists() else self.partition_databases()
        for path in discarded:
            shutil.rmtree(path, ignore_errors=True)
        if discarded:
            logger.warning(
                "table %s: no clean stop recorded; %d local databases discarded, recovering "
                "from the whole changelog",
                self.basename.name,
                len(discarded),
            )
        marker.unlink(missing_ok=True)
        return discarded

    _checked = False
    """Whether this store ran :meth:`discard_unless_clean`: one that never started (a
    topology built only to be inspected) must not mark databases it never checked clean."""

    async def on_start(self) -> None:
        self.discard_unless_clean()
        self._checked = True
        await super().on_start()

    async def stop(self) -> None:
        clean = self._checked and self._app_stopping() and await self._flush_producer()
        await super().stop()
        if clean:
            self.clean_marker().touch()

    def _app_stopping(self) -> bool:
        """Whether this stop is the app's shutdown (or the app never ran): Faust's store also
        calls :meth:`stop` itself when a partition database stays locked, just before it
        raises, with the agents still writing."""
        return bool(self.app.should_stop or not self.app.started)

    async def _flush_producer(self) -> bool:
        """Whether every changelog record sent so far is delivered: the producer flushed,
        or never started (nothing sent), or already stopped (its stop flushed)."""
        producer = getattr(self.app, "_producer", None)
        if producer is None or not producer.started or producer.should_stop:
            return not (producer is not None and producer.crashed)
        try:
            await asyncio.wait_for(producer.flush(), FLUSH_TIMEOUT_S)
        except Exception:
            logger.warning("table %s: producer flush failed at stop", self.basename.name)
            return False
        return True

    def _active_dbs(self) -> Iterator[tuple[int, Any]]:
        active = self.active_partitions()
        for partition, db in list(self._dbs.items()):
            if partition in active:
                yield partition, db

    def homes(self, key: bytes) -> list[int]:
        """The active local partitions whose database holds ``key``."""
        return [p for p, db in self._active_dbs() if db.get(key) is not None]

    def home(self, key: bytes) -> int | None:
        found = self.homes(key)
        return found[0] if found else None

    def local_items(self) -> Iterator[tuple[int, bytes, bytes]]:
        for partition, db in self._active_dbs():
            for key, value in self._visible_items(db):
                yield partition, key, value

    def expire(self, key: bytes, *, tombstone: bool = True) -> bool:
        homes = self.homes(key)
        for partition in homes:
            self._dbs[partition].delete(key)
            if tombstone:
                self._tombstone(partition, key)
        self._key_index.pop(key, None)
        return bool(homes)


class RoamingRocksStore(RocksStore):
    """A RocksDB table whose key may be written from any partition: a read that misses in
    the event's partition looks in the worker's other partitions, and a write moves the key
    (a local delete and a changelog tombstone in its old partition)."""

    roaming = True

    def _get(self, key: bytes) -> bytes | None:
        partition = _event_partition()
        if partition is not None:
            value = self._db_for_partition(partition).get(key)
            if value is not None:
                self._key_index[key] = partition
                return value  # type: ignore[no-any-return]
        for other, db in self._active_dbs():
            if other != partition:
                value = db.get(key)
                if value is not None:
                    self._key_index[key] = other
                    return value  # type: ignore[no-any-return]
        return None

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = _event_partition()
        for other, db in self._active_dbs():
            if other != partition and db.get(key) is not None:
                db.delete(key)
                self._tombstone(other, key)
        super()._set(key, value)


STORES.aliases.update(
    {
        "tsmemory": f"{__name__}:MemoryStore",
        "tsmemoryroaming": f"{__name__}:RoamingMemoryStore",
        "tsrocksdb": f"{__name__}:RocksStore",
        "tsrocksdbroaming": f"{__name__}:RoamingRocksStore",
    }
)


def store_url(table_store: str, table: str, *, roaming: bool) -> str:
    """The store URL of ``table`` on ``table_store`` (``memory`` or ``rocksdb``). The table
    name is the URL's path (the RocksDB files' name, as Faust names them): a URL with only
    a scheme is false in ``yarl``, and Faust would then quietly use the app's store."""
    if table_store == "rocksdb":
        scheme = ROAMING_ROCKSDB_URL if roaming else ROCKSDB_URL
    else:
        scheme = ROAMING_MEMORY_URL if roaming else MEMORY_URL
    return scheme.removesuffix("//") + table


__all__ = [
    "MemoryStore",
    "RoamingMemoryStore",
    "RoamingRocksStore",
    "RocksStore",
    "store_url",
]
