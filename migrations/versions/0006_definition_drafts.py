"""definition drafts: process owners' working copies, published under change control

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 11:00:00

A draft holds a definition's YAML source while a process owner edits it (optimistic saves
by ``version``); submitting it starts a definition_change record whose QA-signed approval
publishes it as the next immutable ``definition_versions`` row (workflow/change_control/publishing.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'definition_drafts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=40), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('base_version', sa.Integer(), nullable=True),
        sa.Column('status', sa.Enum('draft', 'in_approval', 'published', 'withdrawn',
                                    name='draft_status', native_enum=False, length=20),
                  nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('author_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by_id', sa.Integer(), nullable=False),
        sa.Column('submitted_hash', sa.String(length=64), nullable=True),
        sa.Column('change_record_id', sa.Integer(), nullable=True),
        sa.Column('published_version_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['author_id'], ['users.id'],
                                name=op.f('fk_definition_drafts_author_id_users')),
        sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'],
                                name=op.f('fk_definition_drafts_updated_by_id_users')),
        sa.ForeignKeyConstraint(['change_record_id'], ['records.id'],
                                name=op.f('fk_definition_drafts_change_record_id_records')),
        sa.ForeignKeyConstraint(
            ['published_version_id'], ['definition_versions.id'],
            name=op.f('fk_definition_drafts_published_version_id_definition_versions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_definition_drafts')),
    )
    with op.batch_alter_table('definition_drafts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_definition_drafts_key'), ['key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('definition_drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_definition_drafts_key'))
    op.drop_table('definition_drafts')
