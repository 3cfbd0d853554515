"""What the ``turnstream`` entry point prints when a command fails: one line, with a hint.

A failure a user can meet and fix (no broker, no ClickHouse, a bad pack or setting, an agent
without a pack) is an expected failure: it prints ``turnstream: <what>; hint: <what to do>``
on stderr and exits non-zero. Only ``--debug`` shows the traceback. Handlers raise
:class:`CliError` where they know the remedy; exceptions of the libraries underneath are
recognised here by class.

The library classes are looked up in ``sys.modules`` rather than imported: an exception of a
module that was never imported cannot have been raised, and importing aiokafka or chdb here
would cost every command (``--help`` included) their import time.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

KAFKA_HINT = (
    "start the local broker with `turnstream kafka up` (or run `turnstream demo`), or set "
    "TURNSTREAM_KAFKA_BOOTSTRAP to a running cluster; `turnstream kafka status` checks it"
)
CLICKHOUSE_HINT = (
    "check that the server at TURNSTREAM_CLICKHOUSE_URL runs and the URL (host, port, user, "
    "password) is right, or unset it to use the embedded engine"
)
DEBUG_HINT = "run again with --debug for the traceback"

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An expected failure whose remedy the raising handler knows."""

    def __init__(self, what: str, hint: str, code: int = EXIT_FAILED) -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint
        self.code = code


@dataclass(frozen=True)
class Failure:
    what: str
    hint: str
    code: int = EXIT_FAILED

    def line(self) -> str:
        return f"turnstream: {self.what}; hint: {self.hint}"


def _one_line(text: str) -> str:
    """The message on one line: its lines joined by "; " (by a space after a colon)."""
    joined = ""
    for part in (line.strip() for line in text.splitlines()):
        if part:
            joined += part if not joined else (" " if joined.endswith(":") else "; ") + part
    return joined or "(no message)"


def _first_line(text: str) -> str:
    return next((part.strip() for part in text.splitlines() if part.strip()), "(no message)")


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')\]]+)")
MAX_REASON_CHARS = 160


def short_reason(exc: BaseException) -> str:
    """What went wrong, short: an OS error buried in a client's message (``[Errno 111]
    Connection refused``) when there is one, else the first line of the message."""
    text = str(exc)
    found = _ERRNO.search(text)
    reason = found[1].strip() if found else _first_line(text)
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """The exception class ``module.name`` if that module is imported, else None."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _is(exc: BaseException, module: str, name: str) -> bool:
    cls = _loaded(module, name)
    return cls is not None and isinstance(exc, cls)


def _clickhouse(exc: BaseException) -> bool:
    """The ClickHouse client could not reach or log in to the server."""
    return _is(exc, "clickhouse_connect.driver.exceptions", "OperationalError") or _is(
        exc, "clickhouse_connect.driver.exceptions", "DatabaseError"
    )


def _kafka_down(exc: BaseException) -> BaseException | None:
    """The KafkaConnectionError in ``exc``'s chain of causes (a PublishError wraps one)."""
    seen: BaseException | None = exc
    while seen is not None:
        if _is(seen, "aiokafka.errors", "KafkaConnectionError"):
            return seen
        seen = seen.__cause__
    return None


def _bootstrap() -> str:
    """Where the command tried to connect, by the settings (they loaded, or no client would
    have been started)."""
    settings = sys.modules.get("streams.settings")
    try:
        return str(settings.load_settings().bootstrap_servers) if settings else "the cluster"
    except Exception:
        return "the cluster"


def explain(exc: BaseException) -> Failure | None:
    """The one-line form of an expected failure; None for anything else (a bug)."""
    if _kafka_down(exc) is not None:
        return Failure(f"Kafka at {_bootstrap()} does not answer", KAFKA_HINT)
    if isinstance(exc, CliError):
        return Failure(exc.what, exc.hint, exc.code)
    message = str(exc)
    if _is(exc, "streams.settings", "SettingsError"):
        return Failure(
            _one_line(message),
            "fix the named TURNSTREAM_* variable (or the TURNSTREAM_CONFIG file)",
            EXIT_USAGE,
        )
    if _is(exc, "streams.worker", "KafkaUnreachableError"):
        return Failure(_one_line(message), KAFKA_HINT)
    if _is(exc, "streams.local_kafka", "LocalKafkaError"):
        return Failure(
            _first_line(message),
            "`turnstream kafka status` names the broker's data dir and log; "
            "--debug prints the log's last lines",
        )
    if _is(exc, "processors.pack.errors", "PackValidationError"):
        errors = [str(e) for e in getattr(exc, "errors", []) if e.severity == "error"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return Failure(
            f"invalid agent pack: {errors[0]}{more}" if errors else _first_line(message),
            "`turnstream pack validate DIR` lists every problem with its line",
        )
    if _is(exc, "streams.topic_admin", "TopicAdminError") or _is(
        exc, "streams.pack_publisher", "PublishError"
    ):
        return Failure(_one_line(message), "check the cluster with `turnstream kafka status`")
    if _is(exc, "sinks.analytics.store", "EngineBusyError"):
        return Failure(
            _one_line(message),
            "another process (a worker?) holds the embedded analytics data: query it through "
            "that worker's endpoint (TURNSTREAM_ANALYTICS__QUERY_PORT), or stop it",
        )
    if _clickhouse(exc):
        return Failure(f"ClickHouse failed: {short_reason(exc)}", CLICKHOUSE_HINT)
    return None
