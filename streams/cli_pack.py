"""``turnstream pack ...``: work with agent packs (see ``packs/FORMAT.md``).

Each sub-command is an ``_add_<name>`` function that registers its parser and handler, listed
in :data:`_COMMANDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from processors.tool_policy import ToolPolicy
from streams.settings import load_settings

Subparsers = argparse._SubParsersAction  # argparse has no public name for it


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``pack`` and its sub-commands to the ``turnstream`` parser."""
    pack = subparsers.add_parser("pack", help="validate and load agent packs")
    commands = pack.add_subparsers(dest="pack_command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(commands)


def _add_validate(commands: Subparsers[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "validate",
        help="check a pack folder; print every problem as file:line: code: message",
        description="Exit status 1 if the pack has an error, else 0 (warnings do not fail).",
    )
    parser.add_argument("dir", type=Path, help="the pack folder, e.g. packs/acme-shop/support")
    parser.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from processors.pack import Severity
    from processors.pack.size import size_problems
    from schemas.pack import SECTION_KEYS
    from sinks.pack_files import inspect_pack

    pack_dir: Path = args.dir
    settings = load_settings()
    report = inspect_pack(pack_dir, ToolPolicy.of(settings.tools))
    problems = list(report.problems)
    if report.pack is not None:  # the operator's cap (TURNSTREAM_MAX_PACK_TEXTS)
        problems += size_problems(report.pack, settings.max_pack_texts)
    for problem in problems:
        print(dataclasses.replace(problem, file=str(pack_dir / problem.file)))
    count = Counter(problem.severity for problem in problems)
    notes = f"{count[Severity.WARNING]} warnings, {count[Severity.INFO]} infos"
    if report.pack is None or count[Severity.ERROR]:
        print(f"{pack_dir}: {count[Severity.ERROR]} errors, {notes}")
        return 1
    sizes = ", ".join(f"{len(getattr(report.pack, section))} {section}" for section in SECTION_KEYS)
    print(f"{pack_dir}: ok: {sizes}; {notes}; content hash {report.pack.content_hash()[:12]}")
    return 0


def _add_load(commands: Subparsers[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "load",
        help="validate a pack and publish it as the next version on the config topic",
        description="Exit status 1 if the pack has an error (nothing is published), else 0. "
        "An unchanged pack publishes nothing.",
    )
    parser.add_argument("dir", type=Path, help="the pack folder, e.g. packs/acme-shop/support")
    parser.set_defaults(handler=_load)


def _load(args: argparse.Namespace) -> int:
    from sinks.pack_files import load_pack
    from streams.pack_publisher import PublishError, publish_pack

    pack_dir: Path = args.dir
    if _validate(args) != 0:
        print(f"{pack_dir}: not loaded, nothing published")
        return 1
    settings = load_settings()
    try:
        pack = load_pack(pack_dir, ToolPolicy.of(settings.tools))
        result = asyncio.run(publish_pack(settings, pack))
    except PublishError:
        print(f"{pack_dir}: not loaded, nothing published")
        raise  # then one line with a hint on stderr (streams/cli_errors.py)
    who = f"tenant {result.tenant}, agent {result.agent}"
    if result.published:
        print(f"{who}: version {result.version} published to {result.topic}")
    else:
        print(f"{who}: unchanged, still version {result.version}; nothing published")
    print(f"content hash {result.content_hash}")
    return 0


def _add_test(commands: Subparsers[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "test",
        help="play the pack's conversation tests (tests/*.yaml) and print a diff per failure",
        description="Exit status 1 if the pack does not validate, a test cannot be read or an "
        "expectation fails, else 0 with a summary line (packs/FORMAT.md, Conversation tests).",
    )
    parser.add_argument("dir", type=Path, help="the pack folder, e.g. packs/acme-shop/support")
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="through a worker on Kafka: the configured broker, else a private one for the run",
    )
    parser.add_argument(
        "-k",
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="only conversations whose name contains TEXT (repeatable)",
    )
    parser.set_defaults(handler=_test)


def _test(args: argparse.Namespace) -> int:
    from streams.pack_test import main

    return main(args.dir, kafka=args.kafka, only=args.only)


_COMMANDS: list[Callable[[Subparsers[argparse.ArgumentParser]], None]] = [
    _add_validate,
    _add_load,
    _add_test,
]
