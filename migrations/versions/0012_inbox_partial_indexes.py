"""inbox indexes: open tasks by assignee, unassigned open tasks by role, each in due order

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 09:00:00

Issue 18, target 2. The inbox reads "my open tasks" and "open tasks claimable by each of my
roles" as separate branches in (due, id) order (workflow/rules.py inbox_branches); these two
partial indexes serve them and stop after a page, however many tasks the site holds. They
replace ``ix_tasks_assignee_status_due`` and ``ix_tasks_role_status_due``, which also indexed
every done task (most of the table) and left the claimable branch to walk every unassigned
open task of the site and filter the roles afterwards.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MINE = sa.text("status = 'open'")
CLAIMABLE = sa.text("status = 'open' AND assignee_id IS NULL")


def upgrade() -> None:
    op.drop_index("ix_tasks_assignee_status_due", table_name="tasks")
    op.drop_index("ix_tasks_role_status_due", table_name="tasks")
    op.create_index("ix_tasks_open_assignee_due", "tasks", ["assignee_id", "due_at", "id"],
                    sqlite_where=MINE, postgresql_where=MINE)
    op.create_index("ix_tasks_claimable_role_due", "tasks", ["role", "due_at", "id"],
                    sqlite_where=CLAIMABLE, postgresql_where=CLAIMABLE)


def downgrade() -> None:
    op.drop_index("ix_tasks_claimable_role_due", table_name="tasks")
    op.drop_index("ix_tasks_open_assignee_due", table_name="tasks")
    op.create_index("ix_tasks_role_status_due", "tasks", ["role", "status", "due_at"])
    op.create_index("ix_tasks_assignee_status_due", "tasks", ["assignee_id", "status", "due_at"])
