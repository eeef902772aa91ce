"""/api/v1/me: who the token belongs to (the dashboard's sign-in checks it) and their quota."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from ..store.quota import usage
from .auth import auth, current_user
from .schemas import Me
from .state import db, state

bp = APIBlueprint("me", __name__, tag="Users")


@bp.get("/me")
@bp.auth_required(auth)
@bp.output(Me, description="The token's user and their storage quota.")
@bp.doc(summary="The user of this token", responses=[200, 401])
def me() -> Any:
    user = current_user()
    u = usage(db(), user, state().settings.user_quota_bytes)
    return Me(name=user.name, is_admin=user.is_admin, quota={
        "limit_bytes": u.quota_bytes or None, "used_bytes": u.used_bytes, "datasets_bytes": u.datasets_bytes,
        "checkpoints_bytes": u.checkpoints_bytes, "reserved_bytes": u.reserved_bytes, "free_bytes": u.free_bytes})
