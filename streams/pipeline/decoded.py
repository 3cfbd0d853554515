"""Decoded table values, kept next to the bytes they came from.

Every stage reads the session gate, and the join reads its state on every result: decoding
the same Avro record again and again was a fifth of the event loop's time. A cached model
is used only while the table still holds the bytes it was decoded from, so a value restored
from the changelog, or written by anyone else, is decoded afresh: the cache can never serve
a stale value. The check is identity, then equality: a memory table hands back the very
bytes object, but a RocksDB table a new one on every read (with identity alone the cache
never hit on RocksDB and only filled up).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from faust.types import TableT
from pydantic import BaseModel

from schemas.codec import decode_as, encode

M = TypeVar("M", bound=BaseModel)
MAX_ENTRIES = 100_000


class DecodedTable(Generic[M]):
    def __init__(self, table: TableT[bytes, bytes], model: type[M]) -> None:
        self.table = table
        self._model = model
        self._decoded: dict[bytes, tuple[bytes, M]] = {}

    def get(self, key: bytes) -> M | None:
        raw = self.table.get(key)
        if raw is None:
            return None
        cached = self._decoded.get(key)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
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

    def _remember(self, key: bytes, raw: bytes, value: M) -> None:
        if len(self._decoded) >= MAX_ENTRIES:
            self._decoded.clear()
        self._decoded[key] = (raw, value)
