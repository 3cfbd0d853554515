"""The canonical intent: the sensor's intent merged with the retrieved intents.

Rule: every label collects evidence in [0, 1] — the sensor's confidence for its label, the
retrieval score (clipped to [0, 1]) for each retrieved label. Each label's confidence is the
noisy-OR of its evidence, ``1 - prod(1 - e)``, so agreement raises confidence above either
source alone. The label with the highest confidence wins; on a tie the sensor's label wins
(it saw the conversation, retrieval only the situation text), then the better-ranked
retrieved one. ``source`` is ``"agreed"`` when both sources back the winner, else
``"sensor"`` or ``"retrieval"``; ``(None, 0.0, "none")`` when there is no evidence.

Pass the *selected* intents: selection already dropped weak ones (min_score), and min_k
keeps a top candidate whose low score then shows in the confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from processors.retrieval.model import Retrieved

IntentSource = Literal["agreed", "sensor", "retrieval", "none"]


def merge_intent(
    sensor_label: str | None,
    sensor_confidence: float,
    retrieved: Sequence[Retrieved],
) -> tuple[str | None, float, IntentSource]:
    """See the module docstring; ``retrieved`` is ranked best first, ids are intent labels."""
    sensor_conf = _clip(sensor_confidence) if sensor_label else 0.0
    best_retrieved: dict[str, float] = {}
    for item in retrieved:
        best_retrieved.setdefault(item.object_id, _clip(item.score))
    labels = list(best_retrieved)
    if sensor_label and sensor_label not in best_retrieved:
        labels.insert(0, sensor_label)
    if not labels:
        return None, 0.0, "none"

    def confidence(label: str) -> float:
        miss = 1.0
        if label == sensor_label:
            miss *= 1.0 - sensor_conf
        if label in best_retrieved:
            miss *= 1.0 - best_retrieved[label]
        return 1.0 - miss

    def rank(label: str) -> tuple[float, int, int]:
        return (-confidence(label), label != sensor_label, labels.index(label))

    winner = min(labels, key=rank)
    by_sensor = winner == sensor_label
    by_retrieval = winner in best_retrieved
    source: IntentSource = (
        "agreed" if by_sensor and by_retrieval else "sensor" if by_sensor else "retrieval"
    )
    return winner, confidence(winner), source


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))
