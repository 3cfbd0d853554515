"""The most LLM work one turn can cause, from its (pack-merged) settings.

A turn asks the model at most once per pass of each LLM phase in ``llm`` mode: the sensor
(P2) and the rule filter (P5) once, generation (P9) and the judge (P10) once per generation
attempt (``1 + enforcement.regenerations``). Each ask makes at most ``1 + retries`` attempts
of at most ``timeout_s`` each, with a jittered backoff between them. The sum is the turn's
budget: the calls it may make, and the longest it may wait on its model. The stall watchdog
must wait longer than that before it drives a turn again (a turn waiting on its model is
busy, not stalled), and a worker whose ``turn_stall_s`` is shorter refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.llm import call_budget_s
from schemas.domain.phase import Phase
from schemas.settings import PhaseSettings, Settings, TaskMode

__all__ = ["LLM_PHASES", "TurnLlmBudget", "stall_problem", "turn_llm_budget"]

LLM_PHASES = (Phase.SENSOR, Phase.RULE_SELECTION, Phase.GENERATION, Phase.ENFORCEMENT)


@dataclass(frozen=True)
class TurnLlmBudget:
    calls: int
    """LLM attempts one turn may make, all phases and retries included."""
    seconds: float
    """The longest one turn may wait on its model (every attempt timing out)."""


def _passes(settings: Settings, phase: Phase) -> int:
    if phase in (Phase.GENERATION, Phase.ENFORCEMENT):
        return 1 + settings.phases.enforcement.regenerations
    return 1


def turn_llm_budget(settings: Settings) -> TurnLlmBudget:
    """The budget of a turn under ``settings`` (a pack's: ``TurnDeps.settings_for``)."""
    calls, seconds = 0, 0.0
    for phase in LLM_PHASES:
        knobs: PhaseSettings = getattr(settings.phases, phase.value)
        if not knobs.enabled or knobs.mode is not TaskMode.LLM:
            continue
        passes = _passes(settings, phase)
        calls += passes * (1 + knobs.retries)
        seconds += passes * call_budget_s(knobs, settings.llm_backoff_s)
    return TurnLlmBudget(calls=calls, seconds=seconds)


def stall_problem(settings: Settings) -> str | None:
    """Why ``settings`` would let the watchdog drive again a turn that is only waiting on
    its model, or None: ``turn_stall_s`` must exceed the worst-case turn budget."""
    budget = turn_llm_budget(settings)
    if settings.turn_stall_s > budget.seconds:
        return None
    return (
        f"TURNSTREAM_TURN_STALL_S ({settings.turn_stall_s:g} s) must exceed the worst-case "
        f"LLM time of one turn ({budget.seconds:g} s: {budget.calls} attempts of the phases "
        "in llm mode, each up to its timeout_s, with backoff); raise it, or lower the phases' "
        "timeout_s, retries or enforcement.regenerations"
    )
