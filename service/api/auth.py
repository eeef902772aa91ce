"""Bearer-token authentication: ``Authorization: Bearer ty_...``."""
from __future__ import annotations

from apiflask import HTTPTokenAuth

from ..store.models import User
from ..store.users import authenticate
from .state import db

auth = HTTPTokenAuth(scheme="Bearer", description="An API token from `trainyard token create`.")


@auth.verify_token
def verify_token(token: str) -> User | None:
    return authenticate(db(), token) if token else None


def current_user() -> User:
    return auth.current_user
