"""The chaos soak's worker plan (bench/chaos_workers.py): with ``--analytics`` the pipeline
workers write no analytics and one ``--role analytics`` process writes the one store, with a
fixed pseudonym key; each process is waited for in the groups it really joins."""

from __future__ import annotations

from pathlib import Path

from bench.chaos_workers import PSEUDONYM_KEY, Planned, group_members, worker_plan
from bench.harness.pipeline import pipeline_settings
from streams.analytics_consumer import group_id as analytics_group
from streams.roles import Role
from streams.settings import Settings, load_settings
from streams.topics import MEMORY_GROUP, pipeline_group
from streams.worker import Worker
from streams.worker_process import worker_env

ROOT = Path("/tmp/chaos-plan")


def soak_settings(analytics: bool) -> Settings:
    return pipeline_settings(load_settings(data_dir=ROOT), "chaos", analytics=analytics)


def test_without_analytics_the_plan_is_the_pipeline_workers_alone() -> None:
    plan = worker_plan(2, analytics=False)
    assert plan == [
        Planned("worker0", Role.ALL, analytics=False),
        Planned("worker1", Role.ALL, analytics=False),
    ]
    settings = soak_settings(analytics=False)
    prefix = settings.topic_prefix
    assert group_members(plan, settings, ROOT) == {
        pipeline_group(prefix): 2,
        MEMORY_GROUP.name(prefix): 2,
    }


def test_with_analytics_one_process_writes_the_one_store() -> None:
    plan = worker_plan(2, analytics=True)
    assert [(p.name, p.role, p.analytics) for p in plan] == [
        ("worker0", Role.ALL, False),
        ("worker1", Role.ALL, False),
        ("analytics", Role.ANALYTICS, True),
    ]
    settings = soak_settings(analytics=True)
    own = [p.settings(settings, ROOT) for p in plan]
    assert [s.analytics.enabled for s in own] == [False, False, True]
    assert [s.data_dir for s in own] == [ROOT / "worker0", ROOT / "worker1", ROOT / "analytics"]
    prefix = settings.topic_prefix
    assert group_members(plan, settings, ROOT) == {
        pipeline_group(prefix): 2,
        MEMORY_GROUP.name(prefix): 2,
        analytics_group(settings): 1,
    }


def test_what_reaches_each_child_process() -> None:
    """The environment the soak's WorkerProcess gives each child: analytics on only in the
    analytics process, which has the fixed pseudonym key (a random one per process would
    change the ``turns`` sorting key of a row replayed after a restart)."""
    settings = soak_settings(analytics=True)
    envs = {
        p.name: worker_env(p.settings(settings, ROOT), p.env(), inherit=False)
        for p in worker_plan(2, analytics=True)
    }
    assert {n: e["TURNSTREAM_ANALYTICS__ENABLED"] for n, e in envs.items()} == {
        "worker0": "false",
        "worker1": "false",
        "analytics": "true",
    }
    keys = {n: e.get("TURNSTREAM_ANALYTICS__PSEUDONYM_KEY") for n, e in envs.items()}
    assert keys == {"worker0": None, "worker1": None, "analytics": PSEUDONYM_KEY}
    assert len(PSEUDONYM_KEY.encode()) >= 16  # the settings refuse a shorter key


def test_the_analytics_process_joins_the_group_it_is_waited_for_in() -> None:
    """A ``--role analytics`` worker's services, built (not started) as the worker builds
    them: one analytics consumer, in the one group the plan waits for."""
    settings = soak_settings(analytics=True)
    planned = worker_plan(0, analytics=True)[0]
    own = planned.settings(settings, ROOT)
    services = Worker(own, Role.ANALYTICS)._side_services()
    assert [getattr(s, "group", None) for s in services] == planned.groups(own)
