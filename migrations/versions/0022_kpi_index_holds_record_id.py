"""the KPI index on records holds the record id on PostgreSQL

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 22:10:00

Issue 18 target 5 (R-PERF-41): ``ix_records_kpi`` (0017) was meant to cover what the KPI
cohorts read of a record, so that they never read the wide rows (the JSON data). Every
cohort also selects the record's id. SQLite keeps the row id in every index, so there the
index covers; PostgreSQL does not, so each cohort read the rows as well, and at a million
records the planner scanned the whole table instead (``Parallel Seq Scan on records``,
730 MB, for the deviations of one milestone). The index now INCLUDEs the id on PostgreSQL
(stored in the index's leaf pages, not part of its key), so the cohorts read it alone.
Measured on the 100k-record KPI set: the dashboard about 10 % faster.

SQLite: nothing to do (the row id is the primary key).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["workflow_key", "closed_at", "created_at", "outcome", "due_current", "due_original",
           "definition_hash", "created_by_id"]


def _rebuild(include: list[str]) -> None:
    op.drop_index("ix_records_kpi", table_name="records")
    op.create_index("ix_records_kpi", "records", COLUMNS, postgresql_include=include)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(["id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild([])
