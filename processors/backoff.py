"""Capped exponential backoff, the one schedule every retry loop of the project uses.

The wait after failure ``n`` (1-based) is ``min(max_s, first_s * 2**(n-1))`` times a factor
drawn uniformly from ``[low, high]``: ``(1, 1)`` no jitter (the dead-letter produce), ``(0.5,
1)`` half to all of the ceiling (sink consumers), ``(0.8, 1.2)`` ±20 % (Kafka reconnects and
the worker's start steps), so that clients failing together do not retry in step.

Pure (no clock, no sleep): the callers sleep. It sits in processors/ so that sinks/ can use
it too.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_DOUBLINGS = 64
"""The ceiling stops doubling here (any cap is reached long before; ``2.0**1024`` overflows)."""


@dataclass(frozen=True)
class Backoff:
    """``first_s`` doubling per failure up to ``max_s``, times a random factor in [low, high]."""

    first_s: float
    max_s: float
    low: float = 1.0
    high: float = 1.0

    def ceiling(self, failures: int) -> float:
        """The un-jittered wait after ``failures`` consecutive failures (1 or more)."""
        doublings = min(max(failures - 1, 0), MAX_DOUBLINGS)
        return min(self.max_s, self.first_s * 2.0**doublings)

    def delay(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        """The wait after ``failures`` consecutive failures; ``rng`` draws from [0, 1)."""
        return self.ceiling(failures) * (self.low + (self.high - self.low) * rng())

    def delays(self, rng: Callable[[], float] = random.random) -> Iterator[float]:
        """The waits after failure 1, 2, 3, ... (endless)."""
        return (self.delay(failures, rng) for failures in itertools.count(1))
