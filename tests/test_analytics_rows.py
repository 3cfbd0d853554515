"""Row builders, the read-only statement check and the SQL endpoint (in-process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from schemas.domain.enforcement import EnforcementLane
from schemas.events.analytics import AnalyticsEvent
from schemas.events.completed_turn import CompletedTurn
from schemas.samples import sample_events
from sinks.analytics import rows, tables
from sinks.analytics.query_server import (
    Endpoint,
    EndpointError,
    QueryRefusedError,
    QueryServer,
    check_read_only,
)
from sinks.analytics.store import AnalyticsStore, QueryResult
from tests.test_analytics_helpers import (
    analytics_settings,
    attempt,
    make_turn,
    open_store,
    varied_turns,
)


def sample(model: type) -> object:
    return next(event for event in sample_events() if isinstance(event, model))


def test_the_sample_turn_fills_every_turn_table() -> None:
    turn = sample(CompletedTurn)
    assert isinstance(turn, CompletedTurn)
    batch = rows.completed_turn_rows(turn)
    assert batch.counts() == {
        "turns": 1,
        "phase_timings": 3,
        "retrieval_results": 2,
        "rule_matches": 2,
        "scenario_events": 3,  # continued, skipped collect-email, entered confirm-refund
        "tool_calls": 2,
        "enforcement_results": 2,
        "enforcement_violations": 1,
        "outcomes": 1,
    }
    (row,) = batch.rows["turns"]
    turn_row = dict(zip(tables.TURNS.column_names, row, strict=True))
    assert turn_row["messages"] == 2  # one coalesced message
    assert turn_row["total_ms"] == 900.0
    assert (turn_row["tool_errors"], turn_row["prompt_tokens"]) == (1, 1234)
    assert turn_row["message_text"] == "" and turn_row["response_text"] == ""
    texts = rows.completed_turn_rows(turn, store_texts=True, sensitive_fields=()).rows["turns"][0]
    message = turn.record.context.input.message
    assert message.endswith("My email is jo@ex.com")  # in play
    assert message.replace("jo@ex.com", "[email]") in texts  # stored, masked
    unknown_pack = rows.completed_turn_rows(turn, store_texts=True).rows["turns"][0]
    assert unknown_pack[-2:] == ("", "")  # which fields are sensitive is not known: no texts


def test_rows_do_not_depend_on_when_they_are_built() -> None:
    turn = varied_turns(1)[0]
    assert rows.completed_turn_rows(turn).rows == rows.completed_turn_rows(turn).rows


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        (
            [attempt(1, [("r", EnforcementLane.EXPRESSION)], remediated=True), attempt(2)],
            "regenerated",
        ),
        ([attempt(1, [("r", EnforcementLane.EXPRESSION)], fallback=True)], "fallback"),
        ([attempt(1, [("r", EnforcementLane.RELEVANCE)])], "unremediated"),
    ],
)
def test_each_violation_records_what_became_of_the_answer(
    attempts: list[object], expected: str
) -> None:
    batch = rows.completed_turn_rows(make_turn("T", enforcement=attempts))  # type: ignore[arg-type]
    assert [row[-1] for row in batch.rows["enforcement_violations"]] == [expected]


def test_urls_lose_credentials_and_query() -> None:
    assert (
        rows.redact_url("https://u:p@h.example:8443/a/b?token=x#f") == "https://h.example:8443/a/b"
    )
    assert rows.redact_url("http://[::1]:9/x") == "http://[::1]:9/x"
    assert rows.redact_url("http://h.example") == "http://h.example/"


def test_analytics_events_and_poison_records_become_rows() -> None:
    event = sample(AnalyticsEvent)
    assert isinstance(event, AnalyticsEvent)
    (row,) = rows.analytics_event_rows(event).rows["analytics_events"]
    assert row[1] == event.event_id and row[-1]["rule_id"] == '"rule-refund-window"'
    (poison,) = rows.poison_rows(
        "ts.turn.completed", 1, 42, b"acme:webchat:x", b"junk", "codec.bad_marker", "d",
        datetime(2025, 1, 1, tzinfo=UTC),
    ).rows["dead_letters"]  # fmt: skip
    assert poison[:5] == ("acme", "ts.turn.completed", 1, 42, "codec.bad_marker")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select * from turns;",
        "-- a comment\nWITH x AS (SELECT 1) SELECT * FROM x",
        "/* c */ SHOW TABLES",
        "DESCRIBE TABLE turns",
        "EXPLAIN SELECT 1",
        "(SELECT 1)",
        "SELECT ';' AS semicolon",
    ],
)
def test_read_only_statements_pass(sql: str) -> None:
    check_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "",
        "-- only a comment",
        "DROP TABLE turns",
        "INSERT INTO turns VALUES (1)",
        "SELECT 1; DROP TABLE turns",
        "ALTER TABLE turns DELETE WHERE 1",
        "SET readonly = 0",
        "OPTIMIZE TABLE turns FINAL",
        "/* SELECT */ TRUNCATE TABLE turns",
    ],
)
def test_other_statements_are_refused(sql: str) -> None:
    with pytest.raises(QueryRefusedError):
        check_read_only(sql)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[AnalyticsStore, Endpoint]]:
    store = open_store(analytics_settings())
    store.write(rows.merge(rows.completed_turn_rows(t) for t in varied_turns(6)))
    server = QueryServer(store, 0)
    server.start()
    try:
        yield store, Endpoint(server.port)
    finally:
        server.stop()
        store.close()


def test_the_endpoint_answers_queries_with_parameters(
    served: tuple[AnalyticsStore, Endpoint],
) -> None:
    store, endpoint = served
    assert endpoint.health() == {"location": store.location, "database": store.database}
    result = endpoint.query(
        "SELECT turn_id, completed_at FROM turns FINAL WHERE agent_id = {a:String} "
        "ORDER BY turn_id",
        {"a": "a0"},
    )
    assert result.columns == ["turn_id", "completed_at"]
    assert [r[0] for r in result.rows] == ["turn-00000", "turn-00002", "turn-00004"]
    assert result.rows[0][1].startswith("2025-06-02T10:00")


def test_the_endpoint_refuses_writes(served: tuple[AnalyticsStore, Endpoint]) -> None:
    _, endpoint = served
    with pytest.raises(EndpointError, match="read-only"):
        endpoint.query("DROP TABLE turns")
    with pytest.raises(EndpointError, match=r"(?i)readonly"):  # ClickHouse's own refusal
        endpoint.query("SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')")
    with pytest.raises(EndpointError, match=r"UNKNOWN_TABLE|does not exist"):
        endpoint.query("SELECT * FROM no_such_table")
    assert endpoint.query("SELECT count() FROM turns FINAL").rows == [(6,)]


def test_nothing_listening_means_no_endpoint() -> None:
    assert Endpoint(1).health(timeout_s=0.5) is None


def test_results_print_as_a_table_tsv_or_json() -> None:
    from streams.cli_analytics import format_result

    result = QueryResult(
        ["tenant_id", "turns", "rate", "tags"],
        ["String", "UInt64", "Float64", "Array(String)"],
        [("acme", 12, 0.25, ["a", "b"]), ("b", 3, None, [])],
    )
    table = format_result(result).splitlines()
    assert table[0].split() == ["tenant_id", "turns", "rate", "tags"]
    assert table[2].split() == ["acme", "12", "0.25", '["a",', '"b"]']
    assert table[3].split() == ["b", "3", "NULL", "[]"] and table[-1] == "(2 rows)"
    assert format_result(result, "tsv").splitlines()[1] == 'acme\t12\t0.25\t["a", "b"]'
    assert json.loads(format_result(result, "json"))[1] == {
        "tenant_id": "b",
        "turns": 3,
        "rate": None,
        "tags": [],
    }
