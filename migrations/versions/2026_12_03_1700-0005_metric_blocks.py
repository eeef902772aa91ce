"""metrics as packed blocks with rollups (metric_blocks); the rows of metrics moved there

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 17:00:00

The data moves through ``service.store.metrics.SeriesWriter`` (block format 1 of
``service.store.seriescodec``), a series at a time and 100,000 rows at a time, so a
long job's history never has to fit in memory. Where an old resumed job wrote a step
twice, its first point stands (what the old downsampler showed). Downgrading writes
the raw points back as rows.
"""
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_ROWS = 100_000

_old = sa.table('metrics', sa.column('id', sa.BigInteger), sa.column('job_id', sa.BigInteger),
                sa.column('name', sa.String), sa.column('step', sa.BigInteger), sa.column('epoch', sa.Integer),
                sa.column('value', sa.Float), sa.column('time', sa.DateTime(timezone=True)))


def _seconds(t: object) -> float:
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    return 0.0


def upgrade() -> None:
    op.create_table(
        'metric_blocks',
        sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('level', sa.Integer(), nullable=False),
        sa.Column('block', sa.BigInteger(), nullable=False),
        sa.Column('first_step', sa.BigInteger(), nullable=False),
        sa.Column('last_step', sa.BigInteger(), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.Column('vmin', sa.Float(), nullable=False),
        sa.Column('vmax', sa.Float(), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_metric_blocks_job_id_jobs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', 'name', 'level', 'block', name=op.f('pk_metric_blocks')),
    )
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('series_cut', sa.JSON(), nullable=True))
    _move_rows()
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_metrics_job_step')
        batch_op.drop_index('ix_metrics_series')
    op.drop_table('metrics')


def _move_rows() -> None:
    from service.store.metrics import SeriesWriter

    conn = op.get_bind()
    series = conn.execute(sa.select(_old.c.job_id, _old.c.name).distinct()
                          .order_by(_old.c.job_id, _old.c.name)).all()
    for job_id, name in series:
        writer = SeriesWriter(job_id)
        last = -1
        result = conn.execute(
            sa.select(_old.c.step, _old.c.epoch, _old.c.value, _old.c.time)
            .where(_old.c.job_id == job_id, _old.c.name == name).order_by(_old.c.step, _old.c.id)
            .execution_options(stream_results=True))
        while rows := result.fetchmany(_ROWS):
            steps = np.array([r[0] for r in rows], np.int64)
            keep = np.r_[True, steps[1:] != steps[:-1]] & (steps > last)
            idx = np.flatnonzero(keep)
            if not len(idx):
                continue
            writer.append(name, steps[idx], np.array([rows[i][1] for i in idx], np.int64),
                          np.array([_seconds(rows[i][3]) for i in idx]),
                          np.array([rows[i][2] for i in idx], np.float64))
            last = int(steps[idx[-1]])
            writer.flush(conn)
            writer.written()
        result.close()


def downgrade() -> None:
    from service.store.seriescodec import decode

    op.create_table(
        'metrics',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('step', sa.BigInteger(), nullable=False),
        sa.Column('epoch', sa.Integer(), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('time', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_metrics_job_id_jobs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_metrics')),
    )
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_series', ['job_id', 'name', 'step'], unique=False)
        batch_op.create_index('ix_metrics_job_step', ['job_id', 'step'], unique=False)
    conn = op.get_bind()
    blocks = sa.table('metric_blocks', sa.column('job_id'), sa.column('name'), sa.column('level'),
                      sa.column('block'), sa.column('payload', sa.LargeBinary))
    result = conn.execute(
        sa.select(blocks.c.job_id, blocks.c.name, blocks.c.payload).where(blocks.c.level == 0)
        .order_by(blocks.c.job_id, blocks.c.name, blocks.c.block).execution_options(stream_results=True))
    while chunk := result.fetchmany(64):
        rows = []
        for job_id, name, payload in chunk:
            b = decode(payload)
            rows += [{"job_id": job_id, "name": name, "step": s, "epoch": e, "value": v,
                      "time": datetime.fromtimestamp(t, UTC)}
                     for s, e, v, t in zip(b.first_step.tolist(), b.first_epoch.tolist(), b.first.tolist(),
                                           b.time.tolist(), strict=False)]
        if rows:
            conn.execute(sa.insert(_old), rows)
    result.close()
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.drop_column('series_cut')
    op.drop_table('metric_blocks')
