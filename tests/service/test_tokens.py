"""API tokens that expire, are listed without their secrets and can be revoked: the
store's rules (on SQLite and PostgreSQL), /api/v1/tokens against the API in this
process, the Python client, and the `trainyard token` (database) and `trainyard
tokens` (API) commands."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.store import users
from service.store.errors import Forbidden, NotFound
from service.store.models import ApiToken, User, utcnow
from tests.inprocess import store_sessions
from trainyard.client import ApiError


@pytest.fixture
def sessions(db_template, tmp_path) -> Iterator[Callable[[], Session]]:
    with store_sessions(db_template, tmp_path) as (_url, made):
        yield made


def _user(s: Session, name: str) -> User:
    return s.scalar(select(User).where(User.name == name))


def _set(sessions_or_url, token_id: int, **values) -> None:
    """Move a token's clock columns in the database (as time passing would)."""
    if isinstance(sessions_or_url, str):
        from service.store.db import make_engine, make_sessionmaker

        engine = make_engine(sessions_or_url)
        try:
            _set(make_sessionmaker(engine), token_id, **values)
        finally:
            engine.dispose()
        return
    with sessions_or_url() as s:
        s.execute(update(ApiToken).where(ApiToken.id == token_id).values(**values))
        s.commit()


def _token_row(sessions, secret: str) -> ApiToken:
    with sessions() as s:
        return s.scalar(select(ApiToken).where(ApiToken.token_hash == users.hash_token(secret)))


class _Updates:
    """The UPDATEs of api_tokens an engine sends (optionally failing them instead)."""

    def __init__(self, engine: Engine, fail: bool = False) -> None:
        self.engine, self.fail, self.count = engine, fail, 0

    def __enter__(self) -> _Updates:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_TOKENS"):
            self.count += 1
            if self.fail:
                raise OperationalError(statement, None, Exception("database is locked"))


# -- the store ---------------------------------------------------------------------------

def test_an_expired_token_is_refused_and_says_so(sessions):
    with sessions() as s:
        secret = users.create_token(s, "alice", "laptop", expires_at=utcnow() + timedelta(hours=1))
    with sessions() as s:
        assert users.authenticate(s, secret).name == "alice"
    row = _token_row(sessions, secret)
    _set(sessions, row.id, expires_at=utcnow() - timedelta(seconds=1))
    with sessions() as s:
        assert users.identify(s, secret) == (None, users.EXPIRED)
        assert users.authenticate(s, secret) is None
        # what the holder of an unknown token learns: nothing about expiry
        assert users.identify(s, "ty_" + "x" * 43) == (None, users.INVALID)


def test_a_revoked_token_is_refused_like_an_unknown_one(sessions):
    with sessions() as s:
        secret = users.create_token(s, "alice", "ci")
    row = _token_row(sessions, secret)
    with sessions() as s:
        revoked = users.revoke_token(s, _user(s, "alice"), row.id)
        assert revoked.revoked_at is not None
    with sessions() as s:
        assert users.identify(s, secret) == (None, users.INVALID)
    # an expired token that was revoked too is only "invalid": revocation says nothing
    _set(sessions, row.id, expires_at=utcnow() - timedelta(days=1))
    with sessions() as s:
        assert users.identify(s, secret) == (None, users.INVALID)


def test_last_use_is_written_once_per_interval_not_per_request(sessions):
    with sessions() as s:
        secret = users.create_token(s, "alice", "poller")
        engine = s.get_bind()
    row = _token_row(sessions, secret)
    assert row.last_used_at is None
    with _Updates(engine) as updates:
        for _ in range(5):
            with sessions() as s:
                assert users.authenticate(s, secret).name == "alice"
    assert updates.count == 1
    first = _token_row(sessions, secret).last_used_at
    assert first is not None and abs(first - utcnow()) < timedelta(seconds=30)
    # within the interval the timestamp stays; once it is older, the next use moves it
    with sessions() as s:
        users.authenticate(s, secret)
    assert _token_row(sessions, secret).last_used_at == first
    old = first - users.LAST_USED_EVERY - timedelta(seconds=1)
    _set(sessions, row.id, last_used_at=old)
    with _Updates(engine) as updates:
        with sessions() as s:
            users.authenticate(s, secret)
    assert updates.count == 1 and _token_row(sessions, secret).last_used_at > first


def test_a_failed_last_use_write_neither_refuses_the_token_nor_breaks_the_session(sessions):
    with sessions() as s:
        secret = users.create_token(s, "alice", "flaky")
        engine = s.get_bind()
    with _Updates(engine, fail=True) as updates, sessions() as s:
        user = users.authenticate(s, secret)
        assert user is not None and user.name == "alice" and updates.count == 1
        # the session goes on: a read and a write in it work
        assert s.scalar(select(User.name).where(User.id == user.id)) == "alice"
        s.add(User(name="carol"))
        s.commit()
    assert _token_row(sessions, secret).last_used_at is None


def test_create_token_refuses_bad_names_and_expiries(sessions):
    with sessions() as s:
        for kwargs, message in (({"token_name": "a\x00b"}, "NUL"), ({"token_name": "x" * 101}, "1 to 100"),
                                ({"expires_at": utcnow() - timedelta(minutes=1)}, "in the future"),
                                ({"expires_at": utcnow() + timedelta(days=3651)}, "at most 3650 days")):
            with pytest.raises(ValueError, match=message):
                users.create_token(s, "alice", **kwargs)
        with pytest.raises(ValueError, match="NUL"):
            users.create_token(s, "dave\x00")
        # a naive expiry is UTC
        secret = users.create_token(s, "alice", "naive", expires_at=datetime.now(UTC).replace(tzinfo=None)
                                    + timedelta(hours=2))
    row = _token_row(sessions, secret)
    assert timedelta(hours=1, minutes=59) < row.expires_at - utcnow() <= timedelta(hours=2)


def test_who_lists_and_revokes_which_tokens(sessions):
    with sessions() as s:
        alice, bob, root = (_user(s, n) for n in ("alice", "bob", "root"))
        bobs = s.scalar(select(ApiToken.id).where(ApiToken.user_id == bob.id))
        assert [t.user.name for t in users.list_tokens(s, alice)] == ["alice"]
        assert [t.user.name for t in users.list_tokens(s, alice, "alice")] == ["alice"]
        for kwargs in ({"user_name": "bob"}, {"all_users": True}, {"user_name": "nobody"}):
            with pytest.raises(Forbidden):
                users.list_tokens(s, alice, **kwargs)
        assert [t.user.name for t in users.list_tokens(s, root, "bob")] == ["bob"]
        assert {t.user.name for t in users.list_tokens(s, root, all_users=True)} == {"alice", "bob", "root"}
        assert len(users.list_tokens(s, None)) == 3  # the operator
        with pytest.raises(NotFound):
            users.list_tokens(s, root, "nobody")
        with pytest.raises(NotFound, match=f"token #{bobs} does not exist"):
            users.revoke_token(s, alice, bobs)
        for missing in (0, 10**6, 2**64):
            with pytest.raises(NotFound):
                users.revoke_token(s, root, missing)
        assert users.revoke_token(s, root, bobs).revoked_at is not None
        with pytest.raises(Forbidden):
            users.issue_token_as(s, alice, "x", "bob")
        assert users.issue_token_as(s, alice, "mine", "alice")[0].user.name == "alice"


# -- the API -------------------------------------------------------------------------------

def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    return body


def _paths(body: dict) -> list[str]:
    return [e["path"] for e in body.get("errors", [])]


def _bearer(server, token: str):
    s = server.session(None)
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def _id_of(server, user: str) -> int:
    return server.session(user).get(server.api + "/tokens").json()["items"][0]["id"]


def test_the_list_shows_no_secret(api_server):
    alice = api_server.session("alice")
    r = alice.post(api_server.api + "/tokens", json={"name": "laptop", "expires_in_days": 30})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created.pop("token")
    assert secret.startswith("ty_") and created["name"] == "laptop" and created["user"] == "alice"
    assert created["expired"] is False and created["revoked_at"] is None and created["last_used_at"] is None
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=29, hours=23) < expires - utcnow() <= timedelta(days=30)
    assert _bearer(api_server, secret).get(api_server.api + "/me").json()["name"] == "alice"

    listed = alice.get(api_server.api + "/tokens")
    assert listed.status_code == 200
    for s in (secret, api_server.tokens["alice"]):
        assert s not in listed.text and s[:10] not in listed.text
        assert users.hash_token(s) not in listed.text
    items = listed.json()["items"]
    assert [t["name"] for t in items] == ["alice", "laptop"]
    assert items[1] == {**created, "last_used_at": items[1]["last_used_at"]}
    assert set(items[0]) == {"id", "name", "user", "created_at", "last_used_at", "expires_at", "revoked_at",
                             "expired"}
    root_view = api_server.session("root").get(api_server.api + "/tokens", params={"all": "true"})
    for s in [secret, *api_server.tokens.values()]:
        assert s not in root_view.text and s[:10] not in root_view.text


def test_a_revoked_token_gets_401_from_its_next_request(api_server):
    alice = api_server.session("alice")
    spare = alice.post(api_server.api + "/tokens", json={"name": "spare"}).json()
    assert alice.delete(api_server.api + f"/tokens/{spare['id']}").status_code == 204
    body = _problem(_bearer(api_server, spare["token"]).get(api_server.api + "/me"), 401)
    assert "expired" not in json.dumps(body)  # revoked is told apart from nothing: unknown tokens get this too
    assert body == _problem(api_server.session(None).get(api_server.api + "/me",
                                                          headers={"Authorization": "Bearer ty_nope"}), 401)
    # revoking again changes nothing; the list shows when
    assert alice.delete(api_server.api + f"/tokens/{spare['id']}").status_code == 204
    shown = {t["id"]: t for t in alice.get(api_server.api + "/tokens").json()["items"]}
    assert shown[spare["id"]]["revoked_at"] is not None

    # the token making the request may revoke itself; its next request is refused
    own = alice.post(api_server.api + "/tokens", json={"name": "self"}).json()
    me = _bearer(api_server, own["token"])
    assert me.delete(api_server.api + f"/tokens/{own['id']}").status_code == 204
    _problem(me.get(api_server.api + "/tokens"), 401)
    assert alice.get(api_server.api + "/me").status_code == 200


def test_another_users_token_is_a_404_and_stays_valid(api_server):
    alice, bob = api_server.session("alice"), api_server.session("bob")
    bobs = _id_of(api_server, "bob")
    body = _problem(alice.delete(api_server.api + f"/tokens/{bobs}"), 404)
    # the same answer as for an id nobody has: ids do not leak
    assert body["detail"] == f"token #{bobs} does not exist"
    assert _problem(alice.delete(api_server.api + "/tokens/999999"), 404)["title"] == body["title"]
    assert bob.get(api_server.api + "/me").status_code == 200
    for params in ({"user": "bob"}, {"all": "true"}, {"user": "nobody"}):
        _problem(alice.get(api_server.api + "/tokens", params=params), 403)
    assert alice.get(api_server.api + "/tokens", params={"user": "alice"}).status_code == 200
    _problem(alice.post(api_server.api + "/tokens", json={"name": "x", "user": "bob"}), 403)
    assert [t["user"] for t in bob.get(api_server.api + "/tokens").json()["items"]] == ["bob"]


def test_an_administrator_lists_creates_and_revokes_anyones(api_server):
    root = api_server.session("root")
    everyone = root.get(api_server.api + "/tokens", params={"all": "true"}).json()["items"]
    assert sorted(t["user"] for t in everyone) == ["alice", "bob", "root"]
    assert [t["user"] for t in root.get(api_server.api + "/tokens").json()["items"]] == ["root"]
    (bobs,) = root.get(api_server.api + "/tokens", params={"user": "bob"}).json()["items"]
    assert bobs["user"] == "bob"
    assert "nobody" in _problem(root.get(api_server.api + "/tokens", params={"user": "nobody"}), 404)["detail"]
    assert root.delete(api_server.api + f"/tokens/{bobs['id']}").status_code == 204
    _problem(api_server.session("bob").get(api_server.api + "/me"), 401)
    # a token for a new user makes the user, never an administrator
    carol = root.post(api_server.api + "/tokens", json={"name": "onboarding", "user": "carol"}).json()
    assert carol["user"] == "carol"
    assert _bearer(api_server, carol["token"]).get(api_server.api + "/me").json()["is_admin"] is False


def test_an_expired_token_is_a_401_that_says_it_expired(api_server):
    alice = api_server.session("alice")
    short = alice.post(api_server.api + "/tokens", json={"name": "short", "expires_in_days": 1}).json()
    holder = _bearer(api_server, short["token"])
    assert holder.get(api_server.api + "/me").status_code == 200
    _set(api_server.database_url, short["id"], expires_at=utcnow() - timedelta(minutes=1))
    r = holder.get(api_server.api + "/jobs")
    body = _problem(r, 401)
    assert "expired" in body["detail"] and "token" in body["detail"]
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    shown = {t["id"]: t for t in alice.get(api_server.api + "/tokens").json()["items"]}
    assert shown[short["id"]]["expired"] is True and shown[short["id"]]["revoked_at"] is None
    # an unknown token's 401 does not mention expiry
    unknown = _problem(_bearer(api_server, "ty_" + "A" * 43).get(api_server.api + "/jobs"), 401)
    assert "expired" not in unknown["detail"]


def test_a_token_cannot_create_one_that_outlives_it(api_server):
    alice = api_server.session("alice")
    short = alice.post(api_server.api + "/tokens", json={"name": "short", "expires_in_days": 1}).json()
    holder = _bearer(api_server, short["token"])
    for body in ({"name": "forever"}, {"name": "longer", "expires_in_days": 30}):
        problem = _problem(holder.post(api_server.api + "/tokens", json=body), 422)
        assert [e["path"] for e in problem["errors"]] == ["expires_at"] and "outlives it" in problem["detail"]
    # within its own lifetime it may
    inner = holder.post(api_server.api + "/tokens", json={"name": "inner", "expires_at": (
        utcnow() + timedelta(hours=12)).isoformat()})
    assert inner.status_code == 201, inner.text
    # a token that never expires is not limited
    assert alice.post(api_server.api + "/tokens", json={"name": "forever"}).status_code == 201


def test_names_and_expiries_are_validated_naming_the_field(api_server):
    alice = api_server.session("alice")
    in_a_year = (utcnow() + timedelta(days=365)).isoformat()
    for body, field, words in (
            ({"name": "a\x00b"}, "name", "NUL"),
            ({"name": ""}, "name", "at least 1"),
            ({"name": "x" * 101}, "name", "at most 100"),
            ({}, "name", ""),
            ({"name": "ok", "user": "bo\x00b"}, "user", "NUL"),
            ({"name": "ok", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "in the future"),
            ({"name": "ok", "expires_at": "2200-01-01T00:00:00Z"}, "expires_at", "10 years"),
            ({"name": "ok", "expires_at": "2027-01-01"}, "expires_at", "RFC 3339"),
            ({"name": "ok", "expires_in_days": 0}, "expires_in_days", ""),
            ({"name": "ok", "expires_in_days": 3651}, "expires_in_days", ""),
            ({"name": "ok", "expires_in_days": "3"}, "expires_in_days", ""),
            ({"name": "ok", "expires_in_days": 3, "expires_at": in_a_year}, "expires_at", "not both"),
            ({"name": "ok", "admin": True}, "admin", "")):
        problem = _problem(alice.post(api_server.api + "/tokens", json=body), 422)
        assert field in _paths(problem), (body, problem)
        assert words in json.dumps(problem), (body, problem)
    problem = _problem(alice.get(api_server.api + "/tokens", params={"user": "alice", "all": "true"}), 422)
    assert "query.all" in _paths(problem)
    assert [t["name"] for t in alice.get(api_server.api + "/tokens").json()["items"]] == ["alice"]
    ok = alice.post(api_server.api + "/tokens", json={"name": "ok", "expires_at": in_a_year})
    assert ok.status_code == 201 and datetime.fromisoformat(ok.json()["expires_at"]) > utcnow()


def test_requests_record_last_use_once_a_minute(api_server):
    engine = api_server.app.extensions["trainyard"].engine
    alice = api_server.session("alice")
    with _Updates(engine) as updates:
        for _ in range(6):
            assert alice.get(api_server.api + "/me").status_code == 200
    assert updates.count == 1
    (mine,) = alice.get(api_server.api + "/tokens").json()["items"]
    assert mine["last_used_at"] is not None
    # a failing write of it is no failed request
    _set(api_server.database_url, mine["id"], last_used_at=utcnow() - timedelta(minutes=5))
    with _Updates(engine, fail=True) as updates:
        r = alice.post(api_server.api + "/tokens", json={"name": "while the database is locked"})
    assert r.status_code == 201 and updates.count == 1


def test_the_python_client(api_server):
    c = api_server.client("alice")
    created = c.create_token("notebook", expires_at=utcnow() + timedelta(hours=3))
    assert created["token"].startswith("ty_") and created["user"] == "alice"
    assert [t["name"] for t in c.tokens()] == ["alice", "notebook"]
    assert c.create_token("weekly", expires_in_days=7)["expires_at"] is not None
    c.revoke_token(created["id"])
    with pytest.raises(ApiError) as info:
        api_server.client(token=created["token"]).me()
    assert info.value.status == 401
    with pytest.raises(ApiError) as info:
        c.tokens(all_users=True)
    assert info.value.status == 403
    assert {t["user"] for t in api_server.client("root").tokens(all_users=True)} == {"alice", "bob", "root"}
    assert [t["user"] for t in api_server.client("root").tokens("bob")] == ["bob"]


# -- the commands --------------------------------------------------------------------------

def test_the_operator_commands_create_list_and_revoke(api_server):
    from trainyard.cli import main

    db = ["--database-url", api_server.database_url]
    run = CliRunner().invoke
    made = run(main, ["token", "create", "--name", "dave", "--label", "laptop", "--expires", "30d", *db])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("ty_") and "\n" not in secret
    assert "of dave, expires" in made.stderr and "shown only once" in made.stderr
    assert _bearer(api_server, secret).get(api_server.api + "/me").json()["name"] == "dave"

    listed = run(main, ["token", "list", *db])
    assert listed.exit_code == 0, listed.output
    assert secret not in listed.output and secret[:10] not in listed.output
    assert users.hash_token(secret) not in run(main, ["token", "list", "--json", *db]).output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["id", "user", "name", "state", "created", "last", "used", "expires"]
    dave = next(line for line in lines if " dave " in line)
    assert "laptop" in dave and "active" in dave
    token_id = int(dave.split()[0].lstrip("#"))
    only = json.loads(run(main, ["token", "list", "--user", "dave", "--json", *db]).stdout)
    assert [(t["id"], t["name"], t["user"]) for t in only] == [(token_id, "laptop", "dave")]
    assert run(main, ["token", "list", "--user", "nobody", *db]).exit_code == 1

    revoked = run(main, ["token", "revoke", str(token_id), *db])
    assert revoked.exit_code == 0 and revoked.stdout.strip() == f"revoked token #{token_id} (laptop) of dave"
    assert "already revoked" in run(main, ["token", "revoke", str(token_id), *db]).stdout
    _problem(_bearer(api_server, secret).get(api_server.api + "/me"), 401)
    missing = run(main, ["token", "revoke", "999999", *db])
    assert missing.exit_code == 1 and "token #999999 does not exist" in missing.stderr

    every = run(main, ["token", "revoke", "--user", "bob", *db])
    assert every.exit_code == 0 and every.stdout.strip() == "revoked 1 token of bob"
    _problem(api_server.session("bob").get(api_server.api + "/me"), 401)
    assert run(main, ["token", "revoke", *db]).exit_code == 2
    assert run(main, ["token", "revoke", "1", "--user", "bob", *db]).exit_code == 2

    for bad in ("0d", "20y", "2020-01-01", "2200-01-01", "soon"):
        r = run(main, ["token", "create", "--name", "eve", "--expires", bad, *db])
        assert r.exit_code == 2 and "--expires" in r.output, (bad, r.output)
    dated = run(main, ["token", "create", "--name", "eve", "--expires", "2027-06-01", *db])
    assert dated.exit_code == 0, dated.output
    (eve,) = json.loads(run(main, ["token", "list", "--user", "eve", "--json", *db]).stdout)
    assert eve["expires_at"] == "2027-06-01T00:00:00Z" and eve["name"] == "eve"


def test_the_api_commands_create_list_and_revoke(api_server, monkeypatch):
    from trainyard.cli import main

    api_server.serve_cli(monkeypatch)
    run = CliRunner().invoke

    made = run(main, ["tokens", "create", "laptop", "--expires", "12h"])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("ty_") and "(laptop) of alice, expires" in made.stderr
    weekly = json.loads(run(main, ["tokens", "create", "weekly", "--expires", "7d", "--json"]).stdout)
    assert timedelta(days=6, hours=23) < datetime.fromisoformat(weekly["expires_at"]) - utcnow()

    listed = run(main, ["tokens", "list"])
    assert listed.exit_code == 0, listed.output
    assert secret not in listed.output and secret[:10] not in listed.output
    assert [line.split()[2] for line in listed.stdout.splitlines()[1:]] == ["alice", "laptop", "weekly"]
    token_id = json.loads(run(main, ["tokens", "list", "--json"]).stdout)[1]["id"]

    revoked = run(main, ["tokens", "revoke", str(token_id)])
    assert revoked.exit_code == 0 and revoked.stdout.strip() == f"revoked token #{token_id} (laptop) of alice"
    _problem(_bearer(api_server, secret).get(api_server.api + "/me"), 401)
    bobs = _id_of(api_server, "bob")
    missing = run(main, ["tokens", "revoke", str(bobs)])
    assert missing.exit_code == 1 and f"token #{bobs} does not exist" in missing.stderr
    assert run(main, ["tokens", "list", "--all"]).exit_code == 1  # 403 for alice
