"""/api/v1/tokens: list, create and revoke API tokens (the secret is shown once, on create)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from apiflask import APIBlueprint

from ..store import users as store
from ..store.models import utcnow
from .auth import auth, current_user
from .schemas import TokenCreated, TokenIn, TokenList, TokensQuery
from .state import db

bp = APIBlueprint("tokens", __name__, url_prefix="/tokens", tag="Tokens")


@bp.get("")
@bp.auth_required(auth)
@bp.input(TokensQuery, location="query")
@bp.output(TokenList, description="The tokens by id, revoked and expired ones included; never a secret.")
@bp.doc(summary="List API tokens (your own; an administrator's ?user= or ?all=true)", responses=[200, 401, 403,
                                                                                                  404, 422])
def list_tokens(query_data: TokensQuery) -> Any:
    rows = store.list_tokens(db(), current_user(), query_data.user, query_data.all)
    return TokenList.model_validate({"items": rows})


@bp.post("")
@bp.auth_required(auth)
@bp.input(TokenIn, location="json", example={"name": "laptop", "expires_in_days": 90})
@bp.output(TokenCreated, status_code=201, description="The token, with its secret: shown only this once.")
@bp.doc(summary="Create an API token", responses=[201, 401, 403, 422])
def create_token(json_data: TokenIn) -> Any:
    expires_at = json_data.expires_at
    if json_data.expires_in_days is not None:
        expires_at = utcnow() + timedelta(days=json_data.expires_in_days)
    issued = store.issue_token_as(db(), current_user(), json_data.name, json_data.user, expires_at,
                                  store.token_expiry(db(), auth.get_auth().token))
    return TokenCreated.model_validate(issued), 201


@bp.delete("/<int:token_id>")
@bp.auth_required(auth)
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke an API token (the one making this request too)", responses=[204, 401, 404])
def revoke_token(token_id: int) -> Any:
    store.revoke_token(db(), current_user(), token_id)
    return "", 204
