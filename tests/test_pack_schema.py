"""The pack models on their own: hashes, overrides, and the rules each model keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from processors.pack import Severity, check_pack
from schemas.pack import (
    AgentPack,
    AgentSettings,
    CustomerDataField,
    Rule,
    Template,
    Tool,
    WebhookSubscription,
)
from sinks.pack_files import load_pack, validate_pack
from streams.settings import Settings, TaskMode
from tests.test_pack_validate import EXAMPLE, copy_pack


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(EXAMPLE)


def test_hashes_ignore_the_order_of_objects(pack: AgentPack) -> None:
    shuffled = pack.model_copy(
        update={"rules": pack.rules[::-1], "scenarios": pack.scenarios[::-1]}
    )
    assert shuffled.content_hash() == pack.content_hash()
    assert shuffled.object_hashes() == pack.object_hashes()


def test_one_changed_rule_changes_one_object_hash(pack: AgentPack) -> None:
    rules = [
        rule.model_copy(update={"condition_text": "Any chat at all."})
        if rule.id == "be_polite"
        else rule
        for rule in pack.rules
    ]
    changed = pack.model_copy(update={"rules": rules})
    before, after = pack.object_hashes(), changed.object_hashes()
    assert {key for key in before if before[key] != after[key]} == {"rule:be_polite"}
    assert changed.content_hash() != pack.content_hash()


def test_object_hash_keys(pack: AgentPack) -> None:
    keys = pack.object_hashes()
    assert "agent" in keys
    assert {
        "rule:refund_within_tier_limit",
        "intent:refund_request",
        "scenario:refund",
        "tool:lookup_order",
        "field:order_id",
        "template:policy_fallback",
        "webhook:crm_sync",
        "glossary:RMA",
    } <= set(keys)
    assert "relationship:damaged_items_90_days:SPECIALIZES:return_window_30_days" in keys
    assert len(pack.content_hash()) == 64


def test_json_round_trip_keeps_content_and_overrides(pack: AgentPack) -> None:
    again = AgentPack.model_validate_json(pack.canonical_json())
    assert again.content_hash() == pack.content_hash()
    assert again.agent.phases.model_dump(exclude_unset=True) == {
        "generation": {"timeout_s": 8},
        "enforcement": {"regenerations": 2},
    }
    assert [p for p in check_pack(again) if p.severity is not Severity.INFO] == []


def test_overrides_apply_over_the_process_settings(pack: AgentPack) -> None:
    base = Settings(phases={"generation": {"mode": "llm"}})
    merged = pack.agent.apply_to(base)
    assert merged.phases.generation.timeout_s == 8
    assert merged.phases.generation.mode is TaskMode.LLM  # kept from the process
    assert merged.phases.enforcement.regenerations == 2
    assert merged.retrieval.memories.max_k == 3
    assert merged.retrieval.memories.strategy is base.retrieval.memories.strategy
    assert merged.retrieval.rules == base.retrieval.rules
    assert base.phases.generation.timeout_s == 10.0  # the original is untouched


@pytest.mark.parametrize(
    ("override", "loc"),
    [
        ({"phases": {"sensor": {"mode": "magic"}}}, ("phases", "sensor", "mode")),
        ({"phases": {"sensr": {}}}, ("phases", "sensr")),
        ({"retrieval": {"rules": {"min_k": 9, "max_k": 3}}}, ("retrieval", "rules")),
    ],
)
def test_invalid_overrides_are_refused(override: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        AgentSettings(tenant_id="t", agent_id="a", name="n", **override)
    assert caught.value.errors()[0]["loc"] == loc


def test_invalid_override_is_reported_at_its_line(tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    agent = pack_dir / "agent.yaml"
    agent.write_text(agent.read_text().replace("regenerations: 2", "regenerations: 99"))
    (error,) = [p for p in validate_pack(pack_dir) if p.severity is Severity.ERROR]
    line = agent.read_text().splitlines().index("    regenerations: 99") + 1
    assert (error.file, error.line, error.code) == ("agent.yaml", line, "invalid_value")


def test_field_persistence_follows_scope() -> None:
    def field(**values: Any) -> CustomerDataField:
        return CustomerDataField.model_validate({"key": "k", "type": "STRING", **values})

    assert field(scope="CASE").persist is True
    assert field(scope="SESSION").persist is False
    with pytest.raises(ValidationError, match="SESSION field cannot persist"):
        field(scope="SESSION", persist=True)
    with pytest.raises(ValidationError, match="allowed_values"):
        CustomerDataField.model_validate(
            {"key": "k", "scope": "CASE", "type": "NUMBER", "allowed_values": ["1"]}
        )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"scope_id": "refund"}, "GLOBAL rule has no scope_id"),
        ({"scope": "SCENARIO"}, "SCENARIO rule needs scope_id"),
        ({"scope": "SCENARIO", "scope_id": "a.b"}, "SCENARIO rule needs scope_id"),
        ({"scope": "STEP", "scope_id": "refund"}, "STEP rule needs scope_id"),
        ({"scope_id": "Not Valid"}, "pattern"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_rule_scope(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Rule.model_validate({"id": "r", "condition_text": "c", "action_text": "a", **values})


def test_rule_scope_parts() -> None:
    rule = Rule(id="r", condition_text="c", action_text="a", scope="STEP", scope_id="s.t")
    assert (rule.scenario_id, rule.step_id) == ("s", "t")


@pytest.mark.parametrize("text", ["{order.__class__}", "{items[0]}", "{0}", "{x!r}", "{", "}"])
def test_template_placeholders_are_plain_names(text: str) -> None:
    with pytest.raises(ValidationError, match=r"placeholder|Single|expected"):
        Template(id="t", text=text)


def test_template_placeholders() -> None:
    template = Template(id="t", text="{{literal}} {amount:.2f} for {order_id}")
    assert template.placeholder_names == ["amount", "order_id"]


def _tool(**values: Any) -> Tool:
    return Tool.model_validate(
        {"id": "t", "description": "d", "implementation": {"python": "pkg.mod:fn"}, **values}
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"side_effect": "NON_IDEMPOTENT_WRITE", "retries": 1}, "cannot be retried"),
        ({"implementation": {"python": "a:b", "http": {"url": "https://x.example"}}}, "exactly"),
        ({"implementation": {}}, "exactly one"),
        ({"implementation": {"python": "a.b"}}, "must look like"),
        ({"implementation": {"http": {"url": "ftp://x"}}}, "pattern"),
        ({"input_schema": {"type": "array"}}, "type: object"),
        ({"input_schema": {"type": "object", "properties": {"a": {}}}}, "JSON type"),
        ({"input_schema": {"type": "object", "required": ["a"]}}, "declared properties"),
    ],
)
def test_tool_rules(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _tool(**values)


def test_webhook_secret_never_inline() -> None:
    values = {"id": "w", "url": "https://x.example/h", "events": ["turn_completed"]}
    with pytest.raises(ValidationError, match="never put a secret"):
        WebhookSubscription.model_validate({**values, "secret": "hunter2"})
    with pytest.raises(ValidationError, match="pattern"):
        WebhookSubscription.model_validate({**values, "secret_env": "lower_case"})
    assert WebhookSubscription.model_validate({**values, "secret_env": "HOOK_SECRET"}).enabled


def test_models_are_frozen(pack: AgentPack) -> None:
    with pytest.raises(ValidationError):
        pack.rules[0].priority = 3  # type: ignore[misc]
