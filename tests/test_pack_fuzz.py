"""The validator never crashes: whatever a file holds, every failure is a reported PackError."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.pack import PackError
from processors.pack.collect import AGENT_FILE, SECTION_FILES
from sinks.pack_files import validate_pack
from tests.test_pack_validate import EXAMPLE

FILES = [AGENT_FILE, *SECTION_FILES, "scenarios/refund.yaml", "data/shop.json"]
YAMLISH = st.lists(
    st.sampled_from([*"abz09 _-:,[]{}#&*!|>'\"\n\t.%@`?", "id", "rules", "- ", "\n  "]),
    max_size=80,
).map("".join)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "GLOBAL",
            "STEP",
            "refund",
            "refund.ask_reason",
            "lookup_order",
            "x == 1",
            "x.y",
            "QUESTION",
            "READ",
            "DEPENDS_ON",
            "{order_id}",
            "a:b",
        ]
    ),
)
KEYS = st.sampled_from(
    [
        "id",
        "key",
        "term",
        "kind",
        "scope",
        "scope_id",
        "steps",
        "transitions",
        "tool_bindings",
        "tool_id",
        "enforcement_expression",
        "condition",
        "from_step",
        "to_step",
        "source",
        "target",
        "examples",
        "text",
        "implementation",
        "python",
        "collects",
        "entry_step_id",
        "phases",
        "retrieval",
        "name",
        "condition_text",
        "action_text",
        "type",
    ]
)
STRUCTURES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("fuzz") / "acme-shop" / "support"
    shutil.copytree(EXAMPLE, target)
    yield target


def _validate_with(pack_dir: Path, file: str, content: str) -> list[PackError]:
    path = pack_dir / file
    original = path.read_text() if path.exists() else None
    path.write_text(content)
    try:
        return validate_pack(pack_dir)
    finally:
        if original is None:
            path.unlink()
        else:
            path.write_text(original)


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(file=st.sampled_from(FILES), content=YAMLISH)
def test_random_text(pack_dir: Path, file: str, content: str) -> None:
    problems = _validate_with(pack_dir, file, content)
    assert all(isinstance(p, PackError) and p.file and p.line >= 0 for p in problems)


@FUZZ
@given(file=st.sampled_from(FILES[:-1]), data=STRUCTURES)
def test_random_structures(pack_dir: Path, file: str, data: object) -> None:
    problems = _validate_with(pack_dir, file, yaml.safe_dump(data))
    assert all(isinstance(p, PackError) for p in problems)


@FUZZ
@given(
    section=st.sampled_from(["rules", "relationships", "tools", "templates", "fields"]),
    items=st.lists(st.dictionaries(KEYS, STRUCTURES, max_size=8), max_size=4),
)
def test_random_section_items(pack_dir: Path, section: str, items: list[object]) -> None:
    file = next(name for name, sections in SECTION_FILES.items() if section in sections)
    problems = _validate_with(pack_dir, file, yaml.safe_dump({section: items}))
    assert all(isinstance(p, PackError) for p in problems)
