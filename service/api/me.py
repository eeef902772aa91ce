"""/api/v1/me: who the token belongs to (the dashboard's sign-in checks it)."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from .auth import auth, current_user
from .schemas import Me

bp = APIBlueprint("me", __name__, tag="Users")


@bp.get("/me")
@bp.auth_required(auth)
@bp.output(Me, description="The token's user.")
@bp.doc(summary="The user of this token", responses=[200, 401])
def me() -> Any:
    return Me.model_validate(current_user())
