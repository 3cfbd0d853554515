"""Selection: how many of the ranked candidates to keep.

Every strategy works on scores sorted best first ``s_1 >= s_2 >= ... >= s_n`` and returns a
count ``k``; the kept items are always the top ``k``. Precisely:

1. ``m`` = the number of scores ``>= min_score`` (a prefix, since the list is sorted).
2. The strategy proposes ``k_s`` in ``[0, m]`` looking only at ``s_1..s_m`` (elbow also at
   the *sentinel* ``s_{m+1}``: the next candidate's score, or ``min_score`` if there is none).
3. ``k = min(n, max(min_k, min(max_k, k_s)))``.

So the result has at most ``max_k`` items; at least ``min_k`` when ``n >= min_k``; and every
kept score is ``>= min_score`` except the ones that ``min_k`` pulls in (a floor of results,
e.g. so the intent merge always sees a top candidate). With ``m = 0`` a strategy proposes 0.

Strategies on ``s_1..s_m`` (``m >= 1``):

- ``fixed_k``: ``k_s = m`` — the top ``max_k`` above ``min_score``.
- ``elbow``: ``k_s = argmax_i (s_i - s_{i+1})`` for ``i`` in ``1..m`` (``s_{m+1}`` the
  sentinel); the smallest such ``i`` on ties. Keep what precedes the largest drop.
- ``adaptive_k``: ``k_s = #{i : s_i >= s_1 - margin * |s_1|}`` (``margin``: the type's
  ``adaptive_margin`` setting, else ``StrategyParams.adaptive_margin`` = 0.15): keep what
  scores within a relative margin of the best.
- ``entropy``: ``p = softmax(s_1..s_m / T)`` (``T`` = 0.05); ``k_s = round(exp(H(p)))``,
  the perplexity, i.e. the effective number of candidates the scores do not tell apart
  (one dominant score -> 1, ``j`` tied scores -> ``j``); half rounds up.
- ``clustering``: 1-D gap clustering: ``k_s`` = the first ``i < m`` with
  ``s_i - s_{i+1} > gap`` (``gap`` = 0.08), else ``m``: keep the top cluster.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.settings import RetrievalTypeSettings, SelectionStrategy


@dataclass(frozen=True)
class StrategyParams:
    """Shape parameters of the strategies (RetrievalTypeSettings holds the bounds)."""

    adaptive_margin: float = 0.15
    temperature: float = 0.05
    cluster_gap: float = 0.08

    def __post_init__(self) -> None:
        if self.adaptive_margin < 0 or self.temperature <= 0 or self.cluster_gap < 0:
            raise ValueError("adaptive_margin, cluster_gap must be >= 0 and temperature > 0")


def select_count(
    scores: Sequence[float],
    settings: RetrievalTypeSettings,
    params: StrategyParams | None = None,
) -> int:
    """How many of ``scores`` (sorted best first) to keep; see the module docstring."""
    if any(a < b for a, b in itertools.pairwise(scores)):
        raise ValueError("scores must be sorted best first")
    params = params or StrategyParams()
    n = len(scores)
    m = next((i for i, s in enumerate(scores) if s < settings.min_score), n)
    proposed = 0
    if m:
        eligible = scores[:m]
        sentinel = scores[m] if m < n else settings.min_score
        proposed = _propose(settings.strategy, eligible, sentinel, params, settings.adaptive_margin)
    return min(n, max(settings.min_k, min(settings.max_k, proposed)))


def _propose(
    strategy: SelectionStrategy,
    s: Sequence[float],
    sentinel: float,
    params: StrategyParams,
    adaptive_margin: float | None = None,
) -> int:
    m = len(s)
    match SelectionStrategy(strategy):
        case SelectionStrategy.FIXED_K:
            return m
        case SelectionStrategy.ELBOW:
            drops = [a - b for a, b in zip(s, [*s[1:], sentinel], strict=True)]
            return drops.index(max(drops)) + 1
        case SelectionStrategy.ADAPTIVE_K:
            margin = params.adaptive_margin if adaptive_margin is None else adaptive_margin
            floor = s[0] - margin * abs(s[0])
            return sum(1 for x in s if x >= floor)
        case SelectionStrategy.ENTROPY:
            return _perplexity_count(s, params.temperature)
        case SelectionStrategy.CLUSTERING:
            gaps = (i for i in range(m - 1) if s[i] - s[i + 1] > params.cluster_gap)
            return next(gaps, m - 1) + 1


def _perplexity_count(s: Sequence[float], temperature: float) -> int:
    top = s[0]
    weights = [math.exp((x - top) / temperature) for x in s]
    total = sum(weights)
    entropy = -sum(w / total * math.log(w / total) for w in weights if w > 0)
    return max(1, min(len(s), math.floor(math.exp(entropy) + 0.5)))
