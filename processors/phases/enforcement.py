"""P10 enforcement: check an answer against the hard constraints before a customer sees it.

The set checked is the hard constraints of the applied rules **plus every enabled GLOBAL hard
constraint, applied or not**: retrieval may miss a rule, a policy may not.

* Lane 1 (EXPRESSION): ``enforcement_expression`` over customer + session variables and the
  answer's ``response_*`` variables, with :mod:`processors.expressions` (no code execution).
  An expression that cannot be evaluated (ExpressionError, any other error, or more than
  ``expression_timeout_s``) is a violation that says why: a policy we cannot verify is not
  kept. A hard rule's ``must_avoid`` phrases are checked here too.
* Lane 2 (LLM_JUDGE): hard rules without an expression go to the :class:`RuleJudge` port;
  without a judge (heuristic mode) each is recorded as NOT_EVALUATED, never as PASSED.
* Relevance: an optional :class:`RelevanceCheck`, skipped for legitimate refusals (REFUSE
  plans, SAFETY_REFUSAL outcomes).

Decision: PASS when clean; otherwise REGENERATE with the violations as hints while
``attempt < max_attempts``; then FALLBACK: the pack's POLICY_RESTRICTION fallback template and
the POLICY_RESTRICTION category.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol

from processors.expression_vars import amount_names, amount_variables, response_variables
from processors.expressions import CompiledExpression, ExpressionError, holds, parse
from processors.llm import LlmError, LlmTask
from schemas.domain.enforcement import (
    EnforcementLane,
    EnforcementResult,
    JudgeVerdict,
    RuleJudgement,
    Violation,
)
from schemas.domain.outcome import OutcomeCategory, Resolution, TurnOutcome
from schemas.domain.phase import Phase
from schemas.domain.plan import ResponsePlan, ResponseType
from schemas.domain.rules import AppliedRule
from schemas.domain.usage import TokenUsage
from schemas.pack.agent_pack import AgentPack
from schemas.pack.rules import Rule, RuleScope
from schemas.pack.templates import TemplateKind
from schemas.settings import PhaseSettings

__all__ = [
    "DEFAULT_POLICY_FALLBACK",
    "Decision",
    "Enforcement",
    "LlmRuleJudge",
    "RelevanceCheck",
    "RuleJudge",
    "check_rule_expression",
    "constraints_to_check",
    "enforce",
    "fallback_text",
]

DEFAULT_POLICY_FALLBACK = (
    "I'm not able to help with that here, but a colleague can. "
    "Would you like me to connect you with one?"
)
RELEVANCE_RULE_ID = "relevance"


class Decision(StrEnum):
    PASS = "PASS"
    REGENERATE = "REGENERATE"
    FALLBACK = "FALLBACK"


class RuleJudge(Protocol):
    """Lane 2: a verdict per hard rule that has no expression."""

    async def judge(
        self, text: str, rules: Sequence[Rule], variables: Mapping[str, object]
    ) -> list[RuleJudgement]: ...


class RelevanceCheck(Protocol):
    """Optional: ``None`` when the answer addresses the plan, else the reason it does not."""

    async def check(self, text: str, plan: ResponsePlan) -> str | None: ...


@dataclass(frozen=True)
class Enforcement:
    """The recorded result, the decision, the hints for P9, and the text and outcome to send
    (the fallback's when the decision is FALLBACK)."""

    result: EnforcementResult
    decision: Decision
    hints: list[Violation]
    text: str
    outcome: TurnOutcome
    usage: list[TokenUsage] = field(default_factory=list)


@lru_cache(maxsize=1024)
def _compiled(source: str) -> CompiledExpression:
    return parse(source)


def check_rule_expression(
    rule: Rule, text: str, response_type: str | None, variables: Mapping[str, object]
) -> str | None:
    """Lane 1 for one rule: ``None`` when it holds, else why not (never raises)."""
    if rule.enforcement_expression is None:
        return None
    try:
        scope = {**variables, **response_variables(text, response_type)}
    except Exception as exc:  # a policy we cannot evaluate is not kept
        return f"cannot verify ({type(exc).__name__})"
    return _check_in_scope(rule, scope)


def _check_in_scope(rule: Rule, scope: Mapping[str, object]) -> str | None:
    """:func:`check_rule_expression` with the variables and the answer's ``response_*``
    variables already merged (never raises)."""
    if rule.enforcement_expression is None:
        return None
    try:
        expression = _compiled(rule.enforcement_expression)
        if holds(expression, scope):
            return None
        return f"{rule.name or rule.id}: {rule.action_text.strip()}"
    except ExpressionError as exc:
        return f"cannot verify ({exc})"
    except Exception as exc:  # a policy we cannot evaluate is not kept
        return f"cannot verify ({type(exc).__name__})"


EXPRESSION_THREADS = 2
"""Threads of the pool lane 1 runs on (see :func:`_check_expressions`)."""
_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _expression_pool() -> ThreadPoolExecutor:
    """Lane 1's own small pool: not the loop's default executor, which retrieval and other
    blocking calls share (queued behind them, enforcement took 40-74 ms under load)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=EXPRESSION_THREADS, thread_name_prefix="turnstream-enforce"
            )
        return _executor


def _timeout_reason(timeout_s: float) -> str:
    return f"cannot verify (evaluation took over {timeout_s:g} s)"


def _check_all(
    rules: Sequence[Rule],
    text: str,
    response_type: str | None,
    variables: Mapping[str, object],
    timeout_s: float,
    done: list[str | None],
    stop: threading.Event,
) -> None:
    """Lane 1 for every rule of a turn, in one thread hop: appends each rule's reason to
    ``done`` in order. An expression that took more than ``timeout_s`` itself is a
    violation even when it finished; ``stop`` (set when the caller gave up) ends the run
    before the next expression."""
    try:
        scope: Mapping[str, object] = {**variables, **response_variables(text, response_type)}
    except Exception as exc:  # a policy we cannot evaluate is not kept
        done.extend(f"cannot verify ({type(exc).__name__})" for _ in rules)
        return
    for rule in rules:
        if stop.is_set():
            return
        started = time.perf_counter()
        reason = _check_in_scope(rule, scope)
        if time.perf_counter() - started > timeout_s:
            reason = _timeout_reason(timeout_s)
        done.append(reason)


async def _check_expressions(
    rules: Sequence[Rule],
    text: str,
    response_type: str | None,
    variables: Mapping[str, object],
    timeout_s: float,
) -> list[str | None]:
    """Lane 1: one reason (or ``None``) per rule, evaluated off the event loop in one hop to
    :func:`_expression_pool` for the whole turn (not one per expression).

    Each expression keeps its own time limit (measured in the thread); the turn waits at
    most ``timeout_s`` per expression in all, and every rule not evaluated by then is a
    violation ("cannot verify"). Off the loop, a slow pure-Python evaluation cannot stall
    the other turns: the thread gives up the GIL every switch interval."""
    if not rules:
        return []
    done: list[str | None] = []
    stop = threading.Event()
    call = asyncio.get_running_loop().run_in_executor(
        _expression_pool(),
        _check_all,
        rules,
        text,
        response_type,
        variables,
        timeout_s,
        done,
        stop,
    )
    try:
        await asyncio.wait_for(call, timeout_s * len(rules))
    except TimeoutError:
        stop.set()
    finished = list(done)  # the thread may still append one more: read it once
    return finished + [_timeout_reason(timeout_s)] * (len(rules) - len(finished))


def constraints_to_check(pack: AgentPack, applied_rules: Sequence[AppliedRule]) -> list[Rule]:
    """Hard constraints of the applied rules plus every enabled GLOBAL hard constraint."""
    applied = {a.rule_id for a in applied_rules}
    return [
        rule
        for rule in pack.rules
        if rule.enabled
        and rule.is_hard_constraint
        and (rule.id in applied or rule.scope is RuleScope.GLOBAL)
    ]


def fallback_text(pack: AgentPack, category: OutcomeCategory, default: str) -> str:
    """The pack's fallback template for ``category`` (placeholders are not filled: a fallback
    must read well on its own), or ``default``."""
    template = next(
        (
            t
            for t in pack.templates
            if t.kind is TemplateKind.FALLBACK and t.fallback_for is category
        ),
        None,
    )
    if template is None:
        return default
    return " ".join(template.text.replace("{{", "{").replace("}}", "}").split())


async def enforce(
    text: str,
    plan: ResponsePlan,
    applied_rules: Sequence[AppliedRule],
    pack: AgentPack,
    variables: Mapping[str, object],
    *,
    attempt: int,
    max_attempts: int,
    outcome: TurnOutcome,
    judge: RuleJudge | None = None,
    relevance: RelevanceCheck | None = None,
    expression_timeout_s: float = 0.5,
    judge_timeout_s: float = 10.0,
) -> Enforcement:
    """Check one attempt and decide (see the module docstring)."""
    rules = constraints_to_check(pack, applied_rules)
    violations: list[Violation] = []
    with_expression = [rule for rule in rules if rule.enforcement_expression is not None]
    amounts = amount_variables(text, amount_names(pack.fields))
    reasons = await _check_expressions(
        with_expression,
        text,
        plan.response_type.value,
        {**variables, **amounts},
        expression_timeout_s,
    )
    for rule, reason in zip(with_expression, reasons, strict=True):
        if reason is not None:
            violations.append(
                Violation(rule_id=rule.id, lane=EnforcementLane.EXPRESSION, detail=reason)
            )
    lowered = text.lower()
    for rule in rules:
        for phrase in rule.must_avoid:
            if phrase.lower() in lowered:
                detail = f"contains the phrase to avoid: {phrase!r}"
                violations.append(
                    Violation(rule_id=rule.id, lane=EnforcementLane.EXPRESSION, detail=detail)
                )

    judgements = await _judge(
        text,
        [r for r in rules if r.enforcement_expression is None],
        variables,
        judge,
        judge_timeout_s,
    )
    violations += [
        Violation(rule_id=j.rule_id, lane=EnforcementLane.LLM_JUDGE, detail=j.reason or "violated")
        for j in judgements
        if j.verdict is JudgeVerdict.VIOLATED
    ]

    refusal = (
        plan.response_type is ResponseType.REFUSE
        or OutcomeCategory.SAFETY_REFUSAL in outcome.categories
    )
    if relevance is not None and not refusal:
        try:
            reason = await asyncio.wait_for(relevance.check(text, plan), judge_timeout_s)
        except Exception:  # an unavailable check is not a violation of the answer
            reason = None
        if reason is not None:
            violations.append(
                Violation(rule_id=RELEVANCE_RULE_ID, lane=EnforcementLane.RELEVANCE, detail=reason)
            )

    if not violations:
        result = EnforcementResult(attempt=attempt, passed=True, judgements=judgements)
        return Enforcement(result, Decision.PASS, [], text, outcome)
    if attempt < max_attempts:
        result = EnforcementResult(
            attempt=attempt,
            passed=False,
            violations=violations,
            judgements=judgements,
            remediated=True,
        )
        return Enforcement(result, Decision.REGENERATE, violations, text, outcome)
    result = EnforcementResult(
        attempt=attempt,
        passed=False,
        violations=violations,
        judgements=judgements,
        fallback_used=True,
    )
    categories = [c for c in outcome.categories if c is not OutcomeCategory.POLICY_RESTRICTION]
    fallback_outcome = TurnOutcome(
        categories=[*categories, OutcomeCategory.POLICY_RESTRICTION],
        resolution=Resolution.UNRESOLVED,
    )
    fallback = fallback_text(pack, OutcomeCategory.POLICY_RESTRICTION, DEFAULT_POLICY_FALLBACK)
    return Enforcement(result, Decision.FALLBACK, violations, fallback, fallback_outcome)


async def _judge(
    text: str,
    rules: Sequence[Rule],
    variables: Mapping[str, object],
    judge: RuleJudge | None,
    timeout_s: float,
) -> list[RuleJudgement]:
    """Lane 2; a rule the judge did not answer for is NOT_EVALUATED, with the reason."""
    if not rules:
        return []
    if judge is None:
        return [
            RuleJudgement(
                rule_id=r.id,
                verdict=JudgeVerdict.NOT_EVALUATED,
                reason="heuristic mode: no LLM judge",
            )
            for r in rules
        ]
    try:
        answered = await asyncio.wait_for(judge.judge(text, rules, variables), timeout_s)
        reason = "the judge gave no verdict for this rule"
    except TimeoutError:
        answered, reason = [], f"judge timeout after {timeout_s:g} s"
    except Exception as exc:
        answered, reason = [], f"judge failed: {type(exc).__name__}"
    by_id = {j.rule_id: j for j in answered}
    return [
        by_id.get(r.id)
        or RuleJudgement(rule_id=r.id, verdict=JudgeVerdict.NOT_EVALUATED, reason=reason)
        for r in rules
    ]


def _judge_schema(rules: int) -> dict[str, Any]:
    """One verdict per rule judged, at most (``maxItems``); the reason is one sentence, but
    only ``max_tokens`` bounds a string."""
    return {
        "type": "object",
        "properties": {
            "verdicts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "rule_id": {"type": "string"},
                        "verdict": {"type": "string", "enum": ["PASSED", "VIOLATED"]},
                        "reason": {"type": "string"},
                    },
                    "required": ["rule_id", "verdict", "reason"],
                    "additionalProperties": False,
                },
                "maxItems": rules,
            }
        },
        "required": ["verdicts"],
        "additionalProperties": False,
    }


_ID = re.compile(r"^[^\s\x00-\x1f]{1,128}$")


@dataclass
class LlmRuleJudge:
    """:class:`RuleJudge` over the LLM port; usage of the last call is kept in ``usage``.
    Only rule texts and the answer go into the prompt: no customer values."""

    llm: LlmTask
    settings: PhaseSettings | None = None
    """The turn's enforcement settings (model, timeout, judge retries, max_tokens)."""
    usage: list[TokenUsage] = field(default_factory=list)

    async def judge(
        self, text: str, rules: Sequence[Rule], variables: Mapping[str, object]
    ) -> list[RuleJudgement]:
        del variables
        listing = [{"rule_id": r.id, "rule": r.action_text.strip()} for r in rules]
        user = json.dumps({"answer": text, "rules": listing}, ensure_ascii=False)
        try:
            result = await self.llm.complete_json(
                phase=Phase.ENFORCEMENT,
                system=(
                    "You check a customer-service answer against rules. For each rule say "
                    "PASSED if the answer complies, VIOLATED if it breaks the rule, with a "
                    "one-sentence reason."
                ),
                user=user,
                schema_name="rule_verdicts",
                schema=_judge_schema(len(rules)),
                settings=self.settings,
            )
        except LlmError as exc:
            self.usage = exc.usage
            raise
        self.usage = result.usage
        wanted = {r.id for r in rules}
        verdicts: list[RuleJudgement] = []
        for item in result.data.get("verdicts", []):
            if not isinstance(item, dict):
                continue
            rule_id, verdict = item.get("rule_id"), item.get("verdict")
            if rule_id in wanted and verdict in ("PASSED", "VIOLATED") and _ID.match(rule_id):
                reason = str(item.get("reason") or "")[:2000] or None
                verdicts.append(
                    RuleJudgement(rule_id=rule_id, verdict=JudgeVerdict(verdict), reason=reason)
                )
        return verdicts
