"""KPI indexes: records by workflow covering what the cohorts read; audit_events' state
entries per record

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 12:40:00

Issue 18 item 5 (R-PERF-41): almost every KPI cohort reads the records of one workflow by
these columns only (open / closed in the period / due in the period, the version for
milestones, the initiator for visibility). Without this index each of the ~30 metrics read
the whole (wide: the JSON data) row of every record of its workflow; with it SQLite and
PostgreSQL read the index alone (bench/kpi.py, 100,000 records).

R-PERF-42: a milestone's cohort reads, for each record that entered the stop state in the
period, its entries into the start and stop states: ix_audit_events_record_state (record,
state, time; partial: only create and transition events carry a state) answers that from the
index, where before SQLite read every entry into those states of every workflow (``closed``
is a state of most) and looked each one's record up.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["workflow_key", "closed_at", "created_at", "outcome", "due_current", "due_original",
           "definition_hash", "created_by_id"]


def upgrade() -> None:
    op.create_index("ix_records_kpi", "records", COLUMNS)
    op.create_index("ix_audit_events_record_state", "audit_events",
                    ["record_id", "to_state", "at"],
                    sqlite_where=sa.text("to_state IS NOT NULL"),
                    postgresql_where=sa.text("to_state IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_audit_events_record_state", table_name="audit_events")
    op.drop_index("ix_records_kpi", table_name="records")
