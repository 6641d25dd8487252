"""users: a person's department (area), read by the ``not_in_area`` separation rule

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 12:00:00

Issue 21 item 1: an auditor may not audit their own area. The engine needs to know each
person's area; an administrator sets it (audited on the system chain, sealed when set).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("department", sa.String(length=100), nullable=True))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite 3.35+): a batch rebuild of users would drop its expression
    # index
    op.drop_column("users", "department")
