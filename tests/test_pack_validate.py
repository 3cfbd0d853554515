"""The example pack is valid; each way of breaking it is reported at the right file and line,
and all of them at once in one run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from processors.pack import PackError, PackValidationError, Severity
from sinks.pack_files import load_pack, validate_pack

EXAMPLE = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"


def copy_pack(root: Path) -> Path:
    """A copy of the example pack under ``root``, in a tenant/agent folder like the original."""
    target = root / "acme-shop" / "support"
    shutil.copytree(EXAMPLE, target)
    return target


def errors_of(problems: list[PackError]) -> list[PackError]:
    return [p for p in problems if p.severity is Severity.ERROR]


def test_example_pack_has_no_errors_or_warnings() -> None:
    problems = validate_pack(EXAMPLE)
    assert [p for p in problems if p.severity is not Severity.INFO] == []


def test_example_pack_is_realistic() -> None:
    pack = load_pack(EXAMPLE)
    assert len(pack.rules) >= 20
    hard_global = [r for r in pack.rules if r.is_hard_constraint and r.scope == "GLOBAL"]
    assert sum(r.enforcement_expression is not None for r in hard_global) >= 5
    assert len(pack.relationships) >= 5
    assert len(pack.scenarios) >= 3
    assert all(len(s.steps) >= 3 for s in pack.scenarios)
    assert len(pack.intents) >= 10
    assert all(5 <= len(i.examples) <= 8 for i in pack.intents)
    assert len(pack.glossary) >= 8
    assert len(pack.tools) >= 4
    assert any(t.kind == "FALLBACK" for t in pack.templates)
    assert [w.secret_env for w in pack.webhooks] == ["ACME_CRM_WEBHOOK_SECRET"]


@dataclass(frozen=True)
class Breakage:
    """Replace ``old`` by ``new`` in ``file``; expect ``code`` on the line holding ``at``."""

    name: str
    file: str
    old: str
    new: str
    code: str
    at: str = ""

    def apply(self, pack_dir: Path) -> None:
        path = pack_dir / self.file
        text = path.read_text()
        assert text.count(self.old) >= 1, self.name
        path.write_text(text.replace(self.old, self.new, 1))

    def line(self, pack_dir: Path) -> int:
        marker = self.at or self.new.strip().splitlines()[0]
        lines = (pack_dir / self.file).read_text().splitlines()
        hits = [number for number, text in enumerate(lines, 1) if marker in text]
        assert len(hits) == 1, (self.name, marker, hits)
        return hits[0]


BREAKAGES = [
    Breakage(
        "yaml syntax error",
        "glossary.yaml",
        "  - term: store credit\n",
        "  - term: store: credit\n",
        "yaml_syntax",
    ),
    Breakage(
        "step collects an unknown field",
        "scenarios/refund.yaml",
        "collects: [refund_reason]",
        "collects: [refund_raeson]",
        "unknown_field",
    ),
    Breakage(
        "duplicate rule id",
        "rules.yaml",
        "  - id: close_politely\n",
        "  - id: be_polite  # duplicate\n",
        "duplicate_id",
    ),
    Breakage(
        "rule scoped to a missing step",
        "rules.yaml",
        "scope_id: refund.ask_reason",
        "scope_id: refund.ask_why",
        "unknown_step",
    ),
    Breakage(
        "transition to a missing step",
        "scenarios/order_tracking.yaml",
        "{from_step: ask_order_id, to_step: look_up}",
        "{from_step: ask_order_id, to_step: look_at}",
        "unknown_step",
    ),
    Breakage(
        "binding to a missing tool",
        "rules.yaml",
        "{tool_id: track_shipment, when: BEFORE}",
        "{tool_id: track_shipments, when: BEFORE}",
        "unknown_tool",
    ),
    Breakage(
        "relationship to a missing rule",
        "rules.yaml",
        "kind: RELATED, target: human_on_request}",
        "kind: RELATED, target: human_on_demand}",
        "unknown_rule",
    ),
    Breakage(
        "depends_on cycle",
        "rules.yaml",
        "target: acknowledge_complaints}\n",
        "target: acknowledge_complaints}\n  - {source: verify_before_account_changes, "
        "kind: DEPENDS_ON, target: address_change_before_shipping}  # cycle\n",
        "dependency_cycle",
        at="# cycle",
    ),
    Breakage(
        "expression that does not parse",
        "rules.yaml",
        "enforcement_expression: response_emails in [[], [lower(email)]]",
        "enforcement_expression: response_emails in [[], [lower(email)]",
        "expression_syntax",
    ),
    Breakage(
        "expression with an unknown name",
        "rules.yaml",
        'enforcement_expression: not matches(response_text, r"\\b[A-Z]',
        'enforcement_expression: not matches(response_txt, r"\\b[A-Z]',
        "unknown_name",
    ),
    Breakage(
        "wrong enum value",
        "tools.yaml",
        "    side_effect: IDEMPOTENT_WRITE\n",
        "    side_effect: IDEMPOTENT  # enum\n",
        "invalid_choice",
    ),
    Breakage(
        "step template missing",
        "scenarios/return_item.yaml",
        "template_id: return_label\n",
        "template_id: return_labels\n",
        "unknown_template",
    ),
    Breakage(
        "malformed tool import path",
        "tools.yaml",
        "python: packs.tools.acme_shop:lookup_order",
        "python: packs/tools/acme_shop.py:lookup_order",
        "bad_import_path",
    ),
    Breakage(
        "secret written into the pack",
        "webhooks.yaml",
        "secret_env: ACME_CRM_WEBHOOK_SECRET",
        "secret: hunter2",
        "secret_in_pack",
        at="- id: crm_sync",
    ),
    Breakage(
        "scenario entry intent unknown",
        "scenarios/change_address.yaml",
        "entry_intents: [change_address]",
        "entry_intents: [change_adress]",
        "unknown_intent",
    ),
    Breakage(
        "key written twice",
        "fields.yaml",
        "    description: Whether the customer agreed to receive offers.\n",
        "    description: Whether the customer agreed to receive offers.\n"
        "    description: twice  # dup key\n",
        "yaml_duplicate_key",
        at="# dup key",
    ),
    Breakage(
        "data file that is not JSON",
        "data/shop.json",
        '"return_window_days": 30,',
        '"return_window_days": 30,,',
        "json_syntax",
    ),
    Breakage(
        "required key missing",
        "rules.yaml",
        "    action_text: Name the carrier and the status in words; offer to check again later.\n",
        "",
        "missing_key",
        at="- id: tracking_link",
    ),
    Breakage(
        "unsafe extraction pattern",
        "fields.yaml",
        r"patterns: ['\bA-\d{5}\b']",
        r"patterns: ['(\w+)+@']",
        "unsafe_pattern",
    ),
]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=[b.name for b in BREAKAGES])
def test_each_breakage_is_reported_at_its_line(breakage: Breakage, tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    breakage.apply(pack_dir)
    errors = errors_of(validate_pack(pack_dir))
    expected = (breakage.file, breakage.line(pack_dir), breakage.code)
    assert [(e.file, e.line, e.code) for e in errors] == [expected], errors


def test_all_breakages_at_once_are_all_reported(tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    for breakage in BREAKAGES:
        breakage.apply(pack_dir)
    reported = {(e.file, e.line, e.code) for e in errors_of(validate_pack(pack_dir))}
    expected = {(b.file, b.line(pack_dir), b.code) for b in BREAKAGES}
    assert expected <= reported
    assert len(reported) == len(expected), reported - expected


def test_load_pack_raises_with_every_error(tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    for breakage in BREAKAGES[1:4]:
        breakage.apply(pack_dir)
    with pytest.raises(PackValidationError) as caught:
        load_pack(pack_dir)
    assert sorted(e.code for e in errors_of(caught.value.errors)) == [
        "duplicate_id",
        "unknown_field",
        "unknown_step",
    ]
    assert "rules.yaml:" in str(caught.value)


def test_expression_errors_carry_the_yaml_column(tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    BREAKAGES[8].apply(pack_dir)
    (error,) = errors_of(validate_pack(pack_dir))
    line = (pack_dir / "rules.yaml").read_text().splitlines()[error.line - 1]
    assert line[error.column - 1 :] == "[[], [lower(email)]"  # "'[' was never closed"


def test_warnings_do_not_stop_loading(tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    (pack_dir / "rule.yaml").write_text("rules: []\n")
    text = (pack_dir / "rules.yaml").read_text()
    (pack_dir / "rules.yaml").write_text(
        text.replace(
            "    name: Polite and blame-free\n",
            "    name: Polite and blame-free\n"
            "    enforcement_expression: len(response_text) < 2000\n",
        )
    )
    problems = validate_pack(pack_dir)
    codes = {p.code for p in problems if p.severity is Severity.WARNING}
    assert codes == {"unknown_file", "unused_expression"}
    assert load_pack(pack_dir).agent.agent_id == "support"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: (d / "agent.yaml").unlink(), "missing_file"),
        (lambda d: (d / "rules.yaml").write_text("- just a list\n"), "bad_structure"),
        (lambda d: (d / "rules.yaml").write_text("rulez: []\n"), "unknown_section"),
        (lambda d: (d / "rules.yaml").write_text("rules: {a: 1}\n"), "bad_structure"),
        (lambda d: (d / "rules.yaml").write_bytes(b"rules: [\xff]\n"), "file_unreadable"),
        (lambda d: (d / "rules.yaml").write_text("rules: [2024-13-45]\n"), "yaml_syntax"),
        (lambda d: (d / "rules.yaml").write_text("rules: [5]\n"), "invalid_type"),
        (lambda d: (d / "rules.yaml").write_text("#" * 3_000_000), "file_too_large"),
        (lambda d: (d / "rules.yaml").write_text("rules: &a [*a]\n"), "yaml_too_complex"),
    ],
)
def test_structural_problems(mutate: object, code: str, tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    mutate(pack_dir)  # type: ignore[operator]
    assert code in {p.code for p in errors_of(validate_pack(pack_dir))}


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    pack_dir = copy_pack(tmp_path)
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)
    ]
    (pack_dir / "glossary.yaml").write_text("\n".join(levels) + "\nglossary: *a8\n")
    assert "yaml_too_complex" in {p.code for p in validate_pack(pack_dir)}


def test_missing_folder() -> None:
    (error,) = validate_pack("/nonexistent/pack")
    assert error.code == "missing_pack"


@pytest.mark.parametrize(
    "name",
    [
        "GLOBEX__ACME_CRM_WEBHOOK_SECRET",  # "__" could step into another tenant's variables
        "_ACME_CRM_WEBHOOK_SECRET",
        "ACME_CRM_WEBHOOK_SECRET_",
        "acme_crm_webhook_secret",
        "whsec-0a1b2c3d",  # a secret pasted in by mistake: refused, and never echoed
    ],
)
def test_a_webhook_secret_name_that_is_not_one_tenant_scoped_name_is_reported_at_its_line(
    name: str, tmp_path: Path
) -> None:
    pack_dir = copy_pack(tmp_path)
    hooks = pack_dir / "webhooks.yaml"
    hooks.write_text(
        hooks.read_text().replace(
            "secret_env: ACME_CRM_WEBHOOK_SECRET", f'secret_env: "{name}"  # bad name'
        )
    )
    (error,) = errors_of(validate_pack(pack_dir))
    lines = hooks.read_text().splitlines()
    line = next(number for number, text in enumerate(lines, 1) if "# bad name" in text)
    assert (error.file, error.line, error.code) == ("webhooks.yaml", line, "bad_secret_name")
    assert "WEBHOOK_SECRET__<TENANT>__<secret_env>" in error.message
    assert name not in str(error)
