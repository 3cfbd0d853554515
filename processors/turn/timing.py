"""Phase timings, recorded into a turn's ``timings_ms`` the same way by every stage.

:func:`timed` is also the one place where a phase starts and ends, so it is the port through
which the process that runs the phases can watch them (``streams.tracing`` opens a span per
phase there): :func:`watch_phases` installs a watcher, by default there is none and a phase
costs one ``None`` test more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

PhaseWatcher = Callable[[str], AbstractContextManager[object]]
"""Called with the timing key as a phase starts; its context manager spans the phase."""

_watcher: PhaseWatcher | None = None


def watch_phases(watcher: PhaseWatcher | None) -> None:
    """Install (or, with None, remove) the process's phase watcher."""
    global _watcher
    _watcher = watcher


@contextmanager
def timed(timings: dict[str, float], name: str, timer: Callable[[], float]) -> Iterator[None]:
    """Add the block's wall time in milliseconds to ``timings[name]`` (added, not replaced,
    so a phase that runs twice, like generation on a retry, shows its whole cost)."""
    watcher = _watcher
    start = timer()
    try:
        if watcher is None:
            yield
        else:
            with watcher(name):
                yield
    finally:
        elapsed = (timer() - start) * 1000.0
        timings[name] = round(timings.get(name, 0.0) + elapsed, 3)
