"""The `turnstream` command: one entry point, one sub-command module per area.

Each area module in :data:`AREAS` registers its parsers with a ``register(subparsers)``
function and keeps its top-level imports light (the standard library, argparse): its handlers
import what they need (aiokafka, Faust, torch, Qdrant, chdb) inside the function. So building
the parser costs next to nothing and ``--help``, ``pack validate``, ``sql`` or ``kafka status``
never pay for the model or the stream processor (``bench/cli_startup.py`` measures it).

Every failure passes through :func:`main`: expected ones (see ``streams.cli_errors``) print
one line with a hint; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from streams.cli_errors import DEBUG_HINT, EXIT_FAILED, EXIT_INTERRUPTED, explain
from streams.log_setup import configure_cli_logging

AREAS: tuple[str, ...] = (
    "streams.cli_kafka",
    "streams.cli_topics",
    "streams.cli_pack",
    "streams.cli_pipeline",
    "streams.cli_chat",
    "streams.cli_analytics",
    "streams.cli_status",
    "streams.cli_llm",
    "streams.cli_replay",
)
"""The sub-command modules, in the order ``--help`` lists their commands."""


class _Version(argparse.Action):
    """``--version``, reading the installed version only when asked (importlib.metadata
    costs every other command ~40 ms)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        from importlib import metadata

        try:
            version = metadata.version("turnstream")
        except metadata.PackageNotFoundError:  # a source tree that is not installed
            version = "unknown (not installed)"
        print(f"turnstream {version}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnstream",
        description="Event-driven turn processor for customer-facing AI agents, on Kafka.",
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of a failure, not one line"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in AREAS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_cli_logging(args.debug)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("turnstream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        failure = explain(exc)
        if args.debug:
            import traceback

            traceback.print_exc()
        if failure is not None:
            print(failure.line(), file=sys.stderr)
            return failure.code
        if not args.debug:
            what = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"turnstream: unexpected error: {what}; hint: {DEBUG_HINT}", file=sys.stderr)
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
