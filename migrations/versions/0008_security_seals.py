"""keyed seals on users, role grants, API tokens and the system chain heads; on PostgreSQL the
append-only triggers fire ALWAYS (also under session_replication_role = replica)

The new ``seal`` columns start empty; ``qms db upgrade`` / ``qms init`` (or ``qms db seal``)
seal the existing rows with the server key right after the migration (the key is kept
outside the database, so a migration cannot). Until then the engine honours no unsealed grant.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 23:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEALED = ("users", "role_grants", "api_tokens", "audit_chains")
APPEND_ONLY = ("audit_events", "signatures", "definition_versions")


def upgrade() -> None:
    for table in SEALED:
        op.add_column(table, sa.Column("seal", sa.String(length=64), nullable=False,
                                       server_default=""))
    if op.get_bind().dialect.name == "postgresql":
        # a trigger enabled ALWAYS also fires for a session in replica mode, so
        # `SET session_replication_role = replica` no longer bypasses it
        for table in APPEND_ONLY:
            op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_append_only")
            op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")
            op.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_no_truncate")
    for table in SEALED:
        # a plain DROP COLUMN (SQLite 3.35+): a batch rebuild of users would drop its
        # expression index
        op.drop_column(table, "seal")
