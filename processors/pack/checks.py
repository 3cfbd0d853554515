"""Checks across objects and files: duplicates, references, cycles, expressions, hints.

Each check reports at the line of the offending key. References to an object that exists but
failed schema validation are not reported again: its own error says what is wrong.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import pairwise
from typing import Any

from processors.expression_regex import UnsafePatternError, compile_safe
from processors.expression_vars import (
    RESPONSE_PREFIX,
    RESPONSE_VARIABLES,
    SESSION_PREFIX,
    SESSION_VARIABLES,
    amount_names,
)
from processors.expressions import FUNCTIONS, ExpressionError, parse
from processors.pack.collect import ID_KEYS, Collected, Origin, item_model
from processors.pack.errors import PackError, Severity
from processors.pack.graph import cycles, reachable
from processors.pack.yaml_source import resolve, scalar_column
from processors.tool_policy import ToolImportError, ToolPolicy, ToolResolver
from processors.url_guard import refused_before_resolving
from schemas.domain.customer_data import VariableType
from schemas.domain.outcome import OutcomeCategory
from schemas.domain.rules import RelationshipKind
from schemas.pack import (
    SECTION_KEYS,
    CustomerDataField,
    Intent,
    Relationship,
    Rule,
    RuleScope,
    Scenario,
    Step,
    StepKind,
    Template,
    TemplateKind,
    Tool,
    ToolBinding,
)
from schemas.pack.templates import placeholders

_CYCLE_CODES = {
    RelationshipKind.DEPENDS_ON: "dependency_cycle",
    RelationshipKind.SPECIALIZES: "specialization_cycle",
}


def check(
    found: Collected, policy: ToolPolicy | None = None, resolve_tool: ToolResolver | None = None
) -> list[PackError]:
    """Every cross-object problem of ``found``; tool implementations are judged by the
    operator's ``policy``, and not at all without one (the worker judges each call). An
    allowed Python tool must resolve through ``resolve_tool`` when one is given."""
    checker = _Checker(found, policy, resolve_tool)
    runs = (
        checker.duplicates,
        checker.fields,
        checker.rules,
        checker.relationships,
        checker.scenarios,
        checker.templates,
        checker.tools,
        checker.intents,
    )
    return [error for run in runs for error in run()]


class _Checker:
    def __init__(
        self, found: Collected, policy: ToolPolicy | None, resolve_tool: ToolResolver | None
    ) -> None:
        self.found = found
        self.policy = policy
        self.resolve_tool = resolve_tool
        self.ids = {
            section: {SECTION_KEYS[section][1](obj) for obj in objects} | found.broken[section]
            for section, objects in found.objects.items()
        }
        self.section_of = {item_model(section): section for section in SECTION_KEYS}
        self.scenario_steps = {s.id: {step.id for step in s.steps} for _, s in self.each(Scenario)}
        self.template_by_id = {t.id: t for _, t in self.each(Template)}
        field_keys = self.ids["fields"]
        self.condition_names = field_keys | set(SESSION_VARIABLES)
        self.amount_names = set(amount_names(f for _, f in self.each(CustomerDataField)))
        self.enforcement_names = self.condition_names | set(RESPONSE_VARIABLES) | self.amount_names
        tool_outputs = {name for _, tool in self.each(Tool) for name in tool.outputs}
        self.template_names = self.condition_names | tool_outputs

    def complete(self, *sections: str) -> bool:
        """Whether every object of ``sections`` is known: checks that conclude something from
        an absence ("bound nowhere", "no fallback") stay quiet until it is."""
        return not any(s in self.found.unreadable or self.found.broken[s] for s in sections)

    def each(self, model: type[Any]) -> Iterator[tuple[Origin, Any]]:
        """(origin, object) of every valid object of the section holding ``model``."""
        section = self.section_of[model]
        yield from zip(self.found.origins[section], self.found.objects[section], strict=True)

    # -- references -------------------------------------------------------------------------

    def unknown(
        self, origin: Origin, section: str, value: str, *loc: str | int
    ) -> Iterator[PackError]:
        """An error if ``value`` is no id of ``section``, with a did-you-mean hint."""
        if value in self.ids[section] or section in self.found.unreadable:
            return
        kind = SECTION_KEYS[section][0]
        hint = difflib.get_close_matches(value, sorted(self.ids[section]), n=1)
        message = f"unknown {kind} {value!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        yield origin.at(f"unknown_{kind}", message, *loc)

    def bindings(
        self, origin: Origin, bindings: list[ToolBinding], *loc: str | int
    ) -> Iterator[PackError]:
        for index, binding in enumerate(bindings):
            yield from self.unknown(origin, "tools", binding.tool_id, *loc, index, "tool_id")

    def expression(
        self, origin: Origin, source: str, names: set[str], *loc: str | int
    ) -> Iterator[PackError]:
        """Parse errors (with the column inside the YAML line) and names nobody provides."""
        try:
            compiled = parse(source)
        except ExpressionError as exc:
            line, column, node = resolve(origin.node, loc)
            exact = scalar_column(node, exc.column)
            yield PackError(origin.file, line, "expression_syntax", exc.message, exact or column)
            return
        if "fields" in self.found.unreadable:  # broken fields are known by key already
            return
        for name in sorted(compiled.names - names):
            if name in RESPONSE_VARIABLES:
                message = f"{name!r}: response variables exist only in enforcement expressions"
            else:
                hint = difflib.get_close_matches(name, sorted(names), n=1)
                message = (
                    f"unknown name {name!r}: not a customer field, session_* or response_* "
                    "variable" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                )
            yield origin.at("unknown_name", message, *loc)

    # -- per section ------------------------------------------------------------------------

    def duplicates(self) -> Iterator[PackError]:
        for section, (prefix, key_of) in SECTION_KEYS.items():
            loc = (ID_KEYS.get(section, "id"),)
            pairs = zip(self.found.origins[section], self.found.objects[section], strict=True)
            yield from _repeated(((key_of(obj), origin, loc) for origin, obj in pairs), prefix)
        for origin, scenario in self.each(Scenario):
            steps = [(s.id, origin, ("steps", i, "id")) for i, s in enumerate(scenario.steps)]
            yield from _repeated(steps, "step", f" in scenario {scenario.id!r}")

    def fields(self) -> Iterator[PackError]:
        field: CustomerDataField
        for origin, field in self.each(CustomerDataField):
            if field.key.startswith((SESSION_PREFIX, RESPONSE_PREFIX)) or field.key in FUNCTIONS:
                message = (
                    f"field key {field.key!r} is reserved: keys may not start with "
                    f"{SESSION_PREFIX!r} or {RESPONSE_PREFIX!r} nor be a function name"
                )
                yield origin.at("reserved_name", message, "key")
            if field.amount_terms and f"{RESPONSE_PREFIX}{field.key}" in RESPONSE_VARIABLES:
                message = f"response_{field.key} is a built-in response variable: rename the field"
                yield origin.at("reserved_name", message, "amount_terms")
            for index, pattern in enumerate(field.extraction.patterns):
                try:
                    compile_safe(pattern)
                except UnsafePatternError as exc:
                    yield origin.at("unsafe_pattern", str(exc), "extraction", "patterns", index)

    def rules(self) -> Iterator[PackError]:
        rule: Rule
        for origin, rule in self.each(Rule):
            if rule.scope is not RuleScope.GLOBAL and rule.scenario_id:
                yield from self.unknown(origin, "scenarios", rule.scenario_id, "scope_id")
                steps = self.scenario_steps.get(rule.scenario_id)
                if rule.step_id and steps is not None and rule.step_id not in steps:
                    message = f"unknown step {rule.step_id!r} in scenario {rule.scenario_id!r}"
                    yield origin.at("unknown_step", message, "scope_id")
            yield from self.bindings(origin, rule.tool_bindings, "tool_bindings")
            if rule.enforcement_expression is not None:
                yield from self.expression(
                    origin,
                    rule.enforcement_expression,
                    self.enforcement_names,
                    "enforcement_expression",
                )
                if not rule.is_hard_constraint:
                    message = "only hard constraints are enforced; this expression is never used"
                    yield origin.at(
                        "unused_expression",
                        message,
                        "enforcement_expression",
                        severity=Severity.WARNING,
                    )
            elif rule.is_hard_constraint:
                message = f"hard constraint {rule.id!r} has no expression: the LLM judge checks it"
                yield origin.at("llm_judged", message, "is_hard_constraint", severity=Severity.INFO)

    def relationships(self) -> Iterator[PackError]:
        by_kind: dict[RelationshipKind, dict[str, list[str]]] = defaultdict(dict)
        where: dict[tuple[RelationshipKind, str, str], Origin] = {}
        linked: set[tuple[str, str]] = set()
        rel: Relationship
        for origin, rel in self.each(Relationship):
            yield from self.unknown(origin, "rules", rel.source, "source")
            yield from self.unknown(origin, "rules", rel.target, "target")
            by_kind[rel.kind].setdefault(rel.source, []).append(rel.target)
            where.setdefault((rel.kind, rel.source, rel.target), origin)
            if rel.kind in (RelationshipKind.DEPENDS_ON, RelationshipKind.IMPLIES):
                linked.add((rel.source, rel.target))
        for kind, code in _CYCLE_CODES.items():
            for cycle in cycles(by_kind[kind]):
                message = f"{kind} cycle: {' -> '.join(cycle)}"
                # at the edge written last: usually the one that closed the cycle
                edges = [where[kind, a, b].at(code, message, "target") for a, b in pairwise(cycle)]
                yield max(edges, key=lambda error: (error.file, error.line))
        for origin, rel in self.each(Relationship):
            pair = (rel.source, rel.target)
            if rel.kind is RelationshipKind.EXCLUDES and (pair in linked or pair[::-1] in linked):
                message = f"{rel.source!r} excludes {rel.target!r} but one needs the other"
                yield origin.at("conflicting_relationship", message, "kind")

    def scenarios(self) -> Iterator[PackError]:
        scenario: Scenario
        for origin, scenario in self.each(Scenario):
            steps = self.scenario_steps[scenario.id]
            for index, intent in enumerate(scenario.entry_intents):
                yield from self.unknown(origin, "intents", intent, "entry_intents", index)
            if scenario.entry_step_id not in steps:
                message = f"entry step {scenario.entry_step_id!r} is not a step of this scenario"
                yield origin.at("unknown_step", message, "entry_step_id")
            for index, step in enumerate(scenario.steps):
                yield from self.step(origin, step, ("steps", index))
            for index, transition in enumerate(scenario.transitions):
                loc = ("transitions", index)
                for key in ("from_step", "to_step"):
                    if getattr(transition, key) not in steps:
                        step_id = getattr(transition, key)
                        message = f"unknown step {step_id!r} in scenario {scenario.id!r}"
                        yield origin.at("unknown_step", message, *loc, key)
                if transition.on_intent is not None:
                    yield from self.unknown(
                        origin, "intents", transition.on_intent, *loc, "on_intent"
                    )
                if transition.condition is not None:
                    yield from self.expression(
                        origin, transition.condition, self.condition_names, *loc, "condition"
                    )
            if all({t.from_step, t.to_step} <= steps for t in scenario.transitions):
                yield from self.unreachable(origin, scenario)

    def step(self, origin: Origin, step: Step, loc: tuple[str, int]) -> Iterator[PackError]:
        if step.template_id is not None:
            yield from self.unknown(origin, "templates", step.template_id, *loc, "template_id")
            template = self.template_by_id.get(step.template_id)
            if template is not None and template.kind is not TemplateKind.RESPONSE:
                message = f"template {step.template_id!r} is a FALLBACK template"
                yield origin.at("wrong_template_kind", message, *loc, "template_id")
            if (
                template is not None
                and self.confirms(step)
                and not (set(template.placeholder_names) - set(step.collects))
            ):
                message = (
                    f"confirmation step {step.id!r}: its template names no value, so the "
                    "customer is asked to confirm without being told what"
                )
                yield origin.at(
                    "unnamed_confirmation", message, *loc, "template_id", severity=Severity.WARNING
                )
        for index, key in enumerate(step.collects):
            yield from self.unknown(origin, "fields", key, *loc, "collects", index)
        for index, rule_id in enumerate(step.rule_ids):
            yield from self.unknown(origin, "rules", rule_id, *loc, "rule_ids", index)
        yield from self.bindings(origin, step.tool_bindings, *loc, "tool_bindings")
        if step.completion_condition is not None:
            yield from self.expression(
                origin,
                step.completion_condition,
                self.condition_names,
                *loc,
                "completion_condition",
            )

    def confirms(self, step: Step) -> bool:
        """A QUESTION step that collects only BOOLEAN fields: a yes/no confirmation."""
        types = {f.key: f.type for _, f in self.each(CustomerDataField)}
        return step.kind is StepKind.QUESTION and all(
            types.get(key) is VariableType.BOOLEAN for key in step.collects
        )

    def unreachable(self, origin: Origin, scenario: Scenario) -> Iterator[PackError]:
        """A warning, not an error: the pack still works, but the step can never run. Only
        checked when every transition is valid: a broken one says enough."""
        edges: dict[str, list[str]] = defaultdict(list)
        for transition in scenario.transitions:
            edges[transition.from_step].append(transition.to_step)
        seen = reachable(scenario.entry_step_id, edges)
        for index, step in enumerate(scenario.steps):
            if step.id not in seen:
                message = f"step {step.id!r} cannot be reached from {scenario.entry_step_id!r}"
                yield origin.at(
                    "unreachable_step", message, "steps", index, "id", severity=Severity.WARNING
                )

    def templates(self) -> Iterator[PackError]:
        template: Template
        known = "fields" not in self.found.unreadable and self.complete("tools")
        for origin, template in self.each(Template):
            for name in placeholders(template.text) if known else []:
                if name not in self.template_names:
                    message = (
                        f"placeholder {{{name}}} is not a customer field, tool output or "
                        "session variable"
                    )
                    yield origin.at("unknown_placeholder", message, "text")
        agent = self.found.agent
        resume = agent.dialogue.resume_template_id if agent is not None else None
        template_ids = self.ids["templates"]
        if resume is not None and self.complete("templates") and resume not in template_ids:
            message = f"dialogue.resume_template_id: unknown template {resume!r}"
            yield PackError("agent.yaml", 0, "unknown_template", message)
        has_hard = any(rule.is_hard_constraint for _, rule in self.each(Rule))
        covered = {t.fallback_for for _, t in self.each(Template)}
        if (
            has_hard
            and self.complete("templates")
            and (OutcomeCategory.POLICY_RESTRICTION not in covered)
        ):
            message = "hard constraints but no FALLBACK template for POLICY_RESTRICTION"
            yield PackError(
                "templates.yaml", 0, "missing_fallback", message, severity=Severity.WARNING
            )

    def tools(self) -> Iterator[PackError]:
        bound = {b.tool_id for _, rule in self.each(Rule) for b in rule.tool_bindings} | {
            b.tool_id
            for _, s in self.each(Scenario)
            for step in s.steps
            for b in step.tool_bindings
        }
        tool: Tool
        for origin, tool in self.each(Tool):
            if tool.id not in bound and self.complete("rules", "scenarios"):
                message = f"tool {tool.id!r} is bound to no rule or step, so it never runs"
                yield origin.at("unused_tool", message, "id", severity=Severity.WARNING)
            for name in tool.required_inputs:
                if name not in self.ids["fields"]:
                    message = f"required input {name!r} is not a customer field P7 could fill"
                    yield origin.at(
                        "unfilled_input", message, "input_schema", severity=Severity.WARNING
                    )
            yield from self.implementation(origin, tool)

    def implementation(self, origin: Origin, tool: Tool) -> Iterator[PackError]:
        """A Python tool names an allowed module and resolves to a callable through
        ``resolve_tool`` (asked only when the module is allowed); an HTTP tool's URL is not
        refused by the SSRF policy as far as it can be judged without resolving the name (the
        call checks the rest)."""
        if self.policy is None:
            return
        python, http = tool.implementation.python, tool.implementation.http
        if python is not None:
            refusal = self.policy.python_refusal(python)
            if refusal is not None:
                yield origin.at("tool_not_allowed", refusal, "implementation", "python")
                return
            if self.resolve_tool is None:
                return
            try:
                self.resolve_tool(python)
            except ToolImportError as exc:
                yield origin.at("unresolved_tool", str(exc), "implementation", "python")
        elif http is not None:
            refused = refused_before_resolving(
                str(http.url), allow_private=self.policy.allow_private_http
            )
            if refused is not None:
                message = f"HTTP tool target refused: {refused}"
                yield origin.at("refused_url", message, "implementation", "http", "url")

    def intents(self) -> Iterator[PackError]:
        """An intent's response template exists; the same example under two intents makes
        intent retrieval a coin toss."""
        owner: dict[str, str] = {}
        intent: Intent
        for origin, intent in self.each(Intent):
            if intent.response_template_id is not None:
                yield from self.unknown(
                    origin, "templates", intent.response_template_id, "response_template_id"
                )
            for index, example in enumerate(intent.examples):
                normal = " ".join(example.lower().split())
                other = owner.setdefault(normal, intent.id)
                if other != intent.id:
                    message = f"example {example!r} is also an example of intent {other!r}"
                    yield origin.at(
                        "ambiguous_example", message, "examples", index, severity=Severity.WARNING
                    )


def _repeated(
    entries: Iterable[tuple[str, Origin, tuple[str | int, ...]]], what: str, where: str = ""
) -> Iterator[PackError]:
    """An error at every repetition of a key, naming where it was first defined."""
    first: dict[str, PackError] = {}
    for key, origin, loc in entries:
        here = origin.at("duplicate_id", f"duplicate {what} {key!r}{where}", *loc)
        if key in first:
            yield replace(
                here, message=f"{here.message} (first at {first[key].file}:{first[key].line})"
            )
        else:
            first[key] = here
