"""Phase timings, recorded into a turn's ``timings_ms`` the same way by every stage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def timed(timings: dict[str, float], name: str, timer: Callable[[], float]) -> Iterator[None]:
    """Add the block's wall time in milliseconds to ``timings[name]`` (added, not replaced,
    so a phase that runs twice, like generation on a retry, shows its whole cost)."""
    start = timer()
    try:
        yield
    finally:
        elapsed = (timer() - start) * 1000.0
        timings[name] = round(timings.get(name, 0.0) + elapsed, 3)
