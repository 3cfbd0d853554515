"""Analytics keys a turn by its session too (issue 20): a turn id is unique within its session
(the gate's exactly-once key is tenant, session, turn id), so the same id in two sessions is
two turns with rows of their own, in a fresh database and in one migrated from before."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from sinks.analytics import rows, tables
from sinks.analytics.migrations import MIGRATIONS, apply_migrations
from sinks.analytics.store import AnalyticsStore, open_client
from tests.test_analytics_helpers import analytics_settings, make_turn, tool


@pytest.fixture
def store() -> Iterator[AnalyticsStore]:
    settings = analytics_settings()
    store = AnalyticsStore(open_client(settings), settings.analytics.database, location="chdb")
    yield store
    store.close()


def _count(store: AnalyticsStore, table: str, turn_id: str) -> int:
    found = store.query(
        f"SELECT count() FROM `{store.database}`.`{table}` FINAL WHERE turn_id = {{t:String}}",
        {"t": turn_id},
    ).rows
    return int(found[0][0])


def test_a_turn_id_reused_in_another_session_keeps_both_rows(store: AnalyticsStore) -> None:
    apply_migrations(store, store.database)
    one, two = (make_turn("same-id", session=s, tools=[tool("lookup", 5.0)]) for s in ("sA", "sB"))
    for turn in (one, two, one):  # the first one replayed: still one row for it
        store.write(rows.completed_turn_rows(turn))
    assert _count(store, "turns", "same-id") == 2
    assert _count(store, "tool_calls", "same-id") == 2


def test_migration_4_puts_the_session_in_the_key_of_tables_made_before_it(
    store: AnalyticsStore,
) -> None:
    database = store.database
    apply_migrations(store, database, MIGRATIONS[:3])
    for table in tables.TURN_TABLES:  # as the release before migration 4 made them
        old = replace(
            table,
            columns=tuple(c for c in table.columns if c[0] != tables.SESSION_REF),
            order_by=tuple(k for k in table.order_by if k != tables.SESSION_REF),
        )
        store.command(f"DROP TABLE `{database}`.`{table.name}`")
        store.command(old.ddl(database))
    assert apply_migrations(store, database) == [4]
    for turn in (make_turn("same-id", session="sA"), make_turn("same-id", session="sB")):
        store.write(rows.completed_turn_rows(turn))
    assert _count(store, "turns", "same-id") == 2
    key = store.query(
        "SELECT sorting_key FROM system.tables WHERE database = {d:String} AND name = 'turns'",
        {"d": database},
    ).rows
    assert str(key[0][0]).endswith(tables.SESSION_REF)
    for migration in MIGRATIONS[3:]:  # it may run again (two workers starting together)
        for statement in migration.statements(database):
            store.command(statement)
