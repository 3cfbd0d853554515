"""The benches' harness (bench/harness): the response path its per-hop figure divides by is
the one the wiring runs, and readiness waits for the catalog's consumer groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness.figures import summary
from bench.harness.pipeline import (
    HOPS,
    RESPONSE_PATH,
    bench_root,
    pipeline_settings,
    ready_groups,
)
from schemas.domain.retrieval import RetrievalType
from streams.pipeline.base import Pipeline
from streams.pipeline.runtime import PipelineRuntime
from streams.pipeline.topology import build_topology
from streams.pipeline.wiring import register
from streams.roles import Role
from streams.settings import Settings, load_settings
from streams.topics import RETRIEVAL_REQUESTED, TURN_CONTEXT, TURN_RESPONSES


def offline_settings(tmp_path: Path) -> Settings:
    return load_settings(kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path, topic_prefix="w")


def topics_the_agents_read(settings: Settings) -> set[str]:
    """Every topic an agent of a ``role all`` worker reads (the app is only built)."""
    topology = build_topology(settings, Role.ALL)
    register(Pipeline(topology, PipelineRuntime(settings)), concurrency=1, role=Role.ALL)
    return {name for agent in topology.app.agents.values() for name in agent.channel.topics}


def test_the_response_path_is_the_topics_the_wiring_reads_and_the_client_read(
    tmp_path: Path,
) -> None:
    settings = offline_settings(tmp_path)
    read = topics_the_agents_read(settings)
    *between_stages, to_client = (spec.name("w") for spec in RESPONSE_PATH)
    assert to_client == TURN_RESPONSES.name("w")
    assert set(between_stages) <= read
    off_the_critical_path = {TURN_CONTEXT.name("w")} | {
        RETRIEVAL_REQUESTED[rtype].name("w") for rtype in RetrievalType
    }
    assert read - set(between_stages) == off_the_critical_path - set(between_stages)
    assert HOPS == len(RESPONSE_PATH) == 8


def test_ready_groups_are_the_catalogs_names_with_the_analytics_override(tmp_path: Path) -> None:
    base = offline_settings(tmp_path)
    settings = pipeline_settings(base, "b", analytics=True)
    prefix = settings.topic_prefix
    assert prefix.startswith("b") and prefix != pipeline_settings(base, "b").topic_prefix
    assert ready_groups(settings) == [
        f"{prefix}.pipeline",
        f"{prefix}.memory-ingestion",
        f"{prefix}.analytics",
    ]
    renamed = settings.model_copy(
        update={"analytics": settings.analytics.model_copy(update={"group_id": "mine"})}
    )
    assert ready_groups(renamed)[-1] == "mine"
    quiet = pipeline_settings(base, "b", analytics=False)
    assert ready_groups(quiet) == [
        f"{quiet.topic_prefix}.pipeline",
        f"{quiet.topic_prefix}.memory-ingestion",
    ]


def test_summary_gives_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert summary(values) == {
        "count": 100,
        "mean": 50.5,
        "p50": 51.0,
        "p95": 96.0,
        "p99": 100.0,
        "max": 100.0,
    }
    assert summary([]) == {"count": 0}


def test_a_bench_root_goes_after_a_run_and_stays_after_a_failure_or_keep() -> None:
    with bench_root("hb-test") as root:
        (root / "worker.log").write_text("ok")
    assert not root.exists()
    with bench_root("hb-test", keep=True) as kept:
        pass
    assert kept.is_dir()
    with pytest.raises(RuntimeError), bench_root("hb-test") as failed:
        raise RuntimeError("the bench failed")
    assert failed.is_dir()
    for path in (kept, failed):
        path.rmdir()
