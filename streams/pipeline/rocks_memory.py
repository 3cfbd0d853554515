"""One memory budget for every RocksDB database of a worker process.

A worker opens one database per table and partition (6 tables x 12 partitions by default),
and Faust gives each its own block cache and memtables. Bounded per database, that still
let the worker grow with the number of sessions it holds: at 1k sessions the databases are
nearly empty and so are their caches; at 100k each fills its own cache and memtables
(``bench/state_growth.py``: +65 % RSS from 1k to 100k sessions). Here all databases share
one LRU block cache of ``table_memory_mb``, the index and filter blocks are kept in it
(rather than beside it, unbounded), and one write-buffer manager charges every memtable to
that same cache and flushes the largest when they pass half of it: RocksDB's memory is one
number, whatever the sessions held.

Faust builds a database's options in ``RocksDBOptions.as_options`` (a new cache per call);
:class:`BudgetedOptions` is that method with the shared cache and manager in place, and an
``open`` that keeps them when it reopens a database (below).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

BUDGET_KEY = "memory_budget_bytes"
"""The table option :class:`streams.pipeline.stores.RocksStore` reads the budget from."""


@dataclass(frozen=True)
class SharedMemory:
    """The block cache and write-buffer manager all databases of one budget share."""

    budget_bytes: int
    cache: Any
    write_buffers: Any

    def usage_bytes(self) -> int:
        """Bytes held in the cache now: data, index and filter blocks, and memtables."""
        return int(self.cache.get_usage())


_BUDGETS: dict[int, SharedMemory] = {}


def shared_memory(budget_bytes: int) -> SharedMemory:
    """The process's shared objects for ``budget_bytes`` (one set per budget value)."""
    memory = _BUDGETS.get(budget_bytes)
    if memory is None:
        cache = rocksdict.Cache(budget_bytes)
        write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            budget_bytes // 2, False, cache
        )
        memory = _BUDGETS[budget_bytes] = SharedMemory(budget_bytes, cache, write_buffers)
    return memory


def usage_bytes() -> int:
    """What every shared cache of this process holds now (the table-memory gauge)."""
    return sum(memory.usage_bytes() for memory in _BUDGETS.values())


class BudgetedOptions(RocksDBOptions):
    """Faust's rocksdict options, over the shared cache and write-buffer manager."""

    def __init__(self, memory: SharedMemory, **options: Any) -> None:
        super().__init__(**options)
        self.memory = memory

    def as_options(self) -> Any:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        if self.max_open_files is not None:
            options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_write_buffer_manager(self.memory.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(self.memory.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options

    def open(self, path: Path, *, read_only: bool = False) -> Any:
        """Opened with these options for the default column family too: given none, rocksdict
        reopens an existing database with the column-family options stored in its
        ``OPTIONS`` file, which cannot hold a cache object, so every database reopened
        after a restart got RocksDB's default 8 MiB block cache of its own (Faust's ``open``
        passes none; its own options were as lost on every restart)."""
        db = rocksdict.Rdict(
            str(path),
            options=self.as_options(),
            column_families={"default": self.as_options()},
            access_type=self._access(),
        )
        db.set_read_options(rocksdict.ReadOptions())
        return db

    def _access(self) -> Any:
        if self.ttl is None:
            return rocksdict.AccessType.read_write()
        return rocksdict.AccessType.with_ttl(self.ttl)


def budgeted(options: RocksDBOptions) -> RocksDBOptions:
    """``options`` over the shared memory of the budget among its extra options (as given
    in the table's options, :data:`BUDGET_KEY`); unchanged without one."""
    extra = dict(options.extra_options)
    budget = extra.pop(BUDGET_KEY, None)
    if budget is None:
        return options
    return BudgetedOptions(
        shared_memory(int(budget)),
        max_open_files=options.max_open_files,
        write_buffer_size=options.write_buffer_size,
        max_write_buffer_number=options.max_write_buffer_number,
        target_file_size_base=options.target_file_size_base,
        block_cache_size=options.block_cache_size,
        bloom_filter_size=options.bloom_filter_size,
        use_rocksdict=True,
        ttl=options.ttl,
        **extra,
    )


__all__ = [
    "BUDGET_KEY",
    "BudgetedOptions",
    "SharedMemory",
    "budgeted",
    "shared_memory",
    "usage_bytes",
]
