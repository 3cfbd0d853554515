"""The chaos soak's judges fail on what a customer would notice: an error response counted as
received, a swapped answer, a turn missing from or twice in analytics (bench/chaos_judge.py).
The last test reads a real embedded store through :func:`dump_analytics`."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos_judge import (
    dump_analytics,
    expected_analytics,
    failures,
    judge_analytics,
    judge_answers,
    judge_responses,
)
from schemas.domain.errors import TurnError
from schemas.domain.outcome import Resolution, TurnOutcome
from schemas.domain.phase import Phase
from schemas.domain.turn_input import Channel
from schemas.events.turn_response import ResponseStatus, TurnResponse

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def answer(turn_id: str, text: str, session: str = "ses-1", **update: object) -> TurnResponse:
    response = TurnResponse(
        turn_id=turn_id,
        session_id=session,
        tenant_id="acme",
        agent_id="support",
        channel=Channel.WEBCHAT,
        channel_id=f"chat-{session}",
        status=ResponseStatus.OK,
        text=text,
        outcome=TurnOutcome(resolution=Resolution.RESOLVED),
        responded_at=AT,
    )
    return response.model_copy(update=update)


def error(turn_id: str) -> TurnResponse:
    return TurnResponse(
        turn_id=turn_id,
        session_id="ses-1",
        tenant_id="acme",
        agent_id="support",
        channel=Channel.WEBCHAT,
        channel_id="chat-ses-1",
        status=ResponseStatus.ERROR,
        error=TurnError(phase=Phase.GENERATION, code="llm_failed", message="no model"),
        responded_at=AT,
    )


def clean_run() -> dict[str, object]:
    got = {"t1": answer("t1", "Your refund is on its way."), "t2": answer("t2", "Bye!")}
    result: dict[str, object] = {"state_mismatches": 0}
    result |= judge_answers(["t1", "t2"], got, {"t1": 1, "t2": 1})
    result |= judge_responses(got, dict(got))
    keys = expected_analytics(["t1", "t2"], got)
    result |= judge_analytics(keys, [list(keys)], [list(keys)])
    return result


def test_a_clean_run_passes_every_judge() -> None:
    result = clean_run()
    assert failures(result) == []
    assert result["received"] == result["sent"] == 2
    assert result["response_compared"] == 2 and result["analytics_rows"] == 2


def test_an_error_response_is_not_received_and_fails_the_soak() -> None:
    got = {"t1": answer("t1", "Sure."), "t2": error("t2")}
    result = judge_answers(["t1", "t2", "t3"], got, {"t1": 1, "t2": 1})
    assert (result["received"], result["error_responses"], result["lost"]) == (1, 1, 1)
    assert result["lost_turn_ids"] == ["t3"]
    assert result["error_examples"][0]["error"] == ("generation", "llm_failed")
    bad = failures({**clean_run(), **result})
    assert "error_responses 1" in bad and "lost 1" in bad and "received 1 of 3 sent" in bad


def test_a_swapped_answer_is_a_response_mismatch() -> None:
    replay = {"t1": answer("t1", "Your refund is on its way."), "t2": answer("t2", "Bye!")}
    swapped = {
        "t1": answer("t1", "Bye!"),
        "t2": answer("t2", "Your refund is on its way."),
    }
    result = judge_responses(swapped, replay)
    assert result["response_mismatches"] == 2
    assert result["response_mismatch_examples"][0]["text"] == {
        "got": "Bye!",
        "replay": "Your refund is on its way.",
    }
    assert "response_mismatches 2" in failures({**clean_run(), **result})


def test_a_customer_visible_field_other_than_the_text_is_compared() -> None:
    replay = {"t1": answer("t1", "Done.")}
    for changed in (
        answer("t1", "Done.", channel_id="chat-someone-else"),
        answer("t1", "Done.", session="ses-2"),
        answer("t1", "Done.", outcome=TurnOutcome(resolution=Resolution.REDIRECTED)),
        answer("t1", "Done.", coalesced_turn_ids=["t0"]),
    ):
        assert judge_responses({"t1": changed}, replay)["response_mismatches"] == 1
    later = answer("t1", "Done.", responded_at=datetime(2027, 1, 1, tzinfo=UTC))
    assert judge_responses({"t1": later}, replay)["response_mismatches"] == 0


def test_analytics_rows_missing_twice_or_extra_fail_the_soak() -> None:
    got = {"t1": answer("t1", "a"), "t2": answer("t2", "b"), "t3": error("t3")}
    keys = expected_analytics(["t1", "t2", "t3"], got)
    assert keys == {("acme", "ses-1", "t1"), ("acme", "ses-1", "t2")}  # no row for an error
    t1, t2 = ("acme", "ses-1", "t1"), ("acme", "ses-1", "t2")
    stranger = ("acme", "ses-9", "t1")  # the same turn id in another session is another turn

    missing = judge_analytics(keys, [[t1]])
    assert (missing["analytics_missing"], missing["analytics_duplicates"]) == (1, 0)
    twice_in_one = judge_analytics(keys, [[t1, t2, t2]])
    assert twice_in_one["analytics_duplicates"] == 1
    assert twice_in_one["analytics_in_several_stores"] == 0
    in_two_stores = judge_analytics(keys, [[t1, t2], [t2]])
    assert in_two_stores["analytics_duplicates"] == 1
    assert in_two_stores["analytics_in_several_stores"] == 1
    extra = judge_analytics(keys, [[t1, t2, stranger]])
    assert extra["analytics_extra"] == 1 and extra["analytics_missing"] == 0
    unmerged = judge_analytics(keys, [[t1, t2]], [[t1, t2, t2]])
    assert unmerged["analytics_unmerged_rows"] == 1 and unmerged["analytics_duplicates"] == 0

    base = {k: v for k, v in clean_run().items() if not k.startswith("analytics")}
    assert "analytics_missing 1" in failures({**base, **missing})
    assert "analytics_duplicates 1" in failures({**base, **in_two_stores})
    assert "analytics_extra 1" in failures({**base, **extra})
    assert failures({**base, **unmerged}) == []


WRITE_TWICE = """
import sys
from pathlib import Path
from sinks.analytics import rows
from tests.test_analytics_helpers import analytics_settings, make_turn, open_store

settings = analytics_settings(chdb_path=Path(sys.argv[1]), database="soak")
store = open_store(settings)
turn, other = make_turn("dump-1", session="s-dump"), make_turn("dump-2", session="s-dump")
store.write(rows.merge([rows.completed_turn_rows(turn), rows.completed_turn_rows(other)]))
store.write(rows.merge([rows.completed_turn_rows(turn)]))
store.close()
"""


def test_dump_analytics_reads_a_real_store_final_and_raw(tmp_path: Path) -> None:
    """Two records of one turn in a real embedded store: two raw rows until a merge, one
    row FINAL. Written and read by child processes, as the soak reads each stopped worker's
    store (chdb runs one data directory per process)."""
    store = tmp_path / "clickhouse"
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", WRITE_TWICE, str(store)], cwd=repo, check=True)
    dumped = dump_analytics(store, "soak")
    assert "error" not in dumped, dumped
    assert sorted(map(tuple, dumped["final"])) == [
        ("t1", "s-dump", "dump-1"),
        ("t1", "s-dump", "dump-2"),
    ]
    assert sorted(map(tuple, dumped["raw"])).count(("t1", "s-dump", "dump-1")) == 2
    keys = {("t1", "s-dump", "dump-1"), ("t1", "s-dump", "dump-2")}
    judged = judge_analytics(keys, [map(tuple, dumped["final"])], [map(tuple, dumped["raw"])])
    assert (judged["analytics_duplicates"], judged["analytics_unmerged_rows"]) == (0, 1)
