"""record seal (keyed hash of the record row) and room for several roles on a signature

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:50:00
"""

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_TRIGGERS = [
    "CREATE TRIGGER signatures_no_update BEFORE UPDATE ON signatures "
    "BEGIN SELECT RAISE(ABORT, 'signatures is append-only: UPDATE refused'); END",
    "CREATE TRIGGER signatures_no_delete BEFORE DELETE ON signatures "
    "BEGIN SELECT RAISE(ABORT, 'signatures is append-only: DELETE refused'); END",
]


def _signer_role(length: int) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite rebuilds the table to change a column, which drops its triggers: put the
        # append-only triggers back at once
        with warnings.catch_warnings():
            # reflecting the foreign key's users table meets its expression index, which
            # SQLite reflection skips (and which this rebuild does not touch)
            warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
            with op.batch_alter_table("signatures", recreate="always") as batch_op:
                batch_op.alter_column("signer_role", type_=sa.String(length=length))
        for sql in _SQLITE_TRIGGERS:
            op.execute(sql)
    else:
        op.alter_column("signatures", "signer_role", type_=sa.String(length=length))


def upgrade() -> None:
    op.add_column("records", sa.Column("seal", sa.String(length=64), nullable=False,
                                       server_default=""))
    _signer_role(200)


def downgrade() -> None:
    _signer_role(40)
    with op.batch_alter_table("records") as batch_op:
        batch_op.drop_column("seal")
