"""KPI state indexes only over the events that have a state (transitions, creations)

Most audit events (field updates, signatures, task changes) carry no from/to state; indexing
their NULLs cost every unit of work two more index writes per event for nothing. Partial
indexes keep the KPI lookups (to_state = X / from_state = X) and skip those rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 11:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create(partial: bool) -> None:
    for col in ("to_state", "from_state"):
        where = sa.text(f"{col} IS NOT NULL") if partial else None
        op.create_index(f"ix_audit_events_{col}", "audit_events", [col, "at", "record_id"],
                        sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    op.drop_index("ix_audit_events_from_state", table_name="audit_events")
    op.drop_index("ix_audit_events_to_state", table_name="audit_events")
    _create(partial=True)


def downgrade() -> None:
    op.drop_index("ix_audit_events_from_state", table_name="audit_events")
    op.drop_index("ix_audit_events_to_state", table_name="audit_events")
    _create(partial=False)
