"""record state as columnar segments

Revision ID: 0002
Revises: 0001

A row per record state cost a B-tree insert per row sent; a segment is one blob per batch
(see sfsync/state/segments.py). Existing states move over, one segment per (biller, sObject),
keeping their hashes: nothing is sent again because of the upgrade.
"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_CHUNK = 500_000


def upgrade() -> None:
    op.create_table('state_segments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('biller', sa.String(length=40), nullable=False),
    sa.Column('sobject', sa.String(length=80), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('merged', sa.Boolean(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('hashes', sa.LargeBinary(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_state_segments')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('state_segments', schema=None) as batch_op:
        batch_op.create_index('ix_state_segments_scope', ['biller', 'sobject', 'id'], unique=False)
    _move_rows()
    with op.batch_alter_table('record_state', schema=None) as batch_op:
        batch_op.drop_index('ix_record_state_sf_id')
    op.drop_table('record_state')


def _move_rows() -> None:
    from sfsync.state import segments

    conn = op.get_bind()
    segs = sa.table('state_segments', sa.column('biller'), sa.column('sobject'), sa.column('rows'),
                    sa.column('merged'), sa.column('run_id'), sa.column('created_at'), sa.column('hashes'), sa.column('data'))
    scopes = conn.execute(sa.text("SELECT DISTINCT biller, sobject FROM record_state")).fetchall()
    for biller, sobject in scopes:
        query = sa.text("SELECT key, sf_id, hash FROM record_state WHERE biller = :b AND sobject = :s ORDER BY key")
        result = conn.execute(query.execution_options(stream_results=True), {"b": biller, "s": sobject})
        while part := result.fetchmany(_CHUNK):  # a segment per chunk: memory stays one chunk's worth
            table = segments.build([r[0] for r in part], [r[1] for r in part], [int(r[2]) for r in part])
            hashes, data = segments.encode(table)
            conn.execute(sa.insert(segs).values(biller=biller, sobject=sobject, rows=table.num_rows, merged=False,
                                                run_id=None, created_at=datetime.now(UTC), hashes=hashes, data=data))


def downgrade() -> None:
    op.create_table('record_state',
    sa.Column('biller', sa.String(length=40), nullable=False),
    sa.Column('sobject', sa.String(length=80), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('sf_id', sa.String(length=18), nullable=True),
    sa.Column('hash', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('biller', 'sobject', 'key', name=op.f('pk_record_state'))
    )
    with op.batch_alter_table('record_state', schema=None) as batch_op:
        batch_op.create_index('ix_record_state_sf_id', ['sf_id'], unique=False)
    op.drop_table('state_segments')
