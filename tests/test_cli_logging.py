"""What the worker and the client commands let through of the libraries' logging
(streams/log_setup.py), on real loggers and a real handler."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from streams.log_setup import RaisedAnyway, StartupNoise

TABLE = "Highwater for active changelog partitions:\n+----+\n| t | 0 | -1 |\n+----+"


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    yield stream, handler
    for name in ("faust.tables.recovery", "mode.services", "aiokafka.conn", "streams.worker"):
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def _attach(handler: logging.Handler, name: str, level: int) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger


def test_faust_tables_and_lifecycle_lines_go_to_debug(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = captured
    handler.addFilter(StartupNoise())
    recovery = _attach(handler, "faust.tables.recovery", logging.INFO)
    services = _attach(handler, "mode.services", logging.INFO)
    ours = _attach(handler, "streams.worker", logging.INFO)
    recovery.info("[^--Recovery]: %s", TABLE)
    services.info("[^--Agent: streams.pipeli[.]retrieval-rules]: Starting...")
    recovery.info("[^--Recovery]: Recovery complete")
    recovery.warning("[^--Recovery]: table\nrows that matter")
    ours.info("worker (all) started on 127.0.0.1:9092")
    assert stream.getvalue().splitlines() == [
        "INFO faust.tables.recovery: [^--Recovery]: Recovery complete",
        "WARNING faust.tables.recovery: [^--Recovery]: table",
        "rows that matter",
        "INFO streams.worker: worker (all) started on 127.0.0.1:9092",
    ]

    recovery.setLevel(logging.DEBUG)  # --log-level DEBUG shows them, as DEBUG
    recovery.info("[^--Recovery]: %s", TABLE)
    assert stream.getvalue().splitlines()[4] == (
        "DEBUG faust.tables.recovery: [^--Recovery]: Highwater for active changelog partitions:"
    )


def test_client_commands_drop_what_aiokafka_logs_before_raising(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = captured
    handler.addFilter(RaisedAnyway())
    conn = _attach(handler, "aiokafka.conn", logging.INFO)
    ours = _attach(handler, "streams.worker", logging.INFO)
    conn.error('Unable connect to "127.0.0.1:1": [Errno 111] Connect call failed')
    conn.critical("the library says this is fatal")
    ours.error("our own error")
    assert stream.getvalue().splitlines() == [
        "CRITICAL aiokafka.conn: the library says this is fatal",
        "ERROR streams.worker: our own error",
    ]
