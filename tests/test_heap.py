"""After a burst of short-lived objects the worker hands the freed heap back
(``streams.pipeline.heap``): glibc keeps it mapped otherwise, and the worker's memory stayed
at the burst's peak. Real allocations in this process, read from ``/proc``."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.pipeline.heap import release_free_heap

MIB = 2**20


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_memory_freed_among_live_objects_goes_back_to_the_system() -> None:
    """~190 MiB of 4 KB values (malloc'd, not pymalloc's arenas), one in fifty kept alive
    (as a recovery keeps the odd value): freeing the rest leaves the pages mapped, between
    the live ones, until the trim."""
    blobs = [bytes(4000) for _ in range(50_000)]
    kept = blobs[::50]
    del blobs
    freed = resident_bytes()
    assert release_free_heap()
    trimmed = resident_bytes()
    assert len(kept) == 1000
    assert freed - trimmed > 100 * MIB, (freed // MIB, trimmed // MIB)
