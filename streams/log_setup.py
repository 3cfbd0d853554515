"""Logging of ``turnstream`` processes: what the libraries say that the user needs no more.

Client commands (``topics``, ``send``, ``pack load``, ``sql``, ...) configure no logging:
Python prints WARNING and up through ``logging.lastResort``, less :class:`RaisedAnyway`.
A worker (``turnstream worker``) logs at its level, and the library chatter of a normal
start goes to DEBUG:

Faust logs, at INFO, a table row per partition of every changelog ("Highwater for active
changelog partitions", "offsets at start of reading": 12 partitions x 5 topics, twice per
rebalance) and a "Starting..." / "Stopping..." line for each of its ~40 internal services.
That buried the worker's own lines (model loaded, packs indexed, started) under some 220
lines per start. :class:`StartupNoise` demotes exactly those records to DEBUG, where
``--log-level DEBUG`` still shows them; every other record, and every WARNING or ERROR of
any logger, passes unchanged.

While a broker is down, aiokafka logs each failed reconnect and each failed request of each
of a worker's clients (4,375 ERROR lines in 30 s before the reconnect backoff of
``streams.kafka_backoff``, which leaves ~100). :class:`RepeatedRecords` lets one record of
each of its messages through per ``log_repeat_s`` and counts the others into the next one
it lets through: "... (41 more like this in the last 30 s)".
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

NOISY_LOGGERS = ("faust.", "mode.")
_LIFECYCLE = re.compile(r"^\[\^.*?\]: -?(Starting|Stopping|Stopped|Shutting down)\b")

WORKER_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def is_startup_noise(record: logging.LogRecord) -> bool:
    """An INFO record of Faust/mode that is a multi-line table or a service lifecycle line."""
    if record.levelno != logging.INFO or not record.name.startswith(NOISY_LOGGERS):
        return False
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a malformed record: let the handler report it
        return False
    return "\n" in message or _LIFECYCLE.match(message) is not None


class StartupNoise(logging.Filter):
    """A handler filter: demotes :func:`is_startup_noise` records to DEBUG, and lets them
    through only when their logger is enabled for DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_startup_noise(record):
            return True
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


RAISED_ANYWAY = ("aiokafka", "clickhouse_connect", "urllib3")


class RaisedAnyway(logging.Filter):
    """Drops records below CRITICAL of aiokafka and the ClickHouse driver (and its urllib3)
    in client commands.

    They log a failed connection (and each retry) and then raise it; the CLI reports the raised
    error as one line with a hint, so their records only print the same failure again,
    before the line that explains it. ``--debug`` keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name.split(".", 1)[0] in RAISED_ANYWAY and record.levelno < logging.CRITICAL
        )


def configure_cli_logging(debug: bool) -> None:
    """Without ``debug``, :class:`RaisedAnyway` on ``logging.lastResort``: the handler that
    prints WARNING and up while nothing configured logging. No root handler is installed,
    so a command that configures logging itself (the worker, the demo) is not affected."""
    last_resort = logging.lastResort
    if debug or last_resort is None:
        return
    if not any(isinstance(f, RaisedAnyway) for f in last_resort.filters):
        last_resort.addFilter(RaisedAnyway())


REPEATING_LOGGERS = ("aiokafka", "faust.transport")
"""The libraries whose WARNING / ERROR records repeat per retry while a broker is down."""


@dataclass
class _Window:
    since: float
    held: int = 0


class RepeatedRecords(logging.Filter):
    """A handler filter: a WARNING or ERROR record (not CRITICAL) of
    :data:`REPEATING_LOGGERS` passes if no record with its message template (and logger)
    passed in the last ``interval_s``; else it is held back and counted, and the next one
    that passes says how many were: "(N more like this in the last M s)". The count of an
    outage's last interval is told by the next such record, if any."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            self.interval_s <= 0
            or not logging.WARNING <= record.levelno < logging.CRITICAL
            or not record.name.startswith(REPEATING_LOGGERS)
        ):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        window = self._windows.get(key)
        if window is not None and now - window.since < self.interval_s:
            window.held += 1
            return False
        self._windows[key] = _Window(now)
        if window is not None and window.held:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a malformed record: let the handler report it
                return True
            record.msg = (
                f"{message} ({window.held} more like this in the last {now - window.since:.0f} s)"
            )
            record.args = None
        return True


def configure_worker_logging(level: str, repeat_s: float = 30.0) -> None:
    """Root logging at ``level`` on stderr, with :class:`StartupNoise` and
    :class:`RepeatedRecords` (``repeat_s``, the ``log_repeat_s`` setting) on its handlers."""
    logging.basicConfig(level=level, format=WORKER_FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, StartupNoise) for f in handler.filters):
            handler.addFilter(StartupNoise())
        if not any(isinstance(f, RepeatedRecords) for f in handler.filters):
            handler.addFilter(RepeatedRecords(repeat_s))
