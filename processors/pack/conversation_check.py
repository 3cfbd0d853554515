"""Compare one played turn with what its conversation test expects; plain Python.

What each key reads off the turn (``packs/FORMAT.md``, "Conversation tests"):

- ``intent``: the canonical intent; ``scenario``: a scenario whose decision this turn is
  START, CONTINUE or COMPLETE (``null``: none); ``action``, ``step`` (the entered step, or
  the step it stayed on), ``skipped``: that scenario's decision; ``paused`` / ``cancelled``:
  every scenario with that action this turn;
- ``tools`` / ``failed_tools``: the tool calls (all / the failed ones), as a multiset;
- ``response_type``: the plan's; ``says`` / ``never_says``: case-insensitive phrases of the
  response text; ``categories`` / ``resolution``: the outcome;
- ``enforcement``: FALLBACK when an attempt ended in the fallback, REMEDIATED when the last
  attempt passed after a failed one, PASSED when the only attempt passed (NONE: P10 left no
  result); ``violated``: the rules any attempt broke;
- ``data``: the customer data of the turn's context after P3 and the tools (JSON values;
  numbers compare by value, ``null`` means "no value").

Every turn must also have been answered (status OK): an error response is reported whatever
the expectations.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from schemas.domain.scenario import ScenarioAction, ScenarioDecision
from schemas.domain.turn_context import TurnContext
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import ResponseStatus, TurnResponse
from schemas.pack.conversations import Scalar, TurnExpectation

_MOVED = (ScenarioAction.START, ScenarioAction.CONTINUE, ScenarioAction.COMPLETE)


@dataclass(frozen=True)
class Observed:
    """What a turn gave: the response the customer got and the turn's record (``None``
    when none arrived, e.g. a turn that failed before P11)."""

    response: TurnResponse
    record: TurnRecord | None


@dataclass(frozen=True)
class Mismatch:
    """One failed expectation, written for people: ``expected`` and ``got`` are short texts."""

    key: str
    expected: str
    got: str


def check_turn(expect: TurnExpectation, observed: Observed) -> list[Mismatch]:
    """Every expectation of ``expect`` the turn does not meet (empty: the turn passed)."""
    found: list[Mismatch] = []
    response = observed.response
    if response.status is not ResponseStatus.OK:
        error = response.error
        detail = f"{error.code}: {error.message}" if error is not None else "no error given"
        found.append(Mismatch("status", "OK", f"{response.status.value} ({detail})"))
    keys = expect.given()
    if not keys:
        return found
    text = response.text or ""
    text_checks: dict[str, Callable[[], Iterable[Mismatch]]] = {
        "says": lambda: _phrases(expect.says or [], text, present=True),
        "never_says": lambda: _phrases(expect.never_says or [], text, present=False),
    }
    record = observed.record
    for key in keys:
        if key in text_checks:
            found += text_checks[key]()
        elif record is None:
            found.append(Mismatch(key, _show(getattr(expect, key)), "no turn record arrived"))
        else:
            found += _check(key, expect, record.context)
    return found


def _check(key: str, expect: TurnExpectation, context: TurnContext) -> list[Mismatch]:
    wanted = getattr(expect, key)
    if key in ("action", "step", "skipped"):
        return _scenario_detail(key, expect, context)
    if key == "data":
        return _data(expect.data or {}, context)
    got = _read(key, context)
    if isinstance(got, list):
        wanted_ids = [wanted] if key == "scenario" and wanted is not None else wanted
        if key == "scenario":
            same = set(wanted_ids).issubset(got) if wanted_ids else not got
        elif key in ("tools", "failed_tools"):
            same = Counter(wanted_ids) == Counter(got)
        else:
            same = set(wanted_ids) == set(got)
    else:
        same = wanted == got
    return [] if same else [Mismatch(key, _show(wanted), _show(got))]


def _read(key: str, context: TurnContext) -> str | list[str] | None:
    decisions = context.scenario_decisions
    outcome = context.outcome
    readers: dict[str, Callable[[], str | list[str] | None]] = {
        "intent": lambda: context.canonical_intent,
        "scenario": lambda: [d.scenario_id for d in decisions if d.action in _MOVED],
        "paused": lambda: _with_action(decisions, ScenarioAction.PAUSE),
        "cancelled": lambda: _with_action(decisions, ScenarioAction.CANCEL),
        "tools": lambda: sorted(c.tool for c in context.tool_calls),
        "failed_tools": lambda: sorted(c.tool for c in context.tool_calls if not c.success),
        "response_type": lambda: context.plan.response_type if context.plan else None,
        "categories": lambda: list(outcome.categories) if outcome else [],
        "resolution": lambda: outcome.resolution if outcome else None,
        "enforcement": lambda: enforcement_outcome(context),
        "violated": lambda: sorted(
            {v.rule_id for result in context.enforcement for v in result.violations}
        ),
    }
    return readers[key]()


def _with_action(decisions: Sequence[ScenarioDecision], action: ScenarioAction) -> list[str]:
    return [d.scenario_id for d in decisions if d.action is action]


def enforcement_outcome(context: TurnContext) -> str:
    """PASSED, REMEDIATED, FALLBACK, or NONE when P10 recorded nothing (module docstring)."""
    results = context.enforcement
    if not results:
        return "NONE"
    if any(r.fallback_used for r in results):
        return "FALLBACK"
    if results[-1].passed:
        return "PASSED" if len(results) == 1 else "REMEDIATED"
    return "FAILED"


def _scenario_detail(key: str, expect: TurnExpectation, context: TurnContext) -> list[Mismatch]:
    wanted = getattr(expect, key)
    decision = next(
        (
            d
            for d in context.scenario_decisions
            if d.scenario_id == expect.scenario and d.action in _MOVED
        ),
        None,
    )
    if decision is None:
        moved = [f"{d.scenario_id} {d.action.value}" for d in context.scenario_decisions]
        why = f"scenario {expect.scenario} did not move ({_show(moved)})"
        return [Mismatch(key, _show(wanted), why)]
    got: str | list[str] | None
    if key == "action":
        got = decision.action
        same = got == wanted
    elif key == "step":
        got = decision.entered_step_id or decision.from_step_id
        same = got == wanted
    else:
        got = decision.skipped_step_ids
        same = set(wanted) == set(got)
    return [] if same else [Mismatch(key, _show(wanted), _show(got))]


def _phrases(phrases: Sequence[str], text: str, *, present: bool) -> list[Mismatch]:
    folded = text.casefold()
    key = "says" if present else "never_says"
    return [
        Mismatch(key, repr(p), f"{'not in' if present else 'in'} {text!r}")
        for p in phrases
        if (p.casefold() in folded) is not present
    ]


def _data(wanted: dict[str, Scalar], context: TurnContext) -> list[Mismatch]:
    variables = context.customer_data.variables if context.customer_data else {}
    found = []
    for key, value in wanted.items():
        entry = variables.get(key)
        got = json.loads(entry.value) if entry is not None else None
        if not _same_value(value, got):
            found.append(Mismatch(f"data.{key}", _show(value), _show(got)))
    return found


def _same_value(wanted: Scalar, got: object) -> bool:
    if isinstance(wanted, bool) or isinstance(got, bool):
        return wanted is got
    if isinstance(wanted, int | float) and isinstance(got, int | float):
        return float(wanted) == float(got)
    return wanted == got


def _show(value: object) -> str:
    """A value as the author wrote it: enums by value, lists sorted, ``null`` for None."""
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(sorted(_show(v) for v in value)) + "]"
    if isinstance(value, str):
        return getattr(value, "value", value)
    return json.dumps(value) if isinstance(value, bool | int | float) else str(value)
