"""Compare a replayed turn's record with the recorded one, field by field, as named kinds.

What is compared is what a pack decides: intent, scenario transitions and steps, applied
rules (ids, not scores), tool calls (tool and canonical input), LLM calls (asked what the
recording lacks, or answered otherwise than recorded), response type, enforcement verdicts
and remediation, outcome, answer text. What is left out is what a replay cannot
reproduce or a pack does not decide: timings, tool latencies, token usage, retrieval scores,
the pack version number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from processors.replay.tools import call_key
from schemas.domain.llm_call import LlmCall
from schemas.domain.turn_context import TurnContext


class ChangeKind(StrEnum):
    INTENT = "intent"
    SCENARIO = "scenario"
    STEP = "step"
    RULE_ADDED = "rule_added"
    RULE_REMOVED = "rule_removed"
    NEW_TOOL_CALL = "new_tool_call"
    LOST_TOOL_CALL = "lost_tool_call"
    UNRECORDED_TOOL_CALL = "unrecorded_tool_call"
    TOOL_RESULT = "tool_result"
    UNRECORDED_LLM_CALL = "unrecorded_llm_call"
    LLM_OUTPUT = "llm_output"
    RESPONSE_TYPE = "response_type"
    NEW_VIOLATION = "new_violation"
    RESOLVED_VIOLATION = "resolved_violation"
    NEW_FALLBACK = "new_fallback"
    LOST_FALLBACK = "lost_fallback"
    REMEDIATION = "remediation"
    OUTCOME = "outcome"
    ANSWER = "answer"
    REPLAY_ERROR = "replay_error"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    before: str
    after: str


def _show(items: Iterable[str]) -> str:
    """Sorted, comma-separated, a repeated item once with its count (``x3``)."""
    counted = Counter(items)
    listed = [f"{k} x{n}" if n > 1 else k for k, n in sorted(counted.items())]
    return ", ".join(listed) if listed else "-"


def _scenarios(context: TurnContext) -> set[str]:
    return {f"{d.scenario_id}:{d.action.value}" for d in context.scenario_decisions}


def _steps(context: TurnContext) -> set[str]:
    found = set()
    for d in context.scenario_decisions:
        found.add(f"{d.scenario_id}: {d.from_step_id or '-'} -> {d.entered_step_id or '-'}")
        found.update(f"{d.scenario_id}: skipped {s}" for s in d.skipped_step_ids)
    return found


def _violations(context: TurnContext) -> Counter[str]:
    """Violations over all attempts, counted: a rule the recording broke once (then
    regenerated clean) and the replay breaks on every attempt is a new violation."""
    return Counter(
        f"{v.rule_id} ({v.lane.value})" for e in context.enforcement for v in e.violations
    )


def _fallback(context: TurnContext) -> bool:
    return any(e.fallback_used for e in context.enforcement)


def _remediated(context: TurnContext) -> bool:
    return any(e.remediated for e in context.enforcement)


def _outcome(context: TurnContext) -> str:
    if context.outcome is None:
        return "-"
    categories = ",".join(sorted(c.value for c in context.outcome.categories)) or "none"
    return f"{context.outcome.resolution.value} [{categories}]"


def _response_type(context: TurnContext) -> str:
    return context.plan.response_type.value if context.plan else "-"


def _set_change(kind: ChangeKind, before: set[str], after: set[str], changes: list[Change]) -> None:
    if before != after:
        changes.append(Change(kind, _show(before - after), _show(after - before)))


def compare(
    recorded: TurnContext,
    replayed: TurnContext,
    unrecorded: Iterable[tuple[str, str]] = (),
    unrecorded_llm: Iterable[str] = (),
) -> list[Change]:
    """The changes from ``recorded`` to ``replayed``; empty when the pack decided the same.
    ``unrecorded`` are the tool calls the replay wanted and the recording lacked;
    ``unrecorded_llm`` the LLM calls (``phase/task (key)``, answered by the heuristic)."""
    changes: list[Change] = []
    if recorded.canonical_intent != replayed.canonical_intent:
        changes.append(
            Change(
                ChangeKind.INTENT,
                recorded.canonical_intent or "-",
                replayed.canonical_intent or "-",
            )
        )
    _set_change(ChangeKind.SCENARIO, _scenarios(recorded), _scenarios(replayed), changes)
    _set_change(ChangeKind.STEP, _steps(recorded), _steps(replayed), changes)
    before_rules = {r.rule_id for r in recorded.applied_rules}
    after_rules = {r.rule_id for r in replayed.applied_rules}
    if after_rules - before_rules:
        changes.append(Change(ChangeKind.RULE_ADDED, "", _show(after_rules - before_rules)))
    if before_rules - after_rules:
        changes.append(Change(ChangeKind.RULE_REMOVED, _show(before_rules - after_rules), ""))
    _tool_changes(recorded, replayed, list(unrecorded), changes)
    _llm_changes(recorded, replayed, list(unrecorded_llm), changes)
    if _response_type(recorded) != _response_type(replayed):
        changes.append(
            Change(ChangeKind.RESPONSE_TYPE, _response_type(recorded), _response_type(replayed))
        )
    _enforcement_changes(recorded, replayed, changes)
    if _outcome(recorded) != _outcome(replayed):
        changes.append(Change(ChangeKind.OUTCOME, _outcome(recorded), _outcome(replayed)))
    if (recorded.response_text or "") != (replayed.response_text or ""):
        changes.append(
            Change(ChangeKind.ANSWER, recorded.response_text or "", replayed.response_text or "")
        )
    return changes


def _tool_changes(
    recorded: TurnContext,
    replayed: TurnContext,
    unrecorded: list[tuple[str, str]],
    changes: list[Change],
) -> None:
    before = Counter(call_key(c) for c in recorded.tool_calls)
    after = Counter(call_key(c) for c in replayed.tool_calls)
    lost, new = before - after, after - before
    missing = Counter(unrecorded)
    new_recorded = new - missing
    if lost:
        changes.append(Change(ChangeKind.LOST_TOOL_CALL, _calls(lost), ""))
    if new_recorded:
        changes.append(Change(ChangeKind.NEW_TOOL_CALL, "", _calls(new_recorded)))
    if missing:
        changes.append(Change(ChangeKind.UNRECORDED_TOOL_CALL, "", _calls(missing)))
    before_ok = {call_key(c): c.success for c in recorded.tool_calls}
    flipped = [
        f"{c.tool}: {'ok' if before_ok[call_key(c)] else 'failed'} -> "
        f"{'ok' if c.success else 'failed'}"
        for c in replayed.tool_calls
        if call_key(c) in before_ok
        and before_ok[call_key(c)] != c.success
        and call_key(c) not in missing
    ]
    if flipped:
        changes.append(Change(ChangeKind.TOOL_RESULT, "", _show(flipped)))


def _llm_changes(
    recorded: TurnContext, replayed: TurnContext, unrecorded: list[str], changes: list[Change]
) -> None:
    """Calls the recording lacks, and calls asked the same whose answer differs (a live
    model answering otherwise than it did; a recorded answer never differs)."""
    if unrecorded:
        changes.append(Change(ChangeKind.UNRECORDED_LLM_CALL, "", _show(unrecorded)))
    before: dict[str, list[str]] = {}
    for call in recorded.llm_calls:
        before.setdefault(call.key, []).append(_answer(call))
    differing: list[tuple[str, str, str]] = []
    for call in replayed.llm_calls:
        answers = before.get(call.key)
        if not answers:
            continue
        was = answers.pop(0) if len(answers) > 1 else answers[0]
        if _answer(call) != was:
            differing.append((f"{call.phase.value}/{call.task}", was, _answer(call)))
    if differing:
        changes.append(
            Change(
                ChangeKind.LLM_OUTPUT,
                "; ".join(f"{name}: {_clip(was)}" for name, was, _now in differing),
                "; ".join(f"{name}: {_clip(now)}" for name, _was, now in differing),
            )
        )


def _answer(call: LlmCall) -> str:
    return call.output if call.output is not None else f"error: {call.error}"


def _clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _calls(counted: Counter[tuple[str, str]]) -> str:
    return _show(f"{tool}({given})" for (tool, given) in counted.elements())


def _enforcement_changes(
    recorded: TurnContext, replayed: TurnContext, changes: list[Change]
) -> None:
    before, after = _violations(recorded), _violations(replayed)
    if after - before:
        changes.append(Change(ChangeKind.NEW_VIOLATION, "", _show((after - before).elements())))
    if before - after:
        changes.append(
            Change(ChangeKind.RESOLVED_VIOLATION, _show((before - after).elements()), "")
        )
    if _fallback(replayed) and not _fallback(recorded):
        changes.append(Change(ChangeKind.NEW_FALLBACK, "no fallback", "fallback template"))
    if _fallback(recorded) and not _fallback(replayed):
        changes.append(Change(ChangeKind.LOST_FALLBACK, "fallback template", "no fallback"))
    if _remediated(recorded) != _remediated(replayed):
        changes.append(
            Change(ChangeKind.REMEDIATION, str(_remediated(recorded)), str(_remediated(replayed)))
        )
