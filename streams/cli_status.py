"""``turnstream status``: brokers, topics, consumer groups with lag, and the pack versions
workers load (``streams/cluster_status.py``); a cluster that does not answer is one line
with a hint (``streams/cli_errors.py``)."""

from __future__ import annotations

import argparse
import asyncio

from streams.settings import load_settings


def _status(_args: argparse.Namespace) -> int:
    from streams.cluster_status import gather, render

    print(render(asyncio.run(gather(load_settings()))))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subparsers.add_parser(
        "status",
        help="brokers, topics, consumer groups (members, lag) and loaded pack versions",
    ).set_defaults(handler=_status)
