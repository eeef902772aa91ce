"""Revision 0006 on SQLite and PostgreSQL: a token made before it (with the old
``prefix``, the secret's first 10 characters) still authenticates after it, and nothing
of its secret is left in the table; going back to 0005 and up again round-trips, and a
token that had an expiry is revoked on the way down (0005 cannot expire it)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.orm import Session

from service.store.migrate import alembic_config, current, upgrade
from service.store.users import authenticate, hash_token
from tests.service.test_migrations import database_url, differences, head  # noqa: F401  (the fixture)

users = sa.table("users", sa.column("id"), sa.column("name"), sa.column("is_admin"),
                 sa.column("created_at", sa.DateTime(timezone=True)))
old_tokens = sa.table("api_tokens", sa.column("id"), sa.column("user_id"), sa.column("name"),
                      sa.column("token_hash"), sa.column("prefix"),
                      sa.column("created_at", sa.DateTime(timezone=True)),
                      sa.column("revoked_at", sa.DateTime(timezone=True)))
new_tokens = sa.table("api_tokens", sa.column("id"), sa.column("user_id"), sa.column("name"),
                      sa.column("token_hash"), sa.column("created_at", sa.DateTime(timezone=True)),
                      sa.column("expires_at", sa.DateTime(timezone=True)),
                      sa.column("revoked_at", sa.DateTime(timezone=True)))
SECRET = "ty_" + "s3cretPart" + "x" * 33
NOW = datetime.now(UTC)


def _columns(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("api_tokens")}
    finally:
        engine.dispose()


def _rows(url: str) -> list[dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM api_tokens ORDER BY id"))]
    finally:
        engine.dispose()


def test_0005_to_0006_and_back_keeps_tokens_working_and_drops_the_secret_prefix(database_url):  # noqa: F811
    upgrade(database_url, "0005")
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(users), [{"id": 1, "name": "alice", "is_admin": False, "created_at": NOW}])
            # as 0005's code wrote a token
            conn.execute(sa.insert(old_tokens), [{"id": 1, "user_id": 1, "name": "laptop",
                                                  "token_hash": hash_token(SECRET), "prefix": SECRET[:10],
                                                  "created_at": NOW}])
    finally:
        engine.dispose()

    upgrade(database_url, "0006")
    assert current(database_url) == "0006"
    assert "prefix" not in _columns(database_url) and "expires_at" in _columns(database_url)
    (row,) = _rows(database_url)
    assert SECRET[3:10] not in repr(row) and row["expires_at"] is None
    engine = create_engine(database_url)
    try:
        with Session(engine) as s:
            assert authenticate(s, SECRET).name == "alice"
        with engine.begin() as conn:
            # one token that would still run an hour, one whose expiry has passed, one without
            conn.execute(sa.insert(new_tokens), [
                {"id": 2, "user_id": 1, "name": "soon", "token_hash": "a" * 64, "created_at": NOW,
                 "expires_at": NOW + timedelta(hours=1)},
                {"id": 3, "user_id": 1, "name": "past", "token_hash": "b" * 64, "created_at": NOW,
                 "expires_at": NOW - timedelta(days=1)}])
    finally:
        engine.dispose()

    command.downgrade(alembic_config(database_url), "0005")
    assert current(database_url) == "0005"
    assert "prefix" in _columns(database_url) and "expires_at" not in _columns(database_url)
    rows = {r["id"]: r for r in _rows(database_url)}
    assert {r["prefix"] for r in rows.values()} == {"ty_"}  # back, with nothing secret in it
    assert rows[1]["revoked_at"] is None
    assert rows[2]["revoked_at"] is not None and rows[3]["revoked_at"] is not None
    past = rows[3]["revoked_at"]
    past = datetime.fromisoformat(past) if isinstance(past, str) else past
    assert abs((past.replace(tzinfo=UTC) if past.tzinfo is None else past) - (NOW - timedelta(days=1))) \
        < timedelta(seconds=1)

    upgrade(database_url)
    assert current(database_url) == head() and differences(database_url) == []
    engine = create_engine(database_url)
    try:
        with Session(engine) as s:
            assert authenticate(s, SECRET).name == "alice"
    finally:
        engine.dispose()
