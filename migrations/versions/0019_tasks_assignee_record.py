"""tasks by assignee and record: the visibility rule's "had a task on it" for lists

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 15:50:00

Issue 18 target 2 (R-PERF-62): the SQL twin of the visibility rule (workflow/rules.py
``visible_clause``) lets a person see a record they have (had) a task on, open or done:
``EXISTS (tasks WHERE record_id = records.id AND assignee_id = :me)``. Under its OR,
PostgreSQL runs that EXISTS once as a hashed subplan, "the records :me has a task on" -
which no index served since migration 0012 made the assignee index partial (open tasks
only): the record list and search pages read every task of the site (a sequential scan of
tasks, millions of rows at a million records) for a person whose roles do not cover every
workflow. This index makes that subplan a walk of the person's own tasks (an index-only
scan: what they worked on, not the site) and serves the per-record probe as well.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tasks_assignee_record", "tasks", ["assignee_id", "record_id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_assignee_record", table_name="tasks")
