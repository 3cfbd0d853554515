"""No noisy neighbour (issue 20): one tenant's large pack loading in a worker leaves another
tenant's turns as fast as they were, and a pack above the operator's cap is refused.

The latency test is ``bench/noisy_neighbour.py``'s measurement through the real broker, one
worker process, the real embedding model: acme-shop turns just before, during and just after
a 2,100-text pack of another tenant is loaded. Before the fix the load ran on the model
thread that embeds every turn's query, and a turn sent meanwhile waited for the whole load
(110 s for issue 20's pack); the bound fails then by far more than its margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness.large_pack import texts_of, write_large_pack
from bench.harness.pipeline import wait_ready
from bench.noisy_neighbour import measure
from processors.pack import PackValidationError
from processors.pack.size import TOO_MANY_TEXTS, size_problems
from sinks.pack_files import load_pack
from streams.cli import main
from streams.pack_publisher import publish_pack
from streams.pack_registry import RejectedRecordError, snapshot_from_record
from streams.settings import Settings
from streams.worker_process import WorkerProcess
from tests.pipeline_support import pipeline_settings, prepare
from tests.test_pack_load import record_of

INTENTS, EXAMPLES = 300, 6
P99_BOUND = 2.0
"""The promise: p99 while the pack loads within 2x of normal. Measured 0.9-1.3x on the shared
2-core machine (bench/noisy_neighbour.py, docs/performance.md), so the bound leaves the test
~1.5x of margin for the machine's noise; "normal" is the larger p99 of the turns just before
and just after the load, which absorbs the drift of the machine's own load between them."""


@pytest.mark.integration
@pytest.mark.timeout(900)
async def test_a_large_pack_loading_keeps_another_tenants_turns_p99_within_2x_of_normal(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path / "data", partitions=2)
    await prepare(settings)
    pack_dir = write_large_pack(
        tmp_path / "packs", "bulk-tenant", "catalog", intents=INTENTS, examples=EXAMPLES
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log", inherit=False, log_level="INFO")
    worker.start()
    try:
        await wait_ready(settings, [worker])
        result = await measure(settings, worker, pack_dir, sessions=2, turns=40)
    finally:
        worker.stop()

    assert result["texts_embedded"] == texts_of(INTENTS, EXAMPLES)  # all of it, while turns ran
    assert result["load_s"] >= 3.0, result  # a load that short would prove nothing
    during = result["during"]["e2e_ms"]
    assert during["count"] >= 20, result  # turns were answered throughout the load
    for window in ("normal", "during", "after"):
        assert result[window]["errors"] == 0 and result[window]["lost"] == 0, result
    assert result["p99_ratio"] <= P99_BOUND, result


def test_a_pack_above_the_text_cap_is_refused_by_validation_publish_and_the_worker(
    tmp_path: Path,
) -> None:
    pack = load_pack(write_large_pack(tmp_path, "bulk-tenant", "catalog", intents=50))
    texts = texts_of(50, 6)
    assert size_problems(pack, texts) == []
    (problem,) = size_problems(pack, texts - 1)
    assert problem.code == TOO_MANY_TEXTS and f"embed {texts} texts" in problem.message
    assert "TURNSTREAM_MAX_PACK_TEXTS" in problem.message
    key = b"bulk-tenant:catalog"
    assert snapshot_from_record(key, record_of(pack, version=1), texts).pack == pack
    with pytest.raises(RejectedRecordError, match=TOO_MANY_TEXTS):
        snapshot_from_record(key, record_of(pack, version=1), texts - 1)


async def test_publish_refuses_a_pack_above_the_cap_before_reaching_the_broker(
    tmp_path: Path,
) -> None:
    pack = load_pack(write_large_pack(tmp_path, "bulk-tenant", "catalog", intents=50))
    capped = Settings(kafka_bootstrap="127.0.0.1:9", max_pack_texts=10)  # nothing listens
    with pytest.raises(PackValidationError, match=TOO_MANY_TEXTS):
        await publish_pack(capped, pack)


def test_pack_validate_reports_a_pack_above_the_cap_at_agent_yaml_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pack_dir = write_large_pack(tmp_path, "bulk-tenant", "catalog", intents=50)
    assert main(["pack", "validate", str(pack_dir)]) == 0  # 350 texts: under the default cap
    capsys.readouterr()
    monkeypatch.setenv("TURNSTREAM_MAX_PACK_TEXTS", "349")
    assert main(["pack", "validate", str(pack_dir)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{pack_dir / 'agent.yaml'}:0: {TOO_MANY_TEXTS}: ")
    assert "embed 350 texts" in out[0] and "the 349 this deployment allows" in out[0]
    assert out[-1] == f"{pack_dir}: 1 errors, 0 warnings, 0 infos"
