"""Hand the C heap's free pages back to the operating system after a burst.

A recovery replaying whole changelogs, the scan of every session after it and a sweep
deleting thousands of sessions allocate and free hundreds of MiB of short-lived objects.
glibc keeps freed heap memory mapped for reuse, so the worker's resident memory stayed at
the burst's peak (``bench/state_growth.py``: it then grew with the sessions held, though the
worker no longer held them). ``malloc_trim(0)`` releases the free pages, also those in the
middle of the heap. With the full collection before it, it takes ~0.4 s in a worker (torch's
objects included), so it runs only after a burst of :data:`BURST` sessions or more: after a
small one a 50 ms timer overran its tick and Faust logged a WARNING. Elsewhere than glibc
(musl, macOS) there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable

BURST = 10_000
"""Sessions a recovery's scan or a sweep must have read or deleted to be followed by a trim."""


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Collect the cyclic garbage, then give the heap's free pages back; False where the C
    library has no ``malloc_trim``. The collection first: a live 100k-session worker held
    ~15,800 decoded session states and responses during its sweep that nothing referenced
    any more (``gc.get_objects()``), waiting for the rare full collection."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


__all__ = ["BURST", "release_free_heap"]
