"""the open-tasks-by-assignee index holds assigned tasks only

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 16:15:00

Issue 18 target 2 (R-PERF-66): ``ix_tasks_open_assignee_due`` (migration 0012) indexed every
open task, the unassigned ones under a NULL assignee. Measured at a million records (250,000
unassigned open tasks): once SQLite's statistics put ~1,650 rows behind an average assignee,
its planner read a claimable branch of the inbox (``assignee_id IS NULL AND role = :r``)
through this index instead of ``ix_tasks_claimable_role_due``, walking every unassigned open
task of the site in due order to find a role's few: 2.3-2.6 s of CPU for an inbox page
(38 ms before the statistics changed). Indexing only assigned open tasks (``assignee_id IS
NOT NULL``, implied by the "mine" branch's ``assignee_id = :me`` on both databases) makes
this index unusable for a claimable branch, whatever the statistics say; it is also smaller.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["assignee_id", "due_at", "id"]


def _create(where: str) -> None:
    op.create_index("ix_tasks_open_assignee_due", "tasks", COLUMNS,
                    sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    op.drop_index("ix_tasks_open_assignee_due", table_name="tasks")
    _create("status = 'open' AND assignee_id IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_tasks_open_assignee_due", table_name="tasks")
    _create("status = 'open'")
