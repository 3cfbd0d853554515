"""The ClickHouse connection of the analytics sink, through ``clickhouse-connect`` only.

By default the embedded engine (``get_client(interface="chdb", path=...)``) in
``<data_dir>/clickhouse`` (``TURNSTREAM_ANALYTICS__CHDB_PATH`` overrides it); with
``TURNSTREAM_CLICKHOUSE_URL`` a ClickHouse server. The SQL is the same for both.

chdb is synchronous and allows one process per data directory (a second one fails to lock
``<path>/status``): the process that owns it serves queries to the others
(:mod:`sinks.analytics.query_server`). :class:`AnalyticsStore` serializes every call to its
client with a lock, so the consumer's writes (run in a worker thread, off the event loop)
and the query endpoint's reads (one thread per request) never use the client at once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import clickhouse_connect

from schemas.settings import Settings
from sinks.analytics import tables
from sinks.analytics.migrations import apply_migrations
from sinks.analytics.rows import Row, RowBatch, redact_url

logger = logging.getLogger(__name__)

READ_ONLY_SETTINGS: dict[str, Any] = {"readonly": 1}
"""Per-query settings of analyst queries: ClickHouse itself refuses writes, DDL, settings
changes and table functions (``file``, ``url``) under ``readonly=1``."""


class EngineBusyError(RuntimeError):
    """The embedded data directory is owned by another process."""


class QueryResultLike(Protocol):
    @property
    def column_names(self) -> Any: ...

    @property
    def column_types(self) -> Any: ...

    @property
    def result_rows(self) -> Any: ...


class ClickHouseClient(Protocol):
    """The part of ``clickhouse_connect.driver.Client`` the sink uses (tests inject fakes)."""

    database: str | None

    def command(self, cmd: str) -> Any: ...

    def query(self, query: str, parameters: Any = None, settings: Any = None) -> Any: ...

    def insert(
        self,
        table: str | None = None,
        data: Any = None,
        column_names: Any = "*",
        database: str | None = None,
        column_types: Any = None,
        column_type_names: Any = None,
    ) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def chdb_path(settings: Settings) -> Path:
    """Where the embedded engine keeps its data."""
    return (settings.analytics.chdb_path or settings.data_dir / "clickhouse").expanduser()


def open_client(settings: Settings, *, read_only: bool = False) -> ClickHouseClient:
    """A client on the server named by ``clickhouse_url``, else on the embedded data dir.

    ``read_only`` (embedded only) gives a client of its own with ``readonly=1`` set for its
    whole life: chdb applies per-query settings with SET and restores them afterwards, which
    ``readonly`` forbids, so a per-query ``readonly`` would leave the handle read-only."""
    if settings.clickhouse_url:
        return clickhouse_connect.get_client(dsn=settings.clickhouse_url)
    path = chdb_path(settings)
    path.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if read_only:
        extra = {"database": settings.analytics.database, "settings": READ_ONLY_SETTINGS}
    try:
        return clickhouse_connect.get_client(interface="chdb", path=str(path), **extra)
    except Exception as exc:
        if "Another server instance" in str(exc) or "Cannot lock file" in str(exc):
            raise EngineBusyError(
                f"{path} is used by another process (a running worker?): query it through "
                "its endpoint (`turnstream sql`)"
            ) from None
        raise


class AnalyticsStore:
    """A client, its database and a lock; writes :class:`RowBatch` es and runs queries."""

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        *,
        location: str,
        reader: ClickHouseClient | None = None,
    ) -> None:
        self.client = client
        self.reader = reader
        """A read-only client for analyst queries (embedded engine); None: analyst queries
        go through ``client`` with ``readonly=1`` as a per-query setting (a server)."""
        self.database = database
        self.location = location
        """``chdb:<realpath>`` or the server URL without credentials: what the endpoint's
        health check tells a CLI, so that it queries the data it means to."""
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> AnalyticsStore:
        store = cls(open_client(settings), settings.analytics.database, location=location(settings))
        try:
            if migrate:
                store.migrate()
            else:  # e.g. a read-only server user: the schema is the workers' business
                store.client.database = store.database
            if not settings.clickhouse_url:
                store.reader = open_client(settings, read_only=True)
        except BaseException:
            store.close()
            raise
        return store

    def migrate(self) -> list[int]:
        """Apply pending migrations; afterwards unqualified names resolve in the database."""
        applied = apply_migrations(self, self.database)
        with self._lock:
            self.client.database = self.database
        return applied

    # -- the SqlRunner protocol of the migrations ---------------------------------------------

    def command(self, sql: str) -> object:
        with self._lock:
            return self.client.command(sql)

    def query_rows(self, sql: str) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self.client.query(sql).result_rows)

    def insert_rows(
        self, table: str, rows: list[tuple[object, ...]], columns: tuple[str, ...]
    ) -> None:
        with self._lock:
            self.client.insert(table, rows, column_names=list(columns))

    # -- writes and reads -----------------------------------------------------------------

    def write(self, batch: RowBatch) -> None:
        """Insert every table's rows (one block per table). Raises on the first failure; a
        retry rewrites the whole batch, which the tables' deduplication absorbs."""
        for name, rows in batch.rows.items():
            if rows:
                self._insert(tables.TABLES_BY_NAME[name], rows)

    def _insert(self, table: tables.Table, rows: list[Row]) -> None:
        with self._lock:
            self.client.insert(
                table.name,
                rows,
                column_names=list(table.column_names),
                database=self.database,
                column_type_names=[ctype for _, ctype in table.columns],
            )

    def query(
        self, sql: str, parameters: dict[str, Any] | None = None, *, read_only: bool = True
    ) -> QueryResult:
        with self._lock:
            if not read_only:
                result = self.client.query(sql, parameters=parameters)
            elif self.reader is not None:
                result = self.reader.query(sql, parameters=parameters)
            else:
                result = self.client.query(sql, parameters=parameters, settings=READ_ONLY_SETTINGS)
            return QueryResult(
                list(result.column_names),
                [getattr(t, "name", str(t)) for t in result.column_types],
                [tuple(row) for row in result.result_rows],
            )

    def close(self) -> None:
        with self._lock:
            if self.reader is not None:
                self.reader.close()
            self.client.close()


def location(settings: Settings) -> str:
    if settings.clickhouse_url:
        return redact_url(settings.clickhouse_url)
    return f"chdb:{chdb_path(settings).resolve()}"
