"""P9 generation: the answer text and its outcome, from the plan.

**Heuristic mode** is strict canned-response composition, so it never says what the pack did
not write:

* each planned template is rendered sentence by sentence with :func:`render`; a sentence
  whose placeholder has no value is left out (templates have no fallback text of their own);
  contributions without a template say their ``text``; ACTION_HINT contributions are guidance
  and are not said;
* sentences containing a ``must_avoid`` phrase are dropped; a ``must_include`` phrase is
  never appended on its own (a bare "Order number." reads as a glitch): the pack's wording
  carries it (a template, a declared response), and an LLM answer is asked for it;
* with enforcement hints (violations of an earlier attempt), a sentence is dropped when the
  violated rule's expression fails on that sentence alone (e.g. the one naming a refund of
  5000); when that cannot fix it (the rule fails on every sentence or has no expression), the
  answer becomes the pack's POLICY_RESTRICTION fallback text, which a retry can pass;
* nothing left to say: ESCALATE says a colleague takes over; REFUSE / SYSTEM_ERROR /
  ANSWER say the matching fallback template (OUT_OF_SCOPE, SYSTEM_ERROR, KNOWLEDGE_GAP).

Categories (besides those passed in, e.g. SYSTEM_ERROR from P7): REFUSE plans carry the
refusal category they were planned for, OUT_OF_SCOPE when none was given; an ANSWER or MIXED
plan with no renderable content is a KNOWLEDGE_GAP; a plan whose contributions ask for an
action (ACTION_HINT) while a tool failed is a CAPABILITY_GAP, and so is a plan that says the
pack's CAPABILITY_GAP fallback (a step blocked on an input the customer may not give, P8).

Resolution: ESCALATE -> REDIRECTED; REFUSE, KNOWLEDGE_GAP, CAPABILITY_GAP or SYSTEM_ERROR ->
UNRESOLVED; ASK / MIXED / CONFIRM, or an answer that lost a sentence -> PARTIAL (the turn
waits on the customer or is incomplete); otherwise RESOLVED.

Channel formatting: markdown is stripped for ``phone`` and ``sms``; ``sms`` is capped at
320 characters and ``whatsapp`` at 1000, cut at a sentence end when possible.

**LLM mode** asks the LLM port for ``{text, categories, resolution}`` (a JSON schema), with
the heuristic draft, the plan and the hints in the prompt; on an LLM failure the heuristic
answer is used. The same must-include and channel rules apply to both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.expression_vars import amount_names, amount_variables
from processors.llm import LlmError, LlmTask
from processors.phases.enforcement import (
    DEFAULT_POLICY_FALLBACK,
    fallback_text,
)
from processors.phases.enforcement import check_rule_expression as check_rule
from processors.phases.planning import CAPABILITY_GAP_TEMPLATE_ID, REFUSAL_CATEGORIES
from schemas.domain.enforcement import Violation
from schemas.domain.outcome import OutcomeCategory, Resolution, TurnOutcome
from schemas.domain.phase import Phase
from schemas.domain.plan import ResponsePlan, ResponseType
from schemas.domain.scenario import ContributionKind
from schemas.domain.usage import TokenUsage
from schemas.pack.agent_pack import AgentPack
from schemas.pack.rules import Rule
from schemas.settings import PhaseSettings, TaskMode

__all__ = ["CHANNEL_LIMITS", "Generation", "format_for_channel", "generate", "render"]

CHANNEL_LIMITS: Mapping[str, int] = {"sms": 320, "whatsapp": 1000}
_PLAIN_CHANNELS = frozenset({"phone", "sms"})
ESCALATION_TEXT = "I'm connecting you with a colleague who can help you further."
_DEFAULT_TEXTS: Mapping[OutcomeCategory, str] = {
    OutcomeCategory.KNOWLEDGE_GAP: "I don't know that for sure and don't want to guess.",
    OutcomeCategory.OUT_OF_SCOPE: "I'm sorry, I can't help with that here.",
    OutcomeCategory.SAFETY_REFUSAL: "I'm sorry, I can't help with that.",
    OutcomeCategory.SYSTEM_ERROR: "Sorry, something went wrong on our side. Please try again.",
    OutcomeCategory.POLICY_RESTRICTION: DEFAULT_POLICY_FALLBACK,
}

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER_SPEC = re.compile(r"^,?(?:\.\d{1,2}f)?$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


class _Missing(Exception):
    """A placeholder without a (usable) value: the sentence is left out."""


@dataclass(frozen=True)
class Generation:
    """What P9 hands to P10; ``llm_error`` says why LLM mode fell back to the heuristic."""

    text: str
    outcome: TurnOutcome
    usage: list[TokenUsage] = field(default_factory=list)
    llm_error: str | None = None


def _display(value: object, spec: str) -> str:
    """A value as a customer reads it; only numeric specs like ``.2f`` or ``,`` apply."""
    if value is None or isinstance(value, dict):
        raise _Missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if spec and _NUMBER_SPEC.match(spec):
            return format(value, spec)
        return str(value)
    if isinstance(value, list):
        return ", ".join(_display(item, "") for item in value)
    return str(value)


def render(sentence: str, variables: Mapping[str, object]) -> str:
    """One pass of ``{name}`` / ``{name:spec}`` substitution. Anything but a plain name
    (``{x.__class__}``, ``{x[0]}``, ``{x!r}``) and any unknown name raise :class:`_Missing`:
    ``str.format`` is never called on a template, so nothing is looked up on a value."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name, _, spec = match.group(1).partition(":")
        if not _NAME.match(name) or name not in variables:
            raise _Missing
        return _display(variables[name], spec)

    if {"{", "}"} & set(_PLACEHOLDER.sub("", sentence)):
        raise _Missing  # a stray or nested brace: not a template we can read safely
    return _PLACEHOLDER.sub(substitute, sentence)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


@dataclass
class _Draft:
    sentences: list[str] = field(default_factory=list)
    planned: int = 0  # sentences the plan asked for
    dropped: int = 0  # of which left out for a missing value


def _compose(plan: ResponsePlan, variables: Mapping[str, object]) -> _Draft:
    draft = _Draft()
    sources = [t.text for t in plan.templates]
    with_template = {t.template_id for t in plan.templates}
    sources += [
        c.text
        for c in plan.contributions
        if c.text
        and c.kind is not ContributionKind.ACTION_HINT
        and (c.template_id is None or c.template_id not in with_template)
    ]
    for source in sources:
        for sentence in _sentences(source):
            draft.planned += 1
            try:
                draft.sentences.append(render(sentence, variables))
            except _Missing:
                draft.dropped += 1
    return draft


def _remediate(
    sentences: list[str],
    hints: Sequence[Violation],
    pack: AgentPack,
    plan: ResponsePlan,
    variables: Mapping[str, object],
) -> list[str] | None:
    """Sentences without those that break a hinted rule; ``None`` when dropping sentences
    cannot fix a violation (the caller then uses the policy fallback)."""
    rules = {r.id: r for r in pack.rules}
    kept = list(sentences)
    kind = plan.response_type.value
    names = amount_names(pack.fields)

    def check_rule_expression(
        rule: Rule, text: str, kind: str, known: Mapping[str, object]
    ) -> str | None:
        """Lane 1 on ``text`` with the pack's own amount variables of that text."""
        return check_rule(rule, text, kind, {**known, **amount_variables(text, names)})

    for hint in hints:
        rule = rules.get(hint.rule_id)
        if rule is None or rule.enforcement_expression is None:
            if rule is not None and any(
                p.lower() in " ".join(kept).lower() for p in rule.must_avoid
            ):
                kept = [s for s in kept if not any(p.lower() in s.lower() for p in rule.must_avoid)]
                continue
            return None
        breaking = [s for s in kept if check_rule_expression(rule, s, kind, variables)]
        if len(breaking) == len(kept) or check_rule_expression(rule, "", kind, variables):
            if check_rule_expression(rule, " ".join(kept), kind, variables) is None:
                continue
            return None
        kept = [s for s in kept if s not in breaking]
        if not kept or check_rule_expression(rule, " ".join(kept), kind, variables):
            return None
    return kept


def _categories(
    plan: ResponsePlan, given: Sequence[OutcomeCategory], empty: bool
) -> list[OutcomeCategory]:
    found = list(dict.fromkeys(given))
    if plan.response_type is ResponseType.REFUSE and not any(
        c in found for c in REFUSAL_CATEGORIES
    ):
        found.append(OutcomeCategory.OUT_OF_SCOPE)
    answering = plan.response_type in (ResponseType.ANSWER, ResponseType.MIXED)
    if empty and answering and OutcomeCategory.SYSTEM_ERROR not in found:
        found.append(OutcomeCategory.KNOWLEDGE_GAP)
    hint = any(c.kind is ContributionKind.ACTION_HINT for c in plan.contributions)
    if hint and OutcomeCategory.SYSTEM_ERROR in found:
        found.append(OutcomeCategory.CAPABILITY_GAP)
    return list(dict.fromkeys(found))


def _resolution(
    plan: ResponsePlan, categories: Sequence[OutcomeCategory], partial: bool
) -> Resolution:
    if plan.response_type is ResponseType.ESCALATE:
        return Resolution.REDIRECTED
    unresolved = {
        OutcomeCategory.KNOWLEDGE_GAP,
        OutcomeCategory.CAPABILITY_GAP,
        OutcomeCategory.SYSTEM_ERROR,
        *REFUSAL_CATEGORIES,
    }
    if plan.response_type is ResponseType.REFUSE or unresolved & set(categories):
        return Resolution.UNRESOLVED
    if partial or plan.response_type is not ResponseType.ANSWER:
        return Resolution.PARTIAL
    return Resolution.RESOLVED


def _avoiding(text: str, plan: ResponsePlan) -> str:
    """``text`` without its sentences that contain a ``must_avoid`` phrase."""
    kept = [s for s in _sentences(text) if not any(p.lower() in s.lower() for p in plan.must_avoid)]
    return " ".join(kept)


_MARKDOWN = (
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"^\s{0,3}(?:#{1,6}|[-*+]|>)\s+", re.MULTILINE), ""),
    (re.compile(r"(\*\*|__|\*|`+|~~)"), ""),
)


def format_for_channel(text: str, channel: str) -> str:
    """Plain text for voice and SMS; a length cap (sentence-aligned) where the channel has one."""
    if channel in _PLAIN_CHANNELS:
        for pattern, replacement in _MARKDOWN:
            text = pattern.sub(replacement, text)
        text = " ".join(text.split())
    limit = CHANNEL_LIMITS.get(channel)
    if limit is None or len(text) <= limit:
        return text
    out = ""
    for sentence in _sentences(text):
        candidate = f"{out} {sentence}".strip()
        if len(candidate) > limit:
            break
        out = candidate
    return out or text[: limit - 1].rstrip() + "…"


def _heuristic(
    plan: ResponsePlan,
    variables: Mapping[str, object],
    pack: AgentPack,
    categories: Sequence[OutcomeCategory],
    hints: Sequence[Violation],
) -> tuple[str, TurnOutcome]:
    draft = _compose(plan, variables)
    sentences = draft.sentences
    capability = {CAPABILITY_GAP_TEMPLATE_ID} | {
        t.id for t in pack.templates if t.fallback_for is OutcomeCategory.CAPABILITY_GAP
    }
    if any(t.template_id in capability for t in plan.templates):
        categories = [*categories, OutcomeCategory.CAPABILITY_GAP]
    found = _categories(plan, categories, empty=not sentences)
    if not sentences:
        if plan.response_type is ResponseType.ESCALATE:
            sentences = [ESCALATION_TEXT]
        else:
            category = next(
                (
                    c
                    for c in (
                        *REFUSAL_CATEGORIES,
                        OutcomeCategory.SYSTEM_ERROR,
                        OutcomeCategory.KNOWLEDGE_GAP,
                    )
                    if c in found
                ),
                OutcomeCategory.KNOWLEDGE_GAP,
            )
            sentences = [fallback_text(pack, category, _DEFAULT_TEXTS[category])]
    text = _avoiding(" ".join(sentences), plan)
    if hints:
        fixed = _remediate(_sentences(text), hints, pack, plan, variables)
        text = (
            _avoiding(" ".join(fixed), plan)
            if fixed
            else fallback_text(pack, OutcomeCategory.POLICY_RESTRICTION, DEFAULT_POLICY_FALLBACK)
        )
    outcome = TurnOutcome(
        categories=found, resolution=_resolution(plan, found, partial=draft.dropped > 0)
    )
    return text, outcome


_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "categories": {
            "type": "array",
            "items": {"type": "string", "enum": [c.value for c in OutcomeCategory]},
            "maxItems": len(OutcomeCategory),
        },
        "resolution": {"type": "string", "enum": [r.value for r in Resolution]},
    },
    "required": ["text", "categories", "resolution"],
    "additionalProperties": False,
}


def _prompt(
    plan: ResponsePlan,
    draft: str,
    variables: Mapping[str, object],
    hints: Sequence[Violation],
    pack: AgentPack,
) -> tuple[str, str]:
    """Prompts without secrets: sensitive customer fields are left out of the variables."""
    sensitive = {f.key for f in pack.fields if f.sensitive}
    shown = {
        k: v
        for k, v in variables.items()
        if k not in sensitive and isinstance(v, str | int | float | bool)
    }
    system = (
        f"You are {pack.agent.name}. {pack.agent.description.strip()} Write the reply to the "
        "customer following the plan. Use only facts from the variables and the draft; never "
        "invent amounts, dates or codes."
    )
    user = json.dumps(
        {
            "plan": plan.model_dump(mode="json"),
            "draft": draft,
            "variables": shown,
            "violations_to_fix": [h.detail for h in hints],
        },
        ensure_ascii=False,
        default=str,
    )
    return system, user


async def generate(
    plan: ResponsePlan,
    variables: Mapping[str, object],
    pack: AgentPack,
    *,
    mode: TaskMode,
    channel: str,
    categories: Sequence[OutcomeCategory] = (),
    hints: Sequence[Violation] = (),
    llm: LlmTask | None = None,
    settings: PhaseSettings | None = None,
) -> Generation:
    """P9: the answer for ``plan`` (see the module docstring); never raises."""
    text, outcome = _heuristic(plan, variables, pack, categories, hints)
    if mode is TaskMode.HEURISTIC or llm is None:
        error = None if mode is TaskMode.HEURISTIC else "llm mode without an LLM port"
        return Generation(format_for_channel(text, channel), outcome, [], error)
    system, user = _prompt(plan, text, variables, hints, pack)
    try:
        result = await llm.complete_json(
            phase=Phase.GENERATION,
            system=system,
            user=user,
            schema_name="reply",
            schema=_SCHEMA,
            settings=settings,
        )
        answer = str(result.data["text"]).strip()
        if not answer:
            raise ValueError("empty text")
        llm_outcome = TurnOutcome(
            categories=[OutcomeCategory(c) for c in dict.fromkeys(result.data["categories"])],
            resolution=Resolution(result.data["resolution"]),
        )
        merged = TurnOutcome(
            categories=list(dict.fromkeys([*categories, *llm_outcome.categories])),
            resolution=llm_outcome.resolution,
        )
    except LlmError as exc:
        return Generation(format_for_channel(text, channel), outcome, exc.usage, str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        error = f"unusable LLM reply: {type(exc).__name__}"
        return Generation(format_for_channel(text, channel), outcome, result.usage, error)
    return Generation(format_for_channel(_avoiding(answer, plan), channel), merged, result.usage)
