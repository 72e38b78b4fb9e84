"""engine nodes (registry and heartbeats)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ars_engine.store.models

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('node_id', sa.String(length=100), nullable=False),
    sa.Column('instance', sa.String(length=40), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('site', sa.String(length=100), nullable=True),
    sa.Column('key_id', sa.String(length=40), nullable=True),
    sa.Column('started_at', ars_engine.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', ars_engine.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', ars_engine.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('node_id')
    )
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nodes_heartbeat_at'), ['heartbeat_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nodes_heartbeat_at'))
    op.drop_table('nodes')
