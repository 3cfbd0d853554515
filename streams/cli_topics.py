"""`turnstream topics list | create`: the catalog, and creating it on a cluster."""

from __future__ import annotations

import argparse
import asyncio

from streams.settings import load_settings


def _list(_args: argparse.Namespace) -> int:
    from streams.topics import ALL_TOPICS

    settings = load_settings()
    for spec in ALL_TOPICS:
        retention = "compact" if spec.retention_ms is None else f"{spec.retention_ms // 3600000}h"
        print(
            f"{spec.name(settings.topic_prefix):45} "
            f"p={spec.partition_count(settings.partitions):<3} {retention:8} "
            f"key={spec.key.value:36} value={spec.value_schema}"
        )
    return 0


def _create(_args: argparse.Namespace) -> int:
    from streams.topic_admin import ensure_topics

    settings = load_settings()
    report = asyncio.run(ensure_topics(settings))
    for name in report.created:
        print(f"created    {name}")
    for name in report.unchanged:
        print(f"ok         {name}")
    for line in report.mismatches:
        print(f"MISMATCH   {line}")
    if (replication := report.replication_warning) is not None:
        print(f"WARNING    {replication}")
    print(
        f"{len(report.created)} created, {len(report.unchanged)} unchanged, "
        f"{len(report.mismatches)} mismatches on {settings.bootstrap_servers}"
    )
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = subparsers.add_parser("topics", help="the topic catalog")
    actions = topics.add_subparsers(dest="topics_command", required=True)
    actions.add_parser("list", help="print the catalog").set_defaults(handler=_list)
    actions.add_parser(
        "create", help="create missing topics; exit 1 if existing ones differ from the catalog"
    ).set_defaults(handler=_create)
