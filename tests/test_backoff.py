"""The one backoff schedule (``processors.backoff``): growth, cap, jitter bounds."""

from __future__ import annotations

import itertools
import random

import pytest

from processors.backoff import Backoff


def test_the_ceiling_doubles_from_the_first_wait_up_to_the_cap() -> None:
    backoff = Backoff(0.2, 5.0)
    assert [backoff.ceiling(n) for n in range(1, 9)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_no_jitter_waits_the_ceiling_exactly() -> None:
    backoff = Backoff(0.2, 5.0)
    assert list(itertools.islice(backoff.delays(), 7)) == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_a_long_outage_stays_at_the_cap_and_does_not_overflow() -> None:
    backoff = Backoff(1.0, 30.0, 0.5, 1.0)
    assert backoff.ceiling(5000) == 30.0
    assert 15.0 <= backoff.delay(5000) <= 30.0
    assert backoff.ceiling(0) == 1.0  # before any failure: the first wait


@pytest.mark.parametrize(("low", "high"), [(0.5, 1.0), (0.8, 1.2), (0.0, 1.0)])
def test_jitter_stays_inside_its_bounds_and_spreads(low: float, high: float) -> None:
    backoff = Backoff(0.1, 1.0, low, high)
    rng = random.Random(17).random
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (40, 1.0)]:
        delays = [backoff.delay(failures, rng) for _ in range(200)]
        assert all(ceiling * low <= d <= ceiling * high for d in delays), failures
        assert max(delays) - min(delays) > ceiling * (high - low) / 2  # not in step


def test_the_bounds_are_reached_at_the_ends_of_the_draw() -> None:
    backoff = Backoff(1.0, 8.0, 0.8, 1.2)
    assert backoff.delay(3, lambda: 0.0) == pytest.approx(4.0 * 0.8)
    assert backoff.delay(3, lambda: 1.0) == pytest.approx(4.0 * 1.2)
    assert backoff.delay(9, lambda: 0.5) == pytest.approx(8.0)
