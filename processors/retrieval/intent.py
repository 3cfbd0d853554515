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

:func:`canonical_intent` is what a turn uses: the heuristic sensor's guess (P2's
``classify_intent``, Dice overlap with the example phrases) merged with the retrieved intents,
the sensor's evidence scaled by ``sensor_weight``. The default weight is 0, measured, not
assumed: on the labelled set (``bench/data/acme_retrieval_set.yaml``, 151 messages) the
heuristic sensor has a guess for 73 messages, 48 of them right; where it disagrees with
retrieval's top intent (27 messages) it is right 3 times, retrieval 20 times. Weights 0.05 to
0.5 change the count of right intents by at most one message either way (134 at 0, 125 at
1.0; on the older 65-message set of commit 9fb7530 none gains and 0.3 or more loses two).
Re-measured once intents were also indexed on their descriptions: 136 at 0 to 0.1, 135 at
0.2 to 0.5, 127 at 1.0.
So by default the sensor breaks exact ties, makes the source ``"agreed"`` when it backs the
winner, and decides alone only when retrieval returned nothing (confidence: its Dice score).
An LLM sensor is another matter: call :func:`merge_intent` with its label and confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from processors.intents import classify_intent
from processors.retrieval.model import Retrieved
from schemas.pack import AgentPack

SENSOR_INTENT_WEIGHT = 0.0
"""Default scale of the heuristic sensor's Dice score in :func:`canonical_intent`."""

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


def canonical_intent(
    message: str,
    pack: AgentPack,
    retrieved_intents: Sequence[Retrieved],
    *,
    sensor_weight: float = SENSOR_INTENT_WEIGHT,
) -> tuple[str | None, float, IntentSource]:
    """The turn's intent: the heuristic sensor's guess for ``message`` against ``pack``'s
    intents, merged by :func:`merge_intent` with ``retrieved_intents`` (the *selected*
    intents, best first), its Dice score scaled by ``sensor_weight`` (see the module
    docstring). Without retrieved intents the sensor's guess stands alone, with its Dice
    score; ``(None, 0.0, "none")`` when neither has one. Plain Python, no I/O."""
    if not 0.0 <= sensor_weight <= 1.0:
        raise ValueError("sensor_weight must be in [0, 1]")
    guess = classify_intent(message, pack.intents) if pack.intents else None
    if guess is None:
        return merge_intent(None, 0.0, retrieved_intents)
    if not retrieved_intents:
        return guess.label, _clip(guess.score), "sensor"
    return merge_intent(guess.label, sensor_weight * guess.score, retrieved_intents)
