"""Read-only SQL over loopback HTTP, served by the process that owns the embedded engine.

chdb lets one process open a data directory. The worker that runs the analytics consumer owns
it, so it also serves analyst queries on ``127.0.0.1:<TURNSTREAM_ANALYTICS__QUERY_PORT>``;
``turnstream sql`` and ``turnstream report`` go there when a worker is up and open the data
directory themselves otherwise.

* ``GET /health`` answers ``{"location": "chdb:/abs/path", "database": ...}``: a client
  checks that the endpoint serves the data it means (another worker on another data dir
  could hold the port).
* ``POST /query`` takes ``{"sql": ..., "parameters": {...}}`` and answers
  ``{"columns", "types", "rows"}`` (values as JSON; dates and times as ISO strings).

Only one statement that starts with SELECT, SHOW, DESCRIBE/DESC, WITH or EXPLAIN is accepted
(:func:`check_read_only`), and it runs on a client whose session has ``readonly=1``, so
ClickHouse itself refuses writes, DDL, settings changes and table functions such as ``file``
and ``url``. The server binds loopback only.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import ipaddress
import json
import logging
import re
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sinks.analytics.store import AnalyticsStore, QueryResult

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
MAX_REQUEST_BYTES = 1024 * 1024
READ_ONLY_KEYWORDS = frozenset({"SELECT", "SHOW", "DESCRIBE", "DESC", "WITH", "EXPLAIN"})
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


class QueryRefusedError(ValueError):
    """A statement the endpoint does not run (not read-only, or several statements)."""


class EndpointError(RuntimeError):
    """The endpoint answered with an error (the query failed); the message is ClickHouse's."""


def check_read_only(sql: str) -> str:
    """The statement without comments and a trailing ``;``, or :class:`QueryRefusedError`."""
    text = _COMMENT.sub(" ", sql).strip().rstrip(";").strip()
    if not text:
        raise QueryRefusedError("empty query")
    if ";" in _strip_literals(text):
        raise QueryRefusedError("one statement at a time")
    first = re.split(r"[\s(]", text.lstrip("("), maxsplit=1)[0].upper()
    if first not in READ_ONLY_KEYWORDS:
        allowed = ", ".join(sorted(READ_ONLY_KEYWORDS))
        raise QueryRefusedError(f"read-only queries only ({allowed}); got {first or text[:20]!r}")
    return text


def _strip_literals(text: str) -> str:
    """The text without quoted strings and identifiers, to look for a second statement."""
    return re.sub(r"'(?:[^'\\]|\\.)*'|`[^`]*`|\"[^\"]*\"", "''", text)


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | ipaddress.IPv4Address):
        return str(value)
    if isinstance(value, ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    return str(value)


def result_json(result: QueryResult) -> dict[str, Any]:
    return {
        "columns": result.columns,
        "types": result.types,
        "rows": [[jsonable(v) for v in row] for row in result.rows],
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("query endpoint: " + format, *args)

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path != "/health":
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        store = self.server.store
        self._reply(HTTPStatus.OK, {"location": store.location, "database": store.database})

    def do_POST(self) -> None:
        if self.path != "/query":
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_REQUEST_BYTES:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "a JSON body up to 1 MiB is required"})
            return
        try:
            request = json.loads(self.rfile.read(length))
            sql = check_read_only(str(request["sql"]))
            parameters = request.get("parameters") or None
            if parameters is not None and not isinstance(parameters, dict):
                raise QueryRefusedError("parameters must be an object")
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        try:
            result = self.server.store.query(sql, parameters)
        except Exception as exc:
            self._reply(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc)})
            return
        self._reply(HTTPStatus.OK, result_json(result))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, store: AnalyticsStore) -> None:
        self.store = store
        super().__init__((LOOPBACK, port), _Handler)


class QueryServer:
    """The endpoint in a background thread; ``start()`` binds (``OSError`` if the port is
    taken), ``stop()`` shuts it down."""

    def __init__(self, store: AnalyticsStore, port: int) -> None:
        self._store = store
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("query server not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._server = _Server(self._port, self._store)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="analytics-query-server", daemon=True
        )
        self._thread.start()
        logger.info("analytics: read-only SQL on http://%s:%d/query", LOOPBACK, self.port)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# -- the client side ----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    port: int
    host: str = LOOPBACK
    timeout_s: float = 300.0

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def health(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """The endpoint's identity, or None when nothing answers on the port."""
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=timeout_s) as response:
                body: dict[str, Any] = json.loads(response.read())
                return body
        except (OSError, ValueError):
            return None

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
        data = json.dumps({"sql": sql, "parameters": parameters or {}}).encode()
        request = urllib.request.Request(
            f"{self.base}/query",
            data=data,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", str(exc))
            except ValueError:
                message = str(exc)
            raise EndpointError(message) from None
        return QueryResult(body["columns"], body["types"], [tuple(r) for r in body["rows"]])
