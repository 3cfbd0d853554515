"""The complete small pack in packs/FORMAT.md validates as written."""

from __future__ import annotations

import re
from pathlib import Path

from processors.pack.conversations import load_suite
from sinks.pack_files import PackFiles, load_pack, validate_pack

FORMAT = Path(__file__).resolve().parents[1] / "packs" / "FORMAT.md"
FILE_BLOCK = re.compile(r"^```yaml (\S+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_the_documented_pack_is_valid(tmp_path: Path) -> None:
    pack_dir = tmp_path / "demo" / "helpdesk"
    pack_dir.mkdir(parents=True)
    blocks = FILE_BLOCK.findall(FORMAT.read_text())
    assert {name for name, _ in blocks} >= {"agent.yaml", "rules.yaml", "scenarios.yaml"}
    for name, text in blocks:
        (pack_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (pack_dir / name).write_text(text)
    assert validate_pack(pack_dir) == []
    pack = load_pack(pack_dir)
    assert [s.id for s in pack.scenarios] == ["track_order"]
    suite = load_suite(PackFiles(pack_dir), pack)  # the documented conversation test reads cleanly
    assert (suite.errors, len(suite.conversations)) == ((), 1)
