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
"""

from __future__ import annotations

import logging
import re

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


def configure_worker_logging(level: str) -> None:
    """Root logging at ``level`` on stderr, with :class:`StartupNoise` on its handlers."""
    logging.basicConfig(level=level, format=WORKER_FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, StartupNoise) for f in handler.filters):
            handler.addFilter(StartupNoise())
