"""Users and their bearer tokens (only a token's sha256 is stored).

A token is shown by its id (``#12``) and name: nothing of the secret is kept but its
hash. A token may expire (``expires_at``) and be revoked; either refuses it from then
on. Like jobs, a user sees and revokes only their own tokens (NotFound otherwise, so
ids do not leak), an administrator anyone's; ``acting_user=None`` is the server's
operator (the ``trainyard token`` commands on the database), who may do everything.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from .errors import FieldProblem, Forbidden, Invalid, NotFound, bad_text
from .models import ApiToken, User, utcnow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "ty_"
#: user and token names are 1 to this many characters
MAX_NAME = 100
#: an expiry further away than this is a mistake (a unit typed wrong), not a plan
MAX_LIFETIME = timedelta(days=3650)
#: ``last_used_at`` is written when it is older than this: once a minute per token, not
#: once per request (a dashboard polls several times a second)
LAST_USED_EVERY = timedelta(seconds=60)
#: an id no database column can hold names no token (and must not reach the driver)
MAX_ID = 2**63 - 1

#: why a token was refused (``identify``): an expired token says so; anything else
#: (unknown, revoked, malformed) is one answer, which tells nothing about what exists
INVALID, EXPIRED = "invalid", "expired"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a user or token name, or None."""
    if not 1 <= len(value) <= MAX_NAME:
        return f"must be 1 to {MAX_NAME} characters, got {len(value)}"
    return bad_text(value)  # NUL, an unpaired surrogate: no column holds them


def expiry_problem(expires_at: datetime, now: datetime | None = None) -> str | None:
    """Why ``expires_at`` (naive: UTC) cannot be a new token's expiry, or None."""
    now = now or utcnow()
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at <= now:
        return f"must be in the future, got {_iso(expires_at)}"
    if expires_at > now + MAX_LIFETIME:
        return f"must be at most {MAX_LIFETIME.days} days (10 years) from now, got {_iso(expires_at)}"
    return None


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def issue_token(session: Session, user_name: str, token_name: str | None = None, admin: bool = False,
                expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Create the user if needed and a new token for them: (the token's row, the secret,
    shown this once). ``admin`` makes (or keeps) the user an administrator; ValueError
    for a bad name or expiry."""
    if not user_name or name_problem(user_name):
        raise ValueError(f"a user name {name_problem(user_name or '')}")
    token_name = token_name or user_name
    if name_problem(token_name):
        raise ValueError(f"a token name {name_problem(token_name)}")
    if expires_at is not None:
        if expiry_problem(expires_at):
            raise ValueError(f"the expiry {expiry_problem(expires_at)}")
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        user = User(name=user_name, is_admin=admin)
        session.add(user)
        session.flush()
    elif admin and not user.is_admin:
        user.is_admin = True
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, user=user, name=token_name, token_hash=hash_token(secret),
                   expires_at=expires_at)
    session.add(row)
    session.commit()
    return row, secret


def issue_token_as(session: Session, acting_user: User, token_name: str, user_name: str | None = None,
                   expires_at: datetime | None = None, acting_expires_at: datetime | None = None
                   ) -> tuple[ApiToken, str]:
    """:func:`issue_token` for the acting user, or (administrators only: Forbidden for
    anyone else) for ``user_name``, who is created if new (but never made an
    administrator: that stays with the operator). A token that expires
    (``acting_expires_at``) cannot make one that outlives it: a stolen short-lived
    token must not become a permanent one (Invalid, naming ``expires_at``)."""
    if user_name not in (None, acting_user.name) and not acting_user.is_admin:
        raise Forbidden("only an administrator may create tokens for other users")
    if acting_expires_at is not None and (expires_at is None or expires_at > acting_expires_at):
        when = acting_expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        message = (f"must be no later than {when}, when the token making this request expires: a token cannot "
                   "create one that outlives it")
        raise Invalid(f"expires_at {message}", [FieldProblem("expires_at", message)])
    return issue_token(session, user_name or acting_user.name, token_name, expires_at=expires_at)


def create_token(session: Session, user_name: str, token_name: str | None = None, admin: bool = False,
                 expires_at: datetime | None = None) -> str:
    """Create the user if needed and a new token for them; return the token (shown once).

    ``admin`` makes (or keeps) the user an administrator; ``expires_at`` (default: never)
    is when the token stops working.
    """
    return issue_token(session, user_name, token_name, admin, expires_at)[1]


def token_expiry(session: Session, token: str) -> datetime | None:
    """When the (valid) token ``token`` expires; None if never."""
    return session.scalar(select(ApiToken.expires_at).where(ApiToken.token_hash == hash_token(token)))


def identify(session: Session, token: str) -> tuple[User | None, str | None]:
    """(the user, None) for a valid token, else (None, INVALID or EXPIRED).

    Records the use, coarsely: when ``last_used_at`` is older than LAST_USED_EVERY it
    is written and *the session's transaction committed*, so call this first in a
    session (as the API does, before the view). A failed write is logged and rolled
    back; the token is still accepted.
    """
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None, INVALID
    row = session.scalar(select(ApiToken).options(joinedload(ApiToken.user))
                         .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)))
    if row is None:
        return None, INVALID
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        return None, EXPIRED
    user = row.user
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_EVERY:
        _record_use(session, row, now)
    return user, None


def _record_use(session: Session, row: ApiToken, now: datetime) -> None:
    # One conditional UPDATE, committed at once: of concurrent requests with the same
    # token only the first writes (the others find it fresh), and no row lock is held
    # into the view. Nothing else is pending in the session yet, so committing here
    # commits nothing of the request's.
    try:
        result = session.execute(
            update(ApiToken).where(ApiToken.id == row.id, or_(ApiToken.last_used_at.is_(None),
                                                              ApiToken.last_used_at < now - LAST_USED_EVERY))
            .values(last_used_at=now).execution_options(synchronize_session=False))
        session.commit()
    except SQLAlchemyError as exc:
        # bookkeeping, not the request: a locked or lost database here must not fail it
        log.warning("could not record the use of token #%s: %s", row.id,
                    str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
        try:
            session.rollback()
        except SQLAlchemyError:
            log.debug("rolling back after the failed write of last_used_at", exc_info=True)
        return
    if result.rowcount:
        set_committed_value(row, "last_used_at", now)


def authenticate(session: Session, token: str) -> User | None:
    """The user a bearer token belongs to, or None (unknown, revoked or expired); see
    :func:`identify`, which also says why."""
    return identify(session, token)[0]


def _user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"there is no user {name!r}")
    return user


def list_tokens(session: Session, acting_user: User | None, user_name: str | None = None,
                all_users: bool = False) -> list[ApiToken]:
    """Tokens by id, revoked and expired ones included: the acting user's own by
    default; ``user_name``'s or (``all_users``) everyone's for an administrator (Forbidden
    for anyone else, whichever the name). For the operator (``acting_user`` None) every
    token unless ``user_name`` is given. NotFound for a user name nobody has."""
    stmt = select(ApiToken).options(joinedload(ApiToken.user)).order_by(ApiToken.id)
    own = acting_user is not None and user_name in (None, acting_user.name) and not all_users
    if acting_user is not None and not own and not acting_user.is_admin:
        raise Forbidden("only an administrator may list other users' tokens")
    if own:
        stmt = stmt.where(ApiToken.user_id == acting_user.id)
    elif user_name is not None:
        stmt = stmt.where(ApiToken.user_id == _user(session, user_name).id)
    return list(session.scalars(stmt))


def revoke_token(session: Session, acting_user: User | None, token_id: int) -> ApiToken:
    """Revoke a token (refused from now on) and return it. A user may revoke their own,
    the token they are using included; an administrator or the operator (None) anyone's.
    NotFound for a token the acting user may not see. Revoking a revoked token changes
    nothing (its revoked_at stays the first)."""
    row = session.scalar(select(ApiToken).options(joinedload(ApiToken.user)).where(ApiToken.id == token_id)) \
        if 0 < token_id <= MAX_ID else None
    if row is None or (acting_user is not None and not acting_user.is_admin and row.user_id != acting_user.id):
        raise NotFound(f"token #{token_id} does not exist")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def revoke_tokens(session: Session, user_name: str) -> int:
    """Revoke every token of ``user_name`` (the operator's ``token revoke --user``);
    how many were not revoked yet. A user name nobody has revokes nothing."""
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        return 0
    n = 0
    for tok in user.tokens:
        if tok.revoked_at is None:
            tok.revoked_at = utcnow()
            n += 1
    session.commit()
    return n
