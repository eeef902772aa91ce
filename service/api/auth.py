"""Bearer-token authentication: ``Authorization: Bearer ty_...``."""
from __future__ import annotations

from typing import Any

from apiflask import HTTPError, HTTPTokenAuth
from flask import current_app, g

from ..store.models import User
from ..store.users import EXPIRED, identify
from .state import db

auth = HTTPTokenAuth(scheme="Bearer", description="An API token from `trainyard token create`.")


@auth.verify_token
def verify_token(token: str) -> User | None:
    if not token:
        return None
    user, why = identify(db(), token)
    g.token_refusal = why
    return user


@auth.error_processor
def refused(error: HTTPError) -> Any:
    # An expired token is one its holder had: saying so (RFC 6750's invalid_token) tells
    # them what to do and nobody else anything. Unknown and revoked tokens get the
    # generic 401 (errors._detail_for), so the answer does not say which tokens exist.
    if error.status_code == 401 and g.get("token_refusal") == EXPIRED:
        error = HTTPError(401, detail="this token has expired; create a new one (trainyard token create, or "
                                      "POST /api/v1/tokens with a token that is still valid)",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token", '
                                                       'error_description="The token expired"'})
    return current_app.error_callback(error)


def current_user() -> User:
    return auth.current_user
