"""login security (issue 14): server-side login challenges for the second-factor step,
throttle counters shared by every worker, time-limited lockout on users, suspension of
API tokens after an administrator's reset, and the client address of each login session

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 03:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_challenges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("password_version", sa.String(length=64), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_login_challenges_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_challenges")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_login_challenges_token_hash")),
    )
    op.create_index(op.f("ix_login_challenges_user_id"), "login_challenges", ["user_id"])
    op.create_table(
        "throttle_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_throttle_counters")),
    )
    op.create_index(op.f("ix_throttle_counters_expires_at"), "throttle_counters", ["expires_at"])
    op.add_column("users", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("lockout_count", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("api_tokens", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_tokens", sa.Column("suspend_reason", sa.String(length=200), nullable=True))
    op.add_column("user_sessions", sa.Column("ip", sa.String(length=64), nullable=False, server_default=""))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite 3.35+): a batch rebuild of users would drop its expression
    # index
    op.drop_column("user_sessions", "ip")
    op.drop_column("api_tokens", "suspend_reason")
    op.drop_column("api_tokens", "suspended_at")
    op.drop_column("users", "lockout_count")
    op.drop_column("users", "locked_until")
    op.drop_index(op.f("ix_throttle_counters_expires_at"), table_name="throttle_counters")
    op.drop_table("throttle_counters")
    op.drop_index(op.f("ix_login_challenges_user_id"), table_name="login_challenges")
    op.drop_table("login_challenges")
