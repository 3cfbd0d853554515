"""``turnstream replay`` on turns recorded through a worker on the real broker (issue 18).

The example pack's conversation tests, each played four times as a new visitor and
session, go through a worker; the recorded turns are read back from ``turn.completed`` and
``turn.requested`` and replayed in process against (a) the same pack, (b) a copy with one
rule's action changed and one scenario step removed, (c) a copy with a stricter hard
constraint. What each change must affect is computed from the recording, not written down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from processors.pack.conversations import load_suite
from processors.replay.diff import ChangeKind
from processors.replay.html import render
from processors.replay.recording import RecordedTurn
from processors.replay.report import ReplayHeader, summarize
from processors.replay.run import ReplayRun, TurnResult
from schemas.domain.turn_input import TurnInput
from sinks.pack_files import PackFiles, load_pack
from streams.replay_run import replay_pack
from streams.replay_source import TopicRange, read_topics
from streams.settings import Settings
from streams.turn_client import TurnClient
from tests.pipeline_support import (
    AGENT,
    EXAMPLE_PACK,
    TENANT,
    pipeline_settings,
    prepare,
    running_worker,
    settings_env,
)

COPIES = 4
"""Each pack conversation is recorded this many times (8 conversations -> 32)."""


@pytest.fixture(scope="module")
def recording_settings(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The broker's settings under the recording's own topic prefix."""
    return pipeline_settings(kafka_settings, tmp_path_factory.mktemp("replay-data"))


@pytest.fixture(scope="module")
async def recorded(recording_settings: Settings) -> AsyncIterator[list[RecordedTurn]]:
    settings = recording_settings
    await prepare(settings)
    pack = load_pack(EXAMPLE_PACK)
    suite = load_suite(PackFiles(EXAMPLE_PACK), pack)
    sent = 0
    async with running_worker(settings), TurnClient(settings, records=True) as client:
        for copy in range(COPIES):
            for n, loaded in enumerate(suite.conversations):
                conversation = loaded.conversation
                visitor = f"replay-{copy}-{n}"
                for turn in conversation.turns:
                    given = TurnInput(
                        tenant_id=TENANT,
                        agent_id=AGENT,
                        channel=conversation.channel,
                        channel_id=visitor,
                        customer_id=conversation.customer_id,
                        session_id=visitor,
                        message=turn.say,
                    )
                    turn_id = await client.send(given)
                    await client.response(turn_id, timeout=120.0)
                    await client.record(turn_id, timeout=30.0)
                    sent += 1
    found = await read_topics(settings, TENANT, AGENT, TopicRange())
    assert found.without_request == 0 and found.undecodable == 0
    assert len(found.turns) == sent
    yield found.turns


def _results(run: ReplayRun) -> list[TurnResult]:
    return [t for c in run.conversations for t in c.turns]


def _changed(run: ReplayRun) -> dict[str, set[ChangeKind]]:
    return {t.recorded.record.turn_id: t.kinds for t in _results(run) if t.changes}


def _explained(run: ReplayRun) -> list[str]:
    """Each changed turn's message and changes: what a failed determinism check shows."""
    return [
        f"{t.recorded.request.input.message!r}: "
        + "; ".join(f"{c.kind.value} {c.before!r} -> {c.after!r}" for c in t.changes)
        for t in _results(run)
        if t.changes
    ]


def _pack_copy(tmp_path: Path) -> Path:
    """A copy where tools find it: ``<packs>/<tenant>/<agent>``."""
    target = tmp_path / "packs" / TENANT / AGENT
    shutil.copytree(EXAMPLE_PACK, target)
    return target


def _edit_yaml(path: Path, edit: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


async def test_a_replay_against_the_recording_pack_changes_nothing(
    recorded: list[RecordedTurn], kafka_settings: Settings
) -> None:
    assert len({t.conversation for t in recorded}) >= 30
    run = await replay_pack(recorded, EXAMPLE_PACK, kafka_settings)
    summary = summarize(run)
    assert summary.turns == len(recorded)
    assert summary.changed_turns == 0, _explained(run)


async def test_a_changed_rule_action_and_a_removed_step_show_on_exactly_the_turns_they_touch(
    recorded: list[RecordedTurn], kafka_settings: Settings, tmp_path: Path
) -> None:
    pack = load_pack(EXAMPLE_PACK)
    # the rule whose action text answered most recorded turns
    answered: dict[str, set[str]] = {}
    for turn in recorded:
        plan = turn.record.context.plan
        for template in plan.templates if plan else []:
            answered.setdefault(template.template_id, set()).add(turn.record.turn_id)
    rule_ids = {r.id for r in pack.rules}
    rule_id = max((k for k in answered if k in rule_ids), key=lambda k: len(answered[k]))
    # a non-entry step some recorded turn entered, and the scenario holding it
    entered = {
        (d.scenario_id, d.entered_step_id): turn.record.turn_id
        for turn in recorded
        for d in turn.record.context.scenario_decisions
        if d.entered_step_id
    }
    scenarios = {s.id: s for s in pack.scenarios}
    scenario_id, step_id = next(
        (s, step)
        for (s, step) in sorted(entered, key=str)
        if step != scenarios[s].entry_step_id and step is not None
    )
    copy = _pack_copy(tmp_path)

    def new_action(data: dict[str, Any]) -> None:
        rule = next(r for r in data["rules"] if r["id"] == rule_id)
        rule["action_text"] = "Replay test: a different answer for this rule."

    _edit_yaml(copy / "rules.yaml", new_action)
    scenario_file = next(
        p
        for p in (copy / "scenarios").glob("*.yaml")
        if yaml.safe_load(p.read_text())["id"] == scenario_id
    )

    def drop_step(data: dict[str, Any]) -> None:
        into = [t["from_step"] for t in data["transitions"] if t["to_step"] == step_id]
        out = [t for t in data["transitions"] if t["from_step"] == step_id]
        kept = [t for t in data["transitions"] if step_id not in (t["from_step"], t["to_step"])]
        for source in into:  # what led to the step now leads where the step led
            for hop in out:
                kept.append({**hop, "from_step": source})
        data["transitions"] = kept
        data["steps"] = [s for s in data["steps"] if s["id"] != step_id]

    _edit_yaml(scenario_file, drop_step)
    run = await replay_pack(recorded, copy, kafka_settings)
    changed = _changed(run)

    rule_turns = answered[rule_id]
    step_turns = {
        turn.record.turn_id
        for turn in recorded
        for d in turn.record.context.scenario_decisions
        if d.scenario_id == scenario_id
        and (step_id in (d.entered_step_id, d.from_step_id) or step_id in d.skipped_step_ids)
    }  # a turn that skipped the step walked through it too
    for turn_id in rule_turns:
        assert ChangeKind.ANSWER in changed.get(turn_id, set()), (rule_id, turn_id)
    for turn_id in step_turns:
        assert ChangeKind.STEP in changed.get(turn_id, set()), (step_id, turn_id)
    # nothing else changed but later turns of the conversations those turns belong to
    order = {
        t.record.turn_id: i
        for i, t in enumerate(sorted(recorded, key=lambda t: t.record.context.received_at))
    }
    # removing a step may change any turn of a conversation from when it was in that scenario
    # (a paused flow resumed past it, a tool input asked for by it), not only the turns that
    # entered, left or skipped it
    in_scenario = {
        turn.record.turn_id
        for turn in recorded
        for d in turn.record.context.scenario_decisions
        if d.scenario_id == scenario_id
    }
    first_hit: dict[str, int] = {}
    for turn in recorded:
        if turn.record.turn_id in rule_turns | step_turns | in_scenario:
            at = order[turn.record.turn_id]
            first_hit[turn.conversation] = min(first_hit.get(turn.conversation, at), at)
    for turn in recorded:
        if turn.record.turn_id in changed:
            assert turn.conversation in first_hit, (
                turn.record.turn_id,
                changed[turn.record.turn_id],
            )
            assert order[turn.record.turn_id] >= first_hit[turn.conversation]
    # turns the rule alone touched changed only in their words
    for turn_id in rule_turns - step_turns:
        assert changed[turn_id] <= {ChangeKind.ANSWER}, changed[turn_id]


def _stricter_copy(recorded: list[RecordedTurn], tmp_path: Path) -> tuple[Path, str, str]:
    """A copy whose first GLOBAL hard constraint with an expression now also fails every
    answer to one intent (one some recorded turns had, not most): no regeneration can
    satisfy it, so those turns must fall back. Returns the copy, the intent, the rule."""
    pack = load_pack(EXAMPLE_PACK)
    intents = Counter(t.record.context.canonical_intent for t in recorded)
    intent = next(i for i, n in intents.most_common() if i is not None and n < len(recorded) // 3)
    rule = next(
        r
        for r in pack.rules
        if r.is_hard_constraint and r.enforcement_expression and r.scope.value == "GLOBAL"
    )
    copy = _pack_copy(tmp_path)

    def stricter(data: dict[str, Any]) -> None:
        found = next(r for r in data["rules"] if r["id"] == rule.id)
        found["enforcement_expression"] = (
            f'({found["enforcement_expression"]}) and session_intent != "{intent}"'
        )

    _edit_yaml(copy / "rules.yaml", stricter)
    return copy, intent, rule.id


async def test_a_stricter_hard_constraint_lists_the_new_violations_and_fallbacks(
    recorded: list[RecordedTurn], kafka_settings: Settings, tmp_path: Path
) -> None:
    copy, intent, rule_id = _stricter_copy(recorded, tmp_path)
    fallback = next(t.text for t in load_pack(EXAMPLE_PACK).templates if t.id == "policy_fallback")
    run = await replay_pack(recorded, copy, kafka_settings)
    changed = _changed(run)
    using = {t.record.turn_id for t in recorded if t.record.context.canonical_intent == intent}
    replayed_using = {
        r.recorded.record.turn_id
        for r in _results(run)
        if r.replayed is not None and r.replayed.context.canonical_intent == intent
    }
    violating = {k for k, kinds in changed.items() if ChangeKind.NEW_VIOLATION in kinds}
    fallen_back = {k for k, kinds in changed.items() if ChangeKind.NEW_FALLBACK in kinds}
    # the constraint fails exactly the answers to that intent in the replay: every turn
    # recorded with it, and later turns of those conversations a fallback steered into it
    assert using and using <= violating
    assert violating == fallen_back == replayed_using
    conversation_of = {t.record.turn_id: t.conversation for t in recorded}
    touched = {conversation_of[k] for k in using}
    assert {conversation_of[k] for k in violating} <= touched
    for result in _results(run):
        if result.recorded.record.turn_id in violating:
            new = next(c for c in result.changes if c.kind is ChangeKind.NEW_VIOLATION)
            assert rule_id in new.after
            assert result.replayed is not None
            assert result.replayed.context.response_text == " ".join(fallback.split())
    assert summarize(run).by_kind[ChangeKind.NEW_FALLBACK.value] == len(violating)


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="no chromium (apt-get install chromium)"
)
async def test_the_html_report_opens_in_a_headless_browser(
    recorded: list[RecordedTurn], kafka_settings: Settings, tmp_path: Path
) -> None:
    copy, _intent, rule_id = _stricter_copy(recorded, tmp_path)
    run = await replay_pack(recorded, copy, kafka_settings)
    page = tmp_path / "replay.html"
    page.write_text(render(run, ReplayHeader("topics", str(copy), masked_texts=False)))
    shot = tmp_path / "replay.png"
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"]
    subprocess.run(
        [*browser, f"--screenshot={shot}", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    dom = subprocess.run(
        [*browser, "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    summary = summarize(run)
    assert '<table id="summary">' in dom
    assert f'<td class="kind">new_violation</td><td>{summary.by_kind["new_violation"]}</td>' in dom
    first = next(c for c in run.conversations if c.changed)
    assert f"<code>{first.conversation}</code>" in dom and rule_id in dom
    keep = os.environ.get("TURNSTREAM_REPLAY_SCREENSHOT")
    if keep:  # for a person to look at
        shutil.copy(shot, keep)


def test_the_cli_exports_from_the_topics_and_gates_on_a_kind(
    recorded: list[RecordedTurn], recording_settings: Settings, tmp_path: Path
) -> None:
    env = {**os.environ, **settings_env(recording_settings)}
    export = tmp_path / "turns.jsonl"
    done = subprocess.run(
        ["turnstream", "replay", "export", str(export), "--pack", str(EXAMPLE_PACK), "--no-mask"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(recorded)} turns of {TENANT}/{AGENT} (texts as recorded)" in done.stdout
    copy, _intent, _rule = _stricter_copy(recorded, tmp_path)
    report = tmp_path / "report.json"
    gate = subprocess.run(
        [
            "turnstream",
            "replay",
            "run",
            str(copy),
            "--from-export",
            str(export),
            "--fail-on",
            "new_violation,lost_tool_call",
            "--json",
            str(report),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert gate.returncode == 1, gate.stdout + gate.stderr
    figures = json.loads(report.read_text())
    violations = figures["summary"]["by_kind"]["new_violation"]
    assert f"FAILED (--fail-on): new_violation: {violations} turns" in gate.stdout
    assert figures["summary"]["turns"] == len(recorded) and figures["masked_texts"] is False
    assert "Traceback" not in gate.stderr
