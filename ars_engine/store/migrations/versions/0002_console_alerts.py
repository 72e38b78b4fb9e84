"""console operators and sessions, alerts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ars_engine.store.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('rule', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.Column('value', sa.Double(), nullable=True),
    sa.Column('since', ars_engine.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', ars_engine.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('notified', sa.String(length=16), nullable=True),
    sa.Column('notify_attempts', sa.Integer(), nullable=False),
    sa.Column('next_notify_at', ars_engine.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('operators',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('password_hash', sa.String(length=300), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', ars_engine.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('console_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('operator_id', sa.String(length=40), nullable=False),
    sa.Column('created_at', ars_engine.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', ars_engine.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_console_sessions_operator_id'), ['operator_id'], unique=False)
    # usage per month and the console's history across tenants read calls by creation time
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_created', ['created_at'], unique=False)
        # /metrics counts calls by state and outcome at every scrape: from the index alone
        batch_op.create_index('ix_calls_state_outcome', ['state', 'outcome'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_state_outcome')
        batch_op.drop_index('ix_calls_created')
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_sessions_operator_id'))
        batch_op.drop_index(batch_op.f('ix_console_sessions_expires_at'))

    op.drop_table('console_sessions')
    op.drop_table('operators')
    op.drop_table('alerts')
