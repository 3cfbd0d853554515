"""``turnstream sql`` and ``turnstream report``: read the analytics data while it is written.

With the embedded engine only one process may open the data directory. When a worker that
owns it is running, its read-only endpoint (``127.0.0.1:TURNSTREAM_ANALYTICS__QUERY_PORT``)
answers; the command checks that the endpoint serves the same data directory and otherwise,
or when nothing answers, opens the directory itself. With ``TURNSTREAM_CLICKHOUSE_URL`` the
command queries the server. Either way only read-only statements run (SELECT, SHOW,
DESCRIBE, WITH, EXPLAIN), under ClickHouse's ``readonly=1``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Protocol

from streams.cli_errors import CLICKHOUSE_HINT, CliError, short_reason
from streams.settings import Settings, load_settings

if TYPE_CHECKING:  # imported by the handlers: chdb and the HTTP client cost ~0.4 s
    from sinks.analytics.store import AnalyticsStore, QueryResult

Subparsers = argparse._SubParsersAction  # argparse has no public name for it

MAX_CELL_CHARS = 80


class QuerySource(Protocol):
    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult: ...


class _LocalSource:
    def __init__(self, store: AnalyticsStore) -> None:
        self.store = store

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
        from sinks.analytics.query_server import check_read_only

        return self.store.query(check_read_only(sql), parameters)


class SourceError(RuntimeError):
    pass


def open_source(settings: Settings) -> tuple[QuerySource, AnalyticsStore | None, str]:
    """Where queries go: the owning worker's endpoint, else the data opened here. Returns the
    source, the store to close (None for an endpoint) and a description for messages."""
    from sinks.analytics.query_server import Endpoint
    from sinks.analytics.store import AnalyticsStore, EngineBusyError, location

    port = settings.analytics.query_port
    if not settings.clickhouse_url and port:
        endpoint = Endpoint(port)
        health = endpoint.health()
        if health is not None:
            if health.get("location") == location(settings):
                return endpoint, None, f"endpoint {endpoint.base}"
            print(
                f"turnstream: {endpoint.base} serves {health.get('location')}, "
                f"not {location(settings)}: opening the data here",
                file=sys.stderr,
            )
    try:
        store = AnalyticsStore.open(settings, migrate=not settings.clickhouse_url)
    except EngineBusyError as exc:
        raise SourceError(
            f"{exc}; no endpoint answers on 127.0.0.1:{port} (TURNSTREAM_ANALYTICS__QUERY_PORT)"
        ) from None
    except Exception as exc:
        if not settings.clickhouse_url:
            raise
        from sinks.analytics.rows import redact_url

        raise CliError(
            f"ClickHouse at {redact_url(settings.clickhouse_url)} failed: {short_reason(exc)}",
            CLICKHOUSE_HINT,
        ) from exc
    return _LocalSource(store), store, store.location


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``sql`` and ``report`` to the ``turnstream`` parser."""
    sql = subparsers.add_parser(
        "sql",
        help="run one read-only SQL query on the analytics data and print the result",
        description="Read-only statements only (SELECT, SHOW, DESCRIBE, WITH, EXPLAIN). "
        "Unqualified table names resolve in the analytics database. Exit status 1 when "
        "the query is refused or fails.",
    )
    sql.add_argument("query", help='e.g. "SELECT * FROM v_phase_latency"')
    sql.add_argument("--format", choices=("table", "tsv", "json"), default="table")
    sql.set_defaults(handler=_sql)

    report = subparsers.add_parser(
        "report",
        help="print the standard analyst views (latency, rules, intents, scenarios, ...)",
    )
    report.add_argument("--tenant", help="only this tenant")
    report.add_argument("--limit", type=int, default=50, help="rows per view (default 50)")
    report.add_argument("--format", choices=("table", "tsv", "json"), default="table")
    report.set_defaults(handler=_report)


def _cell(value: Any) -> str:
    from sinks.analytics.query_server import jsonable

    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else repr(value)
    if isinstance(value, list | tuple | dict):
        text = json.dumps(jsonable(value), ensure_ascii=False)
    else:
        text = str(jsonable(value))
    return text


def format_result(result: QueryResult, fmt: str = "table") -> str:
    from sinks.analytics.query_server import jsonable

    if fmt == "json":
        rows = [dict(zip(result.columns, map(jsonable, row), strict=True)) for row in result.rows]
        return json.dumps(rows, ensure_ascii=False, indent=1)
    cells = [[_cell(v) for v in row] for row in result.rows]
    if fmt == "tsv":
        lines = ["\t".join(result.columns)]
        lines += ["\t".join(c.replace("\t", " ").replace("\n", " ") for c in row) for row in cells]
        return "\n".join(lines)
    cells = [
        [c if len(c) <= MAX_CELL_CHARS else c[: MAX_CELL_CHARS - 1] + "…" for c in row]
        for row in cells
    ]
    widths = [len(name) for name in result.columns]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(name.ljust(w) for name, w in zip(result.columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(
            c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True)
        )
        for row in cells
    ]
    count = f"({len(cells)} row{'s' if len(cells) != 1 else ''})"
    return "\n".join([line.rstrip(), rule, *(b.rstrip() for b in body), count])


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sql(args: argparse.Namespace) -> int:
    from sinks.analytics.query_server import EndpointError, QueryRefusedError, check_read_only

    try:
        check_read_only(args.query)
    except QueryRefusedError as exc:
        print(f"turnstream sql: refused: {exc}", file=sys.stderr)
        return 1
    settings = load_settings()
    try:
        source, store, _ = open_source(settings)
    except SourceError as exc:
        print(f"turnstream sql: {exc}", file=sys.stderr)
        return 1
    try:
        result = source.query(args.query)
    except (EndpointError, QueryRefusedError) as exc:
        print(f"turnstream sql: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"turnstream sql: {exc}", file=sys.stderr)
        return 1
    finally:
        if store is not None:
            store.close()
    print(format_result(result, args.format))
    return 0


def _report(args: argparse.Namespace) -> int:
    from sinks.analytics.views import REPORT

    settings = load_settings()
    try:
        source, store, where = open_source(settings)
    except SourceError as exc:
        print(f"turnstream report: {exc}", file=sys.stderr)
        return 1
    database = settings.analytics.database
    status = 0
    try:
        print(
            f"# analytics report ({where}, database {database})"
            + (f", tenant {args.tenant}" if args.tenant else "")
        )
        for view in REPORT:
            where_sql = "WHERE tenant_id = {tenant:String} " if args.tenant else ""
            sql = (
                f"SELECT * FROM `{database}`.`{view.name}` {where_sql}"
                f"ORDER BY tenant_id, {view.order_by} LIMIT {max(1, args.limit)}"
            )
            print(f"\n## {view.title}  [{view.name}]")
            try:
                result = source.query(sql, {"tenant": args.tenant} if args.tenant else None)
            except Exception as exc:
                print(f"error: {exc}")
                status = 1
                continue
            print(format_result(result, args.format) if result.rows else "(no rows)")
    finally:
        if store is not None:
            store.close()
    return status
