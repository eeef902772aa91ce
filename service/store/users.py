"""Users and their bearer tokens (only a token's sha256 is stored)."""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import ApiToken, User, utcnow

TOKEN_PREFIX = "ty_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user_name: str, token_name: str | None = None, admin: bool = False) -> str:
    """Create the user if needed and a new token for them; return the token (shown once).

    ``admin`` makes (or keeps) the user an administrator.
    """
    if not user_name or len(user_name) > 100:
        raise ValueError("a user name is 1 to 100 characters")
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        user = User(name=user_name, is_admin=admin)
        session.add(user)
        session.flush()
    elif admin and not user.is_admin:
        user.is_admin = True
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=token_name or user_name, token_hash=hash_token(token),
                         prefix=token[:10]))
    session.commit()
    return token


def authenticate(session: Session, token: str) -> User | None:
    """The user a bearer token belongs to, or None (unknown or revoked)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token),
                                                ApiToken.revoked_at.is_(None)))
    if row is None:
        return None
    return session.get(User, row.user_id)


def revoke_tokens(session: Session, user_name: str) -> int:
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
