"""api_tokens: an expiry (expires_at), and no part of the secret kept (prefix dropped)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:00:00

``prefix`` held the first 10 characters of each token, 7 of them secret: a token is
now shown by its id (``#12``) and its name, so the column goes. Tokens keep working:
only their sha256 is looked up.

Downgrading brings ``prefix`` back filled with ``ty_`` (nothing secret) and drops
``expires_at``. The old schema cannot expire a token, so every token that had an
expiry is revoked then (at its expiry if that has passed, else now): a token meant to
stop working must not become one that works for ever.
"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_tokens = sa.table('api_tokens', sa.column('expires_at', sa.DateTime(timezone=True)),
                   sa.column('revoked_at', sa.DateTime(timezone=True)))


def upgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_column('prefix')


def downgrade() -> None:
    now = datetime.now(UTC)
    op.get_bind().execute(
        _tokens.update().where(_tokens.c.expires_at.is_not(None), _tokens.c.revoked_at.is_(None))
        .values(revoked_at=sa.case((_tokens.c.expires_at < now, _tokens.c.expires_at), else_=now)))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        # the server default fills the rows there are; the column had none before
        batch_op.add_column(sa.Column('prefix', sa.String(length=16), nullable=False, server_default='ty_'))
        batch_op.drop_column('expires_at')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('prefix', existing_type=sa.String(length=16), server_default=None)
