"""P5 rule selection: from retrieved candidates to the rules that apply to this turn.

Why this order (DESIGN.md section 2): cheap, certain checks first; the filter (an LLM call
in LLM mode) only sees rules that could apply at all; relationships expand the *filtered*
set, so a rule the filter rejected never pulls others in.

1. **Pre-filter** each candidate: unknown rule, ``enabled: false``, scope (GLOBAL always;
   SCENARIO when its scenario is active; STEP when that scenario's current step is the rule's
   step), cooldown (``turn - last_fired_turn <= cooldown_turns`` drops it), max fires
   (``fire_count >= max_fires_per_session`` drops it). The turn number is
   ``session.turn_count + 1`` (P1 does not count the turn; P11 does).
2. **Filter**: in LLM mode the LLM gives a verdict per rule (a missing verdict counts as
   UNSURE): :func:`select_rules_async` asks the LLM port once for all eligible rules (schema
   :data:`FILTER_SCHEMA_NAME`; the prompt holds the customer's message and each rule's
   ``condition_text``, no customer data and no scores). Without a filter, in heuristic mode,
   or when the LLM call fails or its reply breaks the schema (recorded in ``llm_error`` and
   in the FILTER trace), the score bands of :class:`ScoreBands` decide:
   ``score >= applies`` APPLIES, ``>= unsure`` UNSURE, else NOT_RELATED. APPLIES and UNSURE
   are kept; NOT_RELATED is dropped. A disabled phase skips this step (every pre-filtered
   rule APPLIES).
3. **Expansion** over the pack's relationships, to a fixed point:
   IMPLIES adds the target; DEPENDS_ON adds the target, and the source is dropped when its
   target cannot be added (it fails the pre-filter); EXCLUDES keeps the higher-priority rule
   of the two (equal priority: the higher score, then the source); SPECIALIZES drops the
   general rule (the target) when the specialized one is selected; RELATED is only recorded.
   A rule added by a relationship whose origin is later dropped is dropped too. Rules added by
   expansion must pass the pre-filter, count as APPLIES, and take their own retrieval score
   when they were candidates, else their origin's.

Every decision is recorded in :attr:`RuleSelection.trace`. The result is ordered by
priority, then score (both descending), then id.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from processors.llm import LlmError, LlmTask, strict_object
from processors.retrieval.model import Retrieved
from schemas.domain.phase import Phase
from schemas.domain.rules import AppliedRule, RelationshipKind, RuleVerdict
from schemas.domain.session import RuleFires, ScenarioStatus, SessionState
from schemas.domain.usage import TokenUsage
from schemas.pack.agent_pack import AgentPack
from schemas.pack.rules import Rule, RuleScope
from schemas.settings import PhaseSettings, TaskMode

__all__ = [
    "FILTER_SCHEMA_NAME",
    "RuleSelection",
    "RuleTrace",
    "ScenarioScope",
    "ScoreBands",
    "Stage",
    "prefilter_reason",
    "record_fires",
    "select_rules_async",
]


class Stage(StrEnum):
    PREFILTER = "prefilter"
    FILTER = "filter"
    EXPANSION = "expansion"


@dataclass(frozen=True)
class RuleTrace:
    """Why a rule was kept or dropped at one stage (``related_to`` for RELATED notes)."""

    rule_id: str
    stage: Stage
    kept: bool
    reason: str


@dataclass(frozen=True)
class ScoreBands:
    """The heuristic filter: verdict by retrieval score (weighted-sum fusion scale)."""

    applies: float = 0.45
    unsure: float = 0.25

    def __call__(self, rules: Sequence[tuple[Rule, float]]) -> Mapping[str, RuleVerdict]:
        return {
            rule.id: (
                RuleVerdict.APPLIES
                if score >= self.applies
                else RuleVerdict.UNSURE
                if score >= self.unsure
                else RuleVerdict.NOT_RELATED
            )
            for rule, score in rules
        }


@dataclass(frozen=True)
class ScenarioScope:
    """Which scenarios and steps are active: what SCENARIO and STEP rules are scoped to."""

    scenarios: frozenset[str] = frozenset()
    steps: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, session: SessionState) -> ScenarioScope:
        active = [s for s in session.scenarios if s.status is ScenarioStatus.ACTIVE]
        return cls(
            frozenset(s.scenario_id for s in active),
            frozenset((s.scenario_id, s.current_step_id) for s in active),
        )


@dataclass(frozen=True)
class RuleSelection:
    """The applied rules in order; ``usage`` and ``llm_error`` come from the LLM filter."""

    applied: list[AppliedRule]
    trace: list[RuleTrace] = field(default_factory=list)
    usage: list[TokenUsage] = field(default_factory=list)
    llm_error: str | None = None

    @property
    def rule_ids(self) -> list[str]:
        return [rule.rule_id for rule in self.applied]


def prefilter_reason(
    rule: Rule, session: SessionState, scope: ScenarioScope, turn: int
) -> str | None:
    """Why ``rule`` cannot apply this turn, or None when it can."""
    if not rule.enabled:
        return "disabled"
    if rule.scope is RuleScope.SCENARIO and rule.scenario_id not in scope.scenarios:
        return f"scenario {rule.scenario_id} not active"
    if rule.scope is RuleScope.STEP and (rule.scenario_id, rule.step_id) not in scope.steps:
        return f"step {rule.scope_id} not current"
    fires = session.rule_fires.get(rule.id)
    if fires is not None:
        if rule.max_fires_per_session is not None and (
            fires.fire_count >= rule.max_fires_per_session
        ):
            return f"fired {fires.fire_count} times (max {rule.max_fires_per_session})"
        if rule.cooldown_turns and turn - fires.last_fired_turn <= rule.cooldown_turns:
            return f"cooldown: fired at turn {fires.last_fired_turn}"
    return None


@dataclass
class _Eligible:
    """What the pre-filter leaves, with what the later stages need to finish the selection."""

    rules: dict[str, Rule]
    scope: ScenarioScope
    turn: int
    scores: dict[str, float]
    eligible: list[tuple[Rule, float]]
    trace: list[RuleTrace]


def _prefilter(
    candidates: Sequence[Retrieved],
    pack: AgentPack,
    session: SessionState,
    scope: ScenarioScope | None,
) -> _Eligible:
    scope = scope if scope is not None else ScenarioScope.of(session)
    rules = {rule.id: rule for rule in pack.rules}
    turn = session.turn_count + 1
    trace: list[RuleTrace] = []
    scores: dict[str, float] = {}
    for candidate in candidates:
        scores.setdefault(candidate.object_id, candidate.score)
    eligible: list[tuple[Rule, float]] = []
    for rule_id, score in scores.items():
        rule = rules.get(rule_id)
        reason = "unknown rule" if rule is None else prefilter_reason(rule, session, scope, turn)
        if rule is None or reason is not None:
            trace.append(RuleTrace(rule_id, Stage.PREFILTER, False, reason or ""))
            continue
        trace.append(RuleTrace(rule_id, Stage.PREFILTER, True, "eligible"))
        eligible.append((rule, score))
    return _Eligible(rules, scope, turn, scores, eligible, trace)


def _finish(
    found: _Eligible,
    pack: AgentPack,
    session: SessionState,
    answers: Mapping[str, RuleVerdict],
    how: str,
    usage: list[TokenUsage] | None = None,
    llm_error: str | None = None,
) -> RuleSelection:
    """The filter's ``answers`` recorded (a missing one is UNSURE), expansion, order."""
    verdicts: dict[str, RuleVerdict] = {}
    for rule, score in found.eligible:
        verdict = verdicts[rule.id] = answers.get(rule.id, RuleVerdict.UNSURE)
        kept = verdict is not RuleVerdict.NOT_RELATED
        found.trace.append(
            RuleTrace(rule.id, Stage.FILTER, kept, f"{how}: {verdict} ({score:.3f})")
        )
    selected: dict[str, AppliedRule] = {
        rule.id: AppliedRule(rule_id=rule.id, score=score, verdict=verdicts[rule.id])
        for rule, score in found.eligible
        if verdicts[rule.id] is not RuleVerdict.NOT_RELATED
    }
    rules = found.rules
    _expand(selected, rules, pack, session, found.scope, found.turn, found.scores, found.trace)
    ordered = sorted(
        selected.values(), key=lambda a: (-rules[a.rule_id].priority, -a.score, a.rule_id)
    )
    return RuleSelection(ordered, found.trace, usage or [], llm_error)


def _disabled(found: _Eligible, pack: AgentPack, session: SessionState) -> RuleSelection:
    """A disabled phase has no filter: every pre-filtered rule APPLIES."""
    applies = {rule.id: RuleVerdict.APPLIES for rule, _ in found.eligible}
    return _finish(found, pack, session, applies, "phase disabled")


async def select_rules_async(
    candidates: Sequence[Retrieved],
    pack: AgentPack,
    session: SessionState,
    scope: ScenarioScope | None = None,
    settings: PhaseSettings | None = None,
    llm: LlmTask | None = None,
    *,
    message: str,
    bands: ScoreBands | None = None,
) -> RuleSelection:
    """P5 with the LLM port as the filter in LLM mode: one call for all eligible rules, the
    score bands when it fails (the reason in ``llm_error`` and in each FILTER trace)."""
    settings = settings or PhaseSettings()
    found = _prefilter(candidates, pack, session, scope)
    if not settings.enabled:
        return _disabled(found, pack, session)
    fallback = bands or ScoreBands()
    if settings.mode is TaskMode.HEURISTIC or not found.eligible:
        return _finish(found, pack, session, fallback(found.eligible), "score bands")
    answers, usage, error = await _ask_filter(llm, message, found.eligible, settings)
    if answers is None:
        how = f"score bands (llm filter failed: {error})"
        return _finish(found, pack, session, fallback(found.eligible), how, usage, error)
    return _finish(found, pack, session, answers, "llm filter", usage)


async def _ask_filter(
    llm: LlmTask | None,
    message: str,
    eligible: Sequence[tuple[Rule, float]],
    settings: PhaseSettings,
) -> tuple[dict[str, RuleVerdict] | None, list[TokenUsage], str | None]:
    """The LLM's verdicts with their usage, or None and why they cannot be used."""
    if llm is None:
        return None, [], "llm mode without an LLM port"
    try:
        result = await llm.complete_json(
            phase=Phase.RULE_SELECTION,
            system=_FILTER_SYSTEM,
            user=_filter_prompt(message, eligible),
            schema_name=FILTER_SCHEMA_NAME,
            schema=_filter_schema(len(eligible)),
            settings=settings,
        )
    except LlmError as exc:
        return None, exc.usage, str(exc)
    try:
        answers = _read_verdicts(result.data, {rule.id for rule, _ in eligible})
    except ValueError as exc:
        return None, result.usage, f"unusable LLM reply: {exc}"
    return answers, result.usage, None


FILTER_SCHEMA_NAME = "rule_filter_verdicts"
_VERDICTS = tuple(verdict.value for verdict in RuleVerdict)


def _filter_schema(rules: int) -> dict[str, Any]:
    """One verdict per rule asked about, at most (``maxItems``)."""
    return strict_object(
        verdicts={
            "type": "array",
            "items": strict_object(
                rule_id={"type": "string"}, verdict={"type": "string", "enum": list(_VERDICTS)}
            ),
            "maxItems": rules,
        }
    )


_FILTER_SYSTEM = (
    "You decide which of a customer-service agent's rules apply to the customer's latest "
    "message. For each rule, answer APPLIES when its condition holds for this message, "
    "NOT_RELATED when it does not, and UNSURE when the message does not tell."
)


def _filter_prompt(message: str, eligible: Sequence[tuple[Rule, float]]) -> str:
    """The message and each rule's condition: no customer data, no scores (they would bias)."""
    rules = [{"rule_id": rule.id, "condition": rule.condition_text.strip()} for rule, _ in eligible]
    return json.dumps({"message": message, "rules": rules}, ensure_ascii=False)


def _read_verdicts(data: Mapping[str, Any], asked: Collection[str]) -> dict[str, RuleVerdict]:
    """Verdicts for the rules asked about; a reply that breaks the schema raises ValueError
    (its content is not repeated), ids that were not asked about are ignored."""
    items = data.get("verdicts")
    if not isinstance(items, list):
        raise ValueError("verdicts is not a list")
    answers: dict[str, RuleVerdict] = {}
    for item in items:
        rule_id = item.get("rule_id") if isinstance(item, dict) else None
        verdict = item.get("verdict") if isinstance(item, dict) else None
        if not isinstance(rule_id, str) or verdict not in _VERDICTS:
            raise ValueError("a verdict is not {rule_id, verdict}")
        if rule_id in asked:
            answers.setdefault(rule_id, RuleVerdict(verdict))
    return answers


def _expand(
    selected: dict[str, AppliedRule],
    rules: Mapping[str, Rule],
    pack: AgentPack,
    session: SessionState,
    scope: ScenarioScope,
    turn: int,
    scores: Mapping[str, float],
    trace: list[RuleTrace],
) -> None:
    """Grow and prune ``selected`` in place until nothing changes (module docstring)."""
    relationships = [r for r in pack.relationships if r.source in rules and r.target in rules]
    removed: set[str] = set()
    noted: set[tuple[str, str]] = set()

    def drop(rule_id: str, reason: str) -> None:
        if rule_id in selected:
            del selected[rule_id]
            removed.add(rule_id)
            trace.append(RuleTrace(rule_id, Stage.EXPANSION, False, reason))

    def add(rule_id: str, kind: RelationshipKind, via: str) -> bool:
        """Whether ``rule_id`` is selected after trying to add it."""
        if rule_id in selected:
            return True
        if rule_id in removed:
            return False
        reason = prefilter_reason(rules[rule_id], session, scope, turn)
        if reason is not None:
            trace.append(RuleTrace(rule_id, Stage.EXPANSION, False, f"{kind} from {via}: {reason}"))
            removed.add(rule_id)
            return False
        selected[rule_id] = AppliedRule(
            rule_id=rule_id,
            score=scores.get(rule_id, selected[via].score),
            verdict=RuleVerdict.APPLIES,
            via_relationship=kind,
            via_rule_id=via,
        )
        trace.append(RuleTrace(rule_id, Stage.EXPANSION, True, f"{kind} from {via}"))
        return True

    for _ in range(4 * len(rules) + 4):  # each pass adds or removes a rule, or stops
        before = (frozenset(selected), frozenset(removed))
        for rel in relationships:
            if rel.source not in selected:
                continue
            if rel.kind is RelationshipKind.IMPLIES:
                add(rel.target, rel.kind, rel.source)
            elif rel.kind is RelationshipKind.DEPENDS_ON and not add(
                rel.target, rel.kind, rel.source
            ):
                drop(rel.source, f"depends on {rel.target}, which cannot apply")
            elif rel.kind is RelationshipKind.EXCLUDES and rel.target in selected:
                loser = _loser(selected, rules, rel.source, rel.target)
                winner = rel.target if loser == rel.source else rel.source
                drop(loser, f"excluded by {winner} (higher priority)")
            elif rel.kind is RelationshipKind.SPECIALIZES and rel.target in selected:
                drop(rel.target, f"superseded by the specialized rule {rel.source}")
            elif rel.kind is RelationshipKind.RELATED and (rel.source, rel.target) not in noted:
                noted.add((rel.source, rel.target))
                trace.append(
                    RuleTrace(
                        rel.target,
                        Stage.EXPANSION,
                        rel.target in selected,
                        f"related to {rel.source} (recorded only)",
                    )
                )
        for applied in list(selected.values()):
            if applied.via_rule_id is not None and applied.via_rule_id not in selected:
                drop(applied.rule_id, f"its origin {applied.via_rule_id} was dropped")
        if (frozenset(selected), frozenset(removed)) == before:
            return


def _loser(
    selected: Mapping[str, AppliedRule], rules: Mapping[str, Rule], source: str, target: str
) -> str:
    def strength(rule_id: str) -> tuple[int, float, int]:
        return (rules[rule_id].priority, selected[rule_id].score, rule_id == source)

    return source if strength(source) < strength(target) else target


def record_fires(
    session: SessionState, applied: Sequence[AppliedRule], turn: int | None = None
) -> SessionState:
    """The session with this turn's applied rules counted (what P11 persists); ``turn``
    defaults to ``session.turn_count + 1``."""
    turn = session.turn_count + 1 if turn is None else turn
    fires = dict(session.rule_fires)
    for rule in applied:
        old = fires.get(rule.rule_id)
        fires[rule.rule_id] = RuleFires(
            fire_count=(old.fire_count if old else 0) + 1, last_fired_turn=turn
        )
    return session.model_copy(update={"rule_fires": fires})
