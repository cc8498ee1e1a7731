"""insert fences: a generation per object without an External ID

Revision ID: 0003
Revises: 0002

Two sfsync processes (a monthly load, a webhook refresh) inserting records of one object
without an External ID at the same moment would both insert: the org has no key to refuse
the second. Inserts of such an object take a fence (a named run lock) and bump the object's
generation here, so that a writer whose matcher cache predates another's inserts asks the org
again (see sfsync/state/fence.py).
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('insert_fences',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('generation', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_insert_fences')),
    )


def downgrade() -> None:
    op.drop_table('insert_fences')
