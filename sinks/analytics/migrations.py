"""Versioned schema migrations, applied in order at start and recorded in ``schema_migrations``.

A migration is a list of statements that may run more than once (``IF NOT EXISTS``,
``CREATE OR REPLACE VIEW``): two workers starting together against one server may both apply
a version, harmlessly. Never edit a released migration: append a new version. A view that
changes is re-created by a new version with its new definition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sinks.analytics import tables, views

logger = logging.getLogger(__name__)

MIGRATIONS_TABLE = "schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: Callable[[str], list[str]]
    """The statements for a database name."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "tables: turns and their parts, dead letters, webhook deliveries, analytics events",
        lambda db: [table.ddl(db) for table in tables.ALL_TABLES],
    ),
    Migration(2, "analyst views", lambda db: [view.ddl(db) for view in views.REPORT]),
    Migration(
        3,
        "turns.session_key holds a keyed pseudonym, not tenant:channel:channel_id; "
        "raw session keys written before are blanked",
        lambda db: [
            f"ALTER TABLE `{db}`.`turns` COMMENT COLUMN `session_key` "
            f"'{tables.SESSION_KEY_COMMENT}'",
            # a raw key has colons, a pseudonym (sk_<hex>) none; the key to turn the old
            # values into pseudonyms is not the migration's to know, so they are emptied
            f"ALTER TABLE `{db}`.`turns` UPDATE `session_key` = '' "
            "WHERE position(`session_key`, ':') > 0 SETTINGS mutations_sync = 1",
        ],
    ),
    Migration(
        4,
        "per-turn tables: the session (session_ref) ends the sorting key, so a turn id reused "
        "by another session keeps its own rows; rows written before have it empty",
        lambda db: [_session_in_key(db, table) for table in tables.TURN_TABLES],
    ),
)


def _session_in_key(db: str, table: tables.Table) -> str:
    """ClickHouse extends a sorting key only with a column added in the same statement (and
    without a default expression); on a table created with the column (and key) already,
    both clauses change nothing, so the statement may run again."""
    return (
        f"ALTER TABLE `{db}`.`{table.name}` "
        f"ADD COLUMN IF NOT EXISTS `{tables.SESSION_REF}` String AFTER `completed_at`, "
        f"MODIFY ORDER BY ({', '.join(table.order_by)}), "
        f"COMMENT COLUMN `{tables.SESSION_REF}` '{tables.SESSION_REF_COMMENT}'"
    )


class SqlRunner(Protocol):
    def command(self, sql: str) -> object: ...

    def query_rows(self, sql: str) -> list[tuple[object, ...]]: ...

    def insert_rows(
        self, table: str, rows: list[tuple[object, ...]], columns: tuple[str, ...]
    ) -> None: ...


def applied_versions(runner: SqlRunner, database: str) -> set[int]:
    rows = runner.query_rows(f"SELECT version FROM `{database}`.`{MIGRATIONS_TABLE}` FINAL")
    return {int(str(row[0])) for row in rows}


def apply_migrations(
    runner: SqlRunner, database: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[int]:
    """Create the database and apply every migration not yet recorded; the versions applied."""
    runner.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    runner.command(
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{MIGRATIONS_TABLE}` "
        f"(version UInt32, name String, applied_at {tables.TIME}) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = applied_versions(runner, database)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        for statement in migration.statements(database):
            runner.command(statement)
        runner.insert_rows(
            f"{database}.{MIGRATIONS_TABLE}",
            [(migration.version, migration.name, datetime.now(UTC))],
            ("version", "name", "applied_at"),
        )
        logger.info("analytics: applied migration %d (%s)", migration.version, migration.name)
        applied.append(migration.version)
    return applied
