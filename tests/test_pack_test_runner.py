"""Pack conversation tests: reading tests/*.yaml, comparing a turn, the report and exit code.

Unit tests of the runner's pure parts: the turns are canned records (schemas/samples.py), so no
model or broker runs here. Both example packs' suites are played for real by
tests/test_pack_conversations.py (in process and through Kafka).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from processors.pack.conversation_check import Observed, check_turn
from processors.pack.conversation_run import SuiteReport, format_report, play
from processors.pack.conversations import load_suite
from schemas import samples
from schemas.domain.turn_input import TurnInput
from schemas.events.turn_response import ResponseStatus, TurnResponse
from schemas.pack.conversations import TurnExpectation
from sinks.pack_files import PackFiles, load_pack
from streams import pack_test
from streams.cli import main

REPO = Path(__file__).resolve().parents[1]
PACKS = [REPO / "packs" / "acme-shop" / "support", REPO / "packs" / "brightwatt-energy" / "care"]


def ok_response() -> TurnResponse:
    return next(
        e
        for e in samples.sample_events()
        if isinstance(e, TurnResponse) and e.status is ResponseStatus.OK
    )


def observed() -> Observed:
    """The sample turn, its scenario ids made pack keys: intent refund_request, scenario
    refund CONTINUE from collect_order into confirm_refund (collect_email skipped), text
    "Shall I refund order A-1009?"."""
    record = samples.turn_record()
    decisions = [
        d.model_copy(
            update={
                "scenario_id": "refund",
                "from_step_id": "collect_order",
                "entered_step_id": "confirm_refund",
                "skipped_step_ids": ["collect_email"],
            }
        )
        for d in record.context.scenario_decisions
    ]
    context = record.context.model_copy(update={"scenario_decisions": decisions})
    return Observed(ok_response(), record.model_copy(update={"context": context}))


def expect(**given: object) -> TurnExpectation:
    return TurnExpectation.model_validate(given)


def test_a_turn_that_meets_its_expectations_has_no_mismatch() -> None:
    wanted = expect(
        intent="refund_request",
        scenario="refund",
        action="CONTINUE",
        step="confirm_refund",
        skipped=["collect_email"],
        paused=[],
        says=["refund ORDER a-1009"],
        never_says=["voucher"],
    )
    assert check_turn(wanted, observed()) == []


def test_scenario_null_means_no_scenario_moved() -> None:
    [miss] = check_turn(expect(scenario=None), observed())
    assert (miss.key, miss.expected, miss.got) == ("scenario", "null", "[refund]")
    [miss] = check_turn(expect(scenario="other", step="x"), observed())[1:]
    assert miss.got.startswith("scenario other did not move")


def test_each_failed_expectation_is_one_mismatch_with_expected_and_got() -> None:
    found = check_turn(
        expect(intent="goodbye", never_says=["refund"], says=["RF-1"], data={"order_id": "x"}),
        observed(),
    )
    by_key = {m.key: m for m in found}
    assert set(by_key) == {"intent", "never_says", "says", "data.order_id"}
    assert (by_key["intent"].expected, by_key["intent"].got) == ("goodbye", "refund_request")
    assert "Shall I refund order A-1009?" in by_key["says"].got


def test_an_error_response_fails_the_turn_whatever_it_expected() -> None:
    error = next(
        e
        for e in samples.sample_events()
        if isinstance(e, TurnResponse) and e.status is ResponseStatus.ERROR
    )
    found = check_turn(TurnExpectation(), Observed(error, None))
    assert [(m.key, m.expected) for m in found] == [("status", "OK")]
    assert "unknown_agent" in found[0].got


def test_scenario_details_without_a_scenario_are_refused() -> None:
    with pytest.raises(ValueError, match="give `scenario` too"):
        expect(step="confirm_refund")


def write_suite(folder: Path, text: str) -> Path:
    pack = folder / "acme-shop" / "support"
    (pack / "tests").mkdir(parents=True)
    for item in PACKS[0].iterdir():
        if item.name != "tests":
            (pack / item.name).symlink_to(item)
    (pack / "tests" / "t.yaml").write_text(text, encoding="utf-8")
    return pack


def test_a_typo_in_a_test_is_reported_at_its_line_not_run(tmp_path: Path) -> None:
    pack_dir = write_suite(
        tmp_path,
        "conversations:\n"
        "  - name: one\n"
        "    turns:\n"
        "      - say: hi\n"
        "        expect: {intent: greting}\n"
        "  - name: two\n"
        "    turns:\n"
        "      - say: hi\n"
        "        expect: {intnt: greeting}\n",
    )
    suite = load_suite(PackFiles(pack_dir), load_pack(pack_dir))
    assert suite.conversations == ()
    assert [(e.file, e.line, e.code) for e in suite.errors] == [
        ("tests/t.yaml", 5, "unknown_reference"),
        ("tests/t.yaml", 9, "unknown_key"),
    ]
    assert "no intent 'greting'" in suite.errors[0].message


def test_a_failing_expectation_prints_a_diff_and_fails_the_run(tmp_path: Path) -> None:
    pack_dir = write_suite(
        tmp_path,
        "conversations:\n"
        "  - name: greets back\n"
        "    turns:\n"
        "      - say: hello\n"
        "      - say: hi again\n"
        "        expect: {intent: greeting, says: [Welcome]}\n",
    )
    suite = load_suite(PackFiles(pack_dir), load_pack(pack_dir))
    said: list[TurnInput] = []

    async def say(given: TurnInput) -> Observed:
        said.append(given)
        return observed()

    report = asyncio.run(play(suite, "acme-shop", "support", say, run_id="r1"))
    assert [t.message for t in said] == ["hello", "hi again"]
    assert {t.session_id for t in said} == {"pack-test-r1-1"}  # one session per conversation
    assert not report.passed
    lines = format_report(report, "packs/x", "in process")
    assert lines[0] == "FAIL tests/t.yaml:2: 'greets back', turn 2: 'hi again'"
    assert lines[1:3] == ["  intent: expected greeting", "               got refund_request"]
    assert "  says: expected 'Welcome'" in lines
    assert lines[-1].startswith("packs/x: FAILED (in process): 1 of 1 conversations")


def test_all_passed_gives_one_summary_line() -> None:
    report = SuiteReport(conversations=2, turns=5, checks=17)
    assert report.passed
    assert format_report(report, "packs/x", "in process") == [
        "packs/x: all passed (in process): 2 conversations, 5 turns, 17 checks"
    ]
    assert not SuiteReport().passed  # nothing ran: not a pass


def test_cli_exit_status_follows_the_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = SuiteReport(conversations=1, turns=1, checks=1)
    failing.load_errors = ()
    outcomes = iter([SuiteReport(conversations=1, turns=1, checks=2), failing])

    async def fake_play(pack_dir: Path, settings: object, **_: object) -> SuiteReport:
        report = next(outcomes)
        if report is failing:
            from processors.pack.conversation_check import Mismatch
            from processors.pack.conversation_run import TurnFailure

            report.failures.append(
                TurnFailure("c", "tests/t.yaml", 2, 1, "hi", (Mismatch("intent", "a", "b"),))
            )
            report.failed_conversations.add("c")
        return report

    monkeypatch.setattr(pack_test, "play_in_process", fake_play)
    assert main(["pack", "test", str(PACKS[0])]) == 0
    assert "all passed" in capsys.readouterr().out
    assert main(["pack", "test", str(PACKS[0])]) == 1
    out = capsys.readouterr().out
    assert "FAIL tests/t.yaml:2: 'c', turn 1: 'hi'" in out
    assert "  intent: expected a" in out


def test_cli_refuses_a_pack_that_does_not_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "agent.yaml").write_text("tenant_id: [\n", encoding="utf-8")
    assert main(["pack", "test", str(tmp_path)]) == 1
    assert "no test ran" in capsys.readouterr().out


@pytest.mark.parametrize("pack_dir", PACKS, ids=lambda p: p.parent.name)
def test_example_pack_suites_read_cleanly(pack_dir: Path) -> None:
    suite = load_suite(PackFiles(pack_dir), load_pack(pack_dir))
    assert suite.errors == ()
    assert len(suite.conversations) >= 5
