"""Decoded table values, kept next to the bytes they came from.

Every stage reads the session gate, and the join reads its state on every result: decoding
the same Avro record again and again was a fifth of the event loop's time. A cached model
is used only while the table still holds the bytes it was decoded from, so a value restored
from the changelog, or written by anyone else, is decoded afresh: the cache can never serve
a stale value. The check is identity, then equality: a memory table hands back the very
bytes object, but a RocksDB table a new one on every read (with identity alone the cache
never hit on RocksDB and only filled up).

The cache is for the sessions being worked on: it keeps the :data:`MAX_ENTRIES` keys read
last (the least recently read go first); a whole-table :meth:`scan` reads past it without
filling it. A timer that decoded every key through :meth:`get` made the cache hold every
idle session of the worker (``bench/state_growth.py``: memory grew with the sessions held).

**When to scan.** A table's keys change outside the agents only when a recovery refills it
(a start, a rebalance): :class:`Rescan` tells a timer that keeps an index of the table (the
stall watchdog's turns in flight, the join deadlines) when one has completed since its last
scan, so it reads the whole table once per recovery, not on every tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from faust.types import TableT
from pydantic import BaseModel

from schemas.codec import CodecError, decode_as, encode

M = TypeVar("M", bound=BaseModel)
MAX_ENTRIES = 10_000
"""Sessions whose decoded values are kept: those worked on lately, not every one held."""
YIELD_EVERY = 1000


def decode_or_none(raw: bytes | None, model: type[M]) -> M | None:
    """``raw`` decoded for a whole-table scan (not kept among the codec's recent records),
    or None when absent or undecodable (a scan skips what it cannot read rather than
    stop)."""
    if raw is None:
        return None
    try:
        return decode_as(raw, model, keep=False)
    except CodecError:
        return None


class DecodedTable(Generic[M]):
    def __init__(self, table: TableT[bytes, bytes], model: type[M]) -> None:
        self.table = table
        self._model = model
        self._decoded: dict[bytes, tuple[bytes, M]] = {}

    def get(self, key: bytes) -> M | None:
        raw = self.table.get(key)
        if raw is None:
            return None
        cached = self._decoded.pop(key, None)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            self._decoded[key] = cached  # now the newest
            return cached[1]
        value = decode_as(raw, self._model)
        self._remember(key, raw, value)
        return value

    def set(self, key: bytes, value: M) -> None:
        raw = encode(value)
        self.table[key] = raw
        self._remember(key, raw, value)

    def forget(self, key: bytes) -> None:
        """Drop the cached model of a key deleted from the table underneath."""
        self._decoded.pop(key, None)

    async def scan(self) -> AsyncIterator[tuple[bytes, M]]:
        """Every key of the local table and its value now, yielding to the event loop every
        thousand keys; what is not cached is decoded without being cached, and an
        undecodable value is skipped."""
        for count, key in enumerate(list(self.table.keys())):
            if count % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            raw = self.table.get(key)
            if raw is None:
                continue
            cached = self._decoded.get(key)
            if cached is not None and (cached[0] is raw or cached[0] == raw):
                yield key, cached[1]
                continue
            value = decode_or_none(raw, self._model)
            if value is not None:
                yield key, value

    def _remember(self, key: bytes, raw: bytes, value: M) -> None:
        self._decoded.pop(key, None)  # re-inserted last: the least recently read goes first
        if len(self._decoded) >= MAX_ENTRIES:
            del self._decoded[next(iter(self._decoded))]
        self._decoded[key] = (raw, value)


class Rescan:
    """Whether a recovery refilled ``table`` since the last whole scan of it (the counter
    the pipeline's stores keep, ``streams.pipeline.stores``)."""

    def __init__(self, table: TableT[bytes, bytes]) -> None:
        self.table = table
        self._scanned: int | None = None

    def due(self) -> int | None:
        """The recovery count to pass to :meth:`done` once a scan finished; None: none due."""
        count = int(getattr(self.table.data, "recoveries", 0))
        return None if count == self._scanned else count

    def done(self, count: int) -> None:
        self._scanned = count
