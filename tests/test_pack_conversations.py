"""Both example packs' conversation tests (``packs/*/*/tests/*.yaml``), played for real: in
this process, and through a worker on the session's Kafka broker (integration).

These are the acceptance tests of the dialogue engine as a pack author sees it: every
expectation of both suites must hold, and the Kafka path must give the same turns as the
in-process one (same failures, if any, at the same turns and keys).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.pack.conversation_run import SuiteReport, format_report
from streams.pack_test import play_in_process, play_through_kafka
from streams.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
PACKS = [REPO / "packs" / "acme-shop" / "support", REPO / "packs" / "brightwatt-energy" / "care"]
_IN_PROCESS: dict[Path, SuiteReport] = {}


def _diff(report: SuiteReport, pack_dir: Path, mode: str) -> str:
    return "\n".join(format_report(report, str(pack_dir.relative_to(REPO)), mode))


def _failed_checks(report: SuiteReport) -> set[tuple[str, int, str]]:
    return {(f.conversation, f.turn, m.key) for f in report.failures for m in f.mismatches}


async def _in_process(pack_dir: Path) -> SuiteReport:
    if pack_dir not in _IN_PROCESS:
        _IN_PROCESS[pack_dir] = await play_in_process(pack_dir, load_settings())
    return _IN_PROCESS[pack_dir]


@pytest.mark.parametrize("pack_dir", PACKS, ids=lambda p: p.parent.name)
async def test_pack_suite_passes_in_process(pack_dir: Path) -> None:
    report = await _in_process(pack_dir)
    assert report.passed, _diff(report, pack_dir, "in process")


@pytest.mark.integration
@pytest.mark.parametrize("pack_dir", PACKS, ids=lambda p: p.parent.name)
async def test_pack_suite_passes_through_kafka_as_in_process(
    pack_dir: Path, kafka_settings: Settings
) -> None:
    through_kafka = await play_through_kafka(pack_dir, kafka_settings)
    in_process = await _in_process(pack_dir)
    assert _failed_checks(through_kafka) == _failed_checks(in_process), _diff(
        through_kafka, pack_dir, "through Kafka"
    )
    assert through_kafka.passed, _diff(through_kafka, pack_dir, "through Kafka")
