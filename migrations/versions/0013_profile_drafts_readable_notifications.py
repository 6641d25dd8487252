"""notification preferences, form drafts, message details

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 09:00:00

Issue 17, items 6 to 8. ``users.notify_prefs``: which kinds of notification reach a person by
e-mail and in the app (their profile page). ``form_drafts``: a person's unsubmitted form, kept
server-side while they type so an idle timeout loses nothing; never part of a record, deleted
on submit. ``outbox.details``: what a message is about (labels, due date, the steps expected,
the state visit of the task it announces), written when it is queued and read at delivery.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("notify_prefs", sa.JSON(), nullable=True))
    op.add_column("outbox", sa.Column("details", sa.JSON(), nullable=True))
    op.create_table(
        "form_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("form_key", sa.String(length=200), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_form_drafts_user_id_users")),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"],
                                name=op.f("fk_form_drafts_record_id_records")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_drafts")),
        sa.UniqueConstraint("user_id", "form_key", name=op.f("uq_form_drafts_user_id_form_key")),
    )


def downgrade() -> None:
    op.drop_table("form_drafts")
    # plain DROP COLUMN (SQLite 3.35+): a batch rebuild of users would drop its expression
    # index
    op.drop_column("outbox", "details")
    op.drop_column("users", "notify_prefs")
