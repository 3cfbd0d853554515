"""``turnstream pack validate``, called in-process through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks.pack_files import load_pack
from streams.cli import main
from tests.test_pack_validate import BREAKAGES, EXAMPLE, copy_pack


def test_example_pack_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", "validate", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith(f"{EXAMPLE}: ok: ")
    assert f"{len(load_pack(EXAMPLE).rules)} rules" in out[-1]
    assert "0 warnings" in out[-1]


def test_broken_pack_prints_every_error_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack_dir = copy_pack(tmp_path)
    for breakage in BREAKAGES:
        breakage.apply(pack_dir)
    assert main(["pack", "validate", str(pack_dir)]) == 1
    out = capsys.readouterr().out.splitlines()
    for breakage in BREAKAGES:
        prefix = f"{pack_dir / breakage.file}:{breakage.line(pack_dir)}: {breakage.code}: "
        assert any(line.startswith(prefix) for line in out), prefix
    assert out[-1] == f"{pack_dir}: {len(BREAKAGES)} errors, 0 warnings, 3 infos"


def test_missing_folder_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", "validate", str(tmp_path / "nope")]) == 1
    assert "missing_pack" in capsys.readouterr().out
