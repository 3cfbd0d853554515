"""``turnstream replay ...``: what a pack version would change, on recorded conversations
(``docs/replay.md``).

``replay run PACK`` replays the recorded turns of the pack's tenant and agent (from the
topics, or ``--from-export FILE``) against ``PACK`` and prints what changed; ``replay
export FILE`` writes recorded turns to a JSON-lines file (texts masked unless
``--no-mask``). Heavy imports stay in the handlers (see ``streams/cli.py``).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.replay_source import ReadResult, TopicRange
    from streams.settings import Settings

Subparsers = argparse._SubParsersAction  # argparse has no public name for it


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``replay`` and its sub-commands to the ``turnstream`` parser."""
    replay = subparsers.add_parser(
        "replay", help="replay recorded conversations against a pack and report what changes"
    )
    commands = replay.add_subparsers(dest="replay_command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="replay recorded turns against a pack folder; print the changes",
        description="Exit status 1 when a --fail-on kind of change appears, else 0.",
    )
    run.add_argument("pack", type=Path, help="the candidate pack folder")
    run.add_argument("--from-export", type=Path, metavar="FILE", help="read an export file")
    _range_arguments(run)
    run.add_argument("--json", metavar="PATH", help="write the report as JSON ('-': stdout)")
    run.add_argument("--html", type=Path, metavar="PATH", help="write a self-contained page")
    run.add_argument(
        "--fail-on",
        metavar="KIND[,KIND]",
        default="",
        help="exit 1 when a change of these kinds appears (e.g. new_violation,lost_tool_call;"
        " 'any' for every kind)",
    )
    run.add_argument(
        "--live-llm",
        action="store_true",
        help="call the model (TURNSTREAM_LLM_BASE_URL) in llm-mode phases"
        " (default: answer them from the recorded outputs, call nothing)",
    )
    run.add_argument(
        "--call-read-tools",
        action="store_true",
        help="call READ tools the recording lacks (default: report them, call nothing)",
    )
    run.add_argument("--limit", type=int, default=20, help="changed conversations to print")
    run.set_defaults(handler=_run)

    export = commands.add_parser(
        "export",
        help="write recorded turns of one agent to a JSON-lines file (texts masked)",
        description="Texts are masked as analytics masks them unless --no-mask.",
    )
    export.add_argument("file", type=Path, help="the file to write")
    export.add_argument("--pack", type=Path, help="the agent's pack (its sensitive fields)")
    export.add_argument("--tenant", help="tenant id (default: the pack's)")
    export.add_argument("--agent", help="agent id (default: the pack's)")
    _range_arguments(export)
    export.add_argument("--no-mask", action="store_true", help="keep texts as recorded")
    export.set_defaults(handler=_export)


def _range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", type=datetime.fromisoformat, help="ISO time, e.g. 2026-12-01T00:00Z"
    )
    parser.add_argument("--until", type=datetime.fromisoformat, help="ISO time")
    parser.add_argument("--first-offset", type=int, help="turn.completed offset, every partition")
    parser.add_argument("--last-offset", type=int, help="inclusive")


def _span(args: argparse.Namespace) -> TopicRange:
    from streams.cli_errors import CliError
    from streams.replay_source import TopicRange

    times = (args.since, args.until)
    if any(t is not None and t.tzinfo is None for t in times):
        raise CliError("--since and --until need a time zone", "add Z or +00:00", code=2)
    return TopicRange(args.since, args.until, args.first_offset, args.last_offset)


def _report_skipped(found: ReadResult) -> None:
    for line in found.bad_lines:
        print(f"skipped: {line}")
    if found.without_request:
        print(f"skipped: {found.without_request} records whose request was not found")
    if found.undecodable:
        print(f"skipped: {found.undecodable} messages that do not decode")


def _read(settings: Settings, tenant: str, agent: str, span: TopicRange) -> ReadResult:
    import asyncio

    from streams.cli_errors import CliError
    from streams.replay_source import read_topics

    try:
        return asyncio.run(read_topics(settings, tenant, agent, span))
    except LookupError as exc:
        raise CliError(str(exc), "set TURNSTREAM_TOPIC_PREFIX to the workers' prefix") from None


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from processors.replay.html import render
    from processors.replay.report import ReplayHeader, as_json, failing, parse_kinds, table
    from sinks.pack_files import load_pack
    from streams.cli_errors import CliError
    from streams.replay_run import replay_pack
    from streams.replay_source import read_export
    from streams.settings import load_settings

    try:
        kinds = parse_kinds(args.fail_on)
    except ValueError as exc:
        raise CliError(str(exc), "see `turnstream replay run --help`", code=2) from None
    settings = load_settings()
    if args.live_llm and not settings.llm_base_url:
        raise CliError(
            "--live-llm needs the model's endpoint",
            "set TURNSTREAM_LLM_BASE_URL (turnstream llm serve gives a local one)",
            code=2,
        )
    pack = load_pack(args.pack)
    if args.from_export is not None:
        if not args.from_export.is_file():
            raise CliError(f"no export file {args.from_export}", "write one: replay export FILE")
        found = read_export(args.from_export)
        source = str(args.from_export)
        masked = bool(found.masked)
    else:
        span = _span(args)
        tenant, agent = pack.agent.tenant_id, pack.agent.agent_id
        found = _read(settings, tenant, agent, span)
        source = f"topics {settings.topic_prefix}.turn.* at {settings.bootstrap_servers}"
        masked = False
    _report_skipped(found)
    turns = [
        t
        for t in found.turns
        if (t.record.tenant_id, t.record.agent_id) == (pack.agent.tenant_id, pack.agent.agent_id)
    ]
    if len(turns) < len(found.turns):
        print(f"skipped: {len(found.turns) - len(turns)} turns of another tenant or agent")
    if not turns:
        raise CliError(
            f"no recorded turn of {pack.agent.tenant_id}/{pack.agent.agent_id}",
            "check the source and range",
        )
    run = asyncio.run(
        replay_pack(
            turns,
            args.pack,
            settings,
            live_llm=args.live_llm,
            call_read_tools=args.call_read_tools,
        )
    )
    header = ReplayHeader(source=source, pack=str(args.pack), masked_texts=masked)
    for line in table(run, header, limit=args.limit):
        print(line)
    if args.json:
        text = json.dumps(as_json(run, header), indent=2, ensure_ascii=False)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    if args.html is not None:
        args.html.write_text(render(run, header), encoding="utf-8")
    failed = failing(run, kinds)
    if failed:
        shown = ", ".join(f"{k}: {n} turns" for k, n in sorted(failed.items()))
        print(f"FAILED (--fail-on): {shown}")
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:

    from streams.cli_errors import CliError
    from streams.replay_source import write_export
    from streams.settings import load_settings

    sensitive: frozenset[str] | None = None
    tenant, agent = args.tenant, args.agent
    if args.pack is not None:
        from sinks.pack_files import load_pack

        pack = load_pack(args.pack)
        sensitive = frozenset(f.key for f in pack.fields if f.sensitive)
        tenant, agent = tenant or pack.agent.tenant_id, agent or pack.agent.agent_id
    if tenant is None or agent is None:
        raise CliError("which agent's turns?", "give --pack DIR or --tenant and --agent", code=2)
    if sensitive is None and not args.no_mask:
        print(
            "note: without --pack the pack's sensitive fields are not known; "
            "only addresses, emails, cards and phone numbers are masked"
        )
    settings = load_settings()
    found = _read(settings, tenant, agent, _span(args))
    _report_skipped(found)
    count = write_export(found.turns, args.file, sensitive, mask=not args.no_mask)
    how = "texts as recorded" if args.no_mask else "texts masked as analytics masks them"
    print(f"{args.file}: {count} turns of {tenant}/{agent} ({how})")
    return 0
