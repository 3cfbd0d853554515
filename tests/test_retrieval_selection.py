"""Selection strategies: hand-computed cases and the bounds every strategy honours."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.retrieval.selection import StrategyParams, select_count
from streams.settings import RetrievalTypeSettings, SelectionStrategy

S = SelectionStrategy


def cfg(
    strategy: SelectionStrategy, min_score: float = 0.25, min_k: int = 0, max_k: int = 10
) -> RetrievalTypeSettings:
    return RetrievalTypeSettings(strategy=strategy, min_score=min_score, min_k=min_k, max_k=max_k)


@pytest.mark.parametrize(
    ("strategy", "scores", "expected"),
    [
        # fixed_k: everything above min_score, up to max_k.
        (S.FIXED_K, [0.9, 0.8, 0.7, 0.2], 3),
        # elbow: drops 0.05, 0.35, 0.05, 0.15, then 0.05 to the min_score sentinel -> 2.
        (S.ELBOW, [0.9, 0.85, 0.5, 0.45, 0.3], 2),
        # elbow: two close scores and nothing after: the drop to min_score (0.63) wins.
        (S.ELBOW, [0.9, 0.88], 2),
        # elbow: the sentinel is the next (ineligible) candidate: drops 0.02, 0.78.
        (S.ELBOW, [0.9, 0.88, 0.1], 2),
        (S.ELBOW, [0.9, 0.5, 0.45], 1),
        # adaptive_k: floor 0.8 - 0.15 * 0.8 = 0.68.
        (S.ADAPTIVE_K, [0.8, 0.7, 0.69, 0.5], 3),
        (S.ADAPTIVE_K, [0.8, 0.6, 0.59], 1),
        # entropy: p = (2/3, 1/3): H = 0.6365, exp(H) = 1.89 -> 2.
        (S.ENTROPY, [0.5, 0.5 - 0.05 * math.log(2)], 2),
        # entropy: p = (0.9, 0.1): H = 0.325, exp(H) = 1.38 -> 1.
        (S.ENTROPY, [0.5, 0.5 - 0.05 * math.log(9)], 1),
        (S.ENTROPY, [0.6, 0.6, 0.6, 0.1], 3),
        (S.ENTROPY, [0.9, 0.3], 1),
        # clustering: gaps 0.05, 0.05, 0.2 (> 0.08) -> top cluster of 3.
        (S.CLUSTERING, [0.9, 0.85, 0.8, 0.6, 0.55], 3),
        (S.CLUSTERING, [0.5, 0.45, 0.4], 3),
    ],
)
def test_hand_computed(strategy: SelectionStrategy, scores: list[float], expected: int) -> None:
    assert select_count(scores, cfg(strategy)) == expected


def test_adaptive_k_with_negative_best() -> None:
    # floor = -0.2 - 0.15 * 0.2 = -0.23
    assert select_count([-0.2, -0.22, -0.5], cfg(S.ADAPTIVE_K, min_score=-1.0)) == 2


def test_bounds_override_the_strategy() -> None:
    scores = [0.9, 0.8, 0.7, 0.2]
    assert select_count(scores, cfg(S.FIXED_K, max_k=2)) == 2
    # min_k pulls in a candidate under min_score ...
    assert select_count(scores, cfg(S.FIXED_K, min_k=4)) == 4
    # ... but never invents candidates.
    assert select_count(scores, cfg(S.FIXED_K, min_k=6, max_k=8)) == 4
    assert select_count([0.1, 0.05], cfg(S.ELBOW, min_k=1)) == 1
    assert select_count([0.1, 0.05], cfg(S.ELBOW, min_k=0)) == 0
    assert select_count([], cfg(S.ENTROPY, min_k=2)) == 0


def test_params_change_the_shape() -> None:
    scores = [0.8, 0.66, 0.6]  # gaps 0.14, 0.06
    wide = StrategyParams(adaptive_margin=0.3, cluster_gap=0.2)
    assert select_count(scores, cfg(S.ADAPTIVE_K)) == 1  # floor 0.68
    assert select_count(scores, cfg(S.ADAPTIVE_K), wide) == 3  # floor 0.56
    assert select_count(scores, cfg(S.CLUSTERING)) == 1
    assert select_count(scores, cfg(S.CLUSTERING), wide) == 3


def test_a_type_setting_overrides_the_adaptive_margin() -> None:
    scores = [0.8, 0.66, 0.6]
    own = cfg(S.ADAPTIVE_K).model_copy(update={"adaptive_margin": 0.3})
    assert select_count(scores, own) == 3  # floor 0.56
    # The type's setting wins over StrategyParams; None falls back to it.
    assert select_count(scores, own, StrategyParams(adaptive_margin=0.0)) == 3
    assert select_count(scores, cfg(S.ADAPTIVE_K), StrategyParams(adaptive_margin=0.3)) == 3


def test_unsorted_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        select_count([0.5, 0.9], cfg(S.FIXED_K))


def test_strategy_given_as_plain_string_is_accepted() -> None:
    settings = cfg(S.ELBOW).model_copy(update={"strategy": "fixed_k"})
    assert select_count([0.9, 0.5, 0.45], settings) == 3


scores_st = st.lists(st.floats(min_value=-1.0, max_value=1.0, allow_nan=False), max_size=30).map(
    lambda xs: sorted(xs, reverse=True)
)


@st.composite
def settings_st(draw: st.DrawFn) -> RetrievalTypeSettings:
    max_k = draw(st.integers(1, 12))
    return RetrievalTypeSettings(
        strategy=draw(st.sampled_from(list(SelectionStrategy))),
        min_score=draw(st.floats(-1.0, 1.0, allow_nan=False)),
        min_k=draw(st.integers(0, max_k)),
        max_k=max_k,
    )


@given(scores_st, settings_st())
def test_bounds_hold_for_every_strategy(
    scores: list[float], settings: RetrievalTypeSettings
) -> None:
    k = select_count(scores, settings)
    n = len(scores)
    assert 0 <= k <= min(n, settings.max_k)
    assert k >= min(settings.min_k, n)
    # Only the first min_k kept items may sit under min_score.
    assert all(s >= settings.min_score for s in scores[settings.min_k : k])
