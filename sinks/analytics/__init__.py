"""ClickHouse analytics: tables, migrations, row builders, analyst views, the query endpoint."""
