"""The `turnstream` command: one entry point, one sub-command module per area."""

from __future__ import annotations

import argparse
import sys

from streams import cli_analytics, cli_kafka, cli_pack, cli_pipeline, cli_topics
from streams.settings import SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnstream",
        description="Event-driven turn processor for customer-facing AI agents, on Kafka.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for area in (cli_kafka, cli_topics, cli_pack, cli_pipeline, cli_analytics):
        area.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except SettingsError as exc:
        print(f"turnstream: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
