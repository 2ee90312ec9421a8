"""The reproducibility gate: which builds agreed for a publication, a recipe's declared
reason for not reproducing, and a plan package's gate summary and divergence report

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reproduced', sa.Text(), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('gate', sa.String(length=20), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('not_reproducible', sa.Text(), nullable=False,
                                      server_default=''))
    with op.batch_alter_table('plan_packages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gate', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('report', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('plan_packages', schema=None) as batch_op:
        batch_op.drop_column('report')
        batch_op.drop_column('gate')
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_column('not_reproducible')
        batch_op.drop_column('gate')
        batch_op.drop_column('reproduced')
