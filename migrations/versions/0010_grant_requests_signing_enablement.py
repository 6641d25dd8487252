"""grant requests (privileged roles need a second administrator) and signing enablement
(identity verified by an administrator, e-signature policy accepted by the person)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 03:30:00

Issue 14, items 5 and 6. ``grant_requests`` holds a privileged role grant until a second
administrator approves or rejects it (workflow/identity/grants.py); ``signing_enablements``
holds the two facts without which nobody signs (workflow/identity/enablement.py), sealed with
the server key like role grants.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grant_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False, server_default=""),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_grant_requests_user_id_users")),
        sa.ForeignKeyConstraint(["requested_by_id"], ["users.id"],
                                name=op.f("fk_grant_requests_requested_by_id_users")),
        sa.ForeignKeyConstraint(["decided_by_id"], ["users.id"],
                                name=op.f("fk_grant_requests_decided_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grant_requests")),
    )
    with op.batch_alter_table("grant_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grant_requests_user_id"), ["user_id"], unique=False)
    op.create_table(
        "signing_enablements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seal", sa.String(length=64), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_signing_enablements_user_id_users")),
        sa.ForeignKeyConstraint(["recorded_by_id"], ["users.id"],
                                name=op.f("fk_signing_enablements_recorded_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_enablements")),
    )
    with op.batch_alter_table("signing_enablements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signing_enablements_user_id"), ["user_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signing_enablements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_enablements_user_id"))
    op.drop_table("signing_enablements")
    with op.batch_alter_table("grant_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grant_requests_user_id"))
    op.drop_table("grant_requests")
