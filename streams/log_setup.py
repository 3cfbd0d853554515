"""Logging of a ``turnstream worker``: the library chatter of a normal start goes to DEBUG.

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


def configure_worker_logging(level: str) -> None:
    """Root logging at ``level`` on stderr, with :class:`StartupNoise` on its handlers."""
    logging.basicConfig(level=level, format=WORKER_FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, StartupNoise) for f in handler.filters):
            handler.addFilter(StartupNoise())
