"""KPI indexes on audit_events: milestone entries per record, and events leaving a state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 10:30:00

The KPI milestones (workflow/kpi/context.py ``Scope.milestone``) look for the records that entered a
milestone's stop state in the period (``ix_audit_events_to_state``: state, time); the
effectiveness-check pass rate reads the transitions leaving one state in a period
(``ix_audit_events_from_state``). bench/kpi.py: 100,000 records and 1,000,000 events.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_audit_events_to_state', 'audit_events',
                    ['to_state', 'at', 'record_id'], unique=False)
    op.create_index('ix_audit_events_from_state', 'audit_events',
                    ['from_state', 'at', 'record_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_events_from_state', table_name='audit_events')
    op.drop_index('ix_audit_events_to_state', table_name='audit_events')
