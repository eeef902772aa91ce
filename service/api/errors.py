"""One error path: every 4xx/5xx leaves as an RFC 9457 problem document.

    {"type": "https://trainyard.dev/problems/validation", "title": "Invalid request",
     "status": 422, "detail": "...", "instance": "/api/v1/jobs",
     "errors": [{"path": "spec.model.layers[0].units", "pointer": "/spec/model/layers/0/units",
                 "message": "must be >= 1, got 0"}]}
"""
from __future__ import annotations

import logging
from typing import Any

from apiflask import APIFlask, HTTPError
from flask import Response, current_app, json, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from ..store.db import unreachable
from ..store.errors import Conflict, DomainError, FieldProblem, Forbidden, Invalid, NotFound, QuotaExceeded
from .state import discard_db

log = logging.getLogger(__name__)

PROBLEM_TYPE = "https://trainyard.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["path", "message"],
            "properties": {"path": {"type": "string"}, "pointer": {"type": "string"},
                           "message": {"type": "string"}}}},
    },
}

_SLUGS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
          406: "not-acceptable", 409: "conflict", 413: "too-large", 415: "unsupported-media-type",
          422: "validation", 429: "too-many-requests", 500: "internal", 503: "unavailable",
          # answered by the HTTP server itself (trainyard/httpworker.py), before Flask sees the request
          408: "request-timeout", 414: "uri-too-long", 431: "header-fields-too-large", 501: "not-implemented"}


def problem_type(status: int) -> str:
    """The ``type`` URI of the problem for ``status`` (the HTTP server's own answers use it too)."""
    return PROBLEM_TYPE + _SLUGS.get(status, str(status))


#: seconds a client should wait before retrying while the database is unreachable
DATABASE_RETRY_AFTER_S = 5


def problem(status: int, title: str, detail: str | None = None, errors: list[FieldProblem] | None = None,
            headers: dict[str, str] | None = None, slug: str | None = None) -> Response:
    body: dict[str, Any] = {"type": PROBLEM_TYPE + (slug or _SLUGS.get(status, str(status))), "title": title,
                            "status": status, "instance": request.path}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = [{"path": e.path, "pointer": e.pointer, "message": e.message} for e in errors]
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _validation_problems(detail: Any) -> list[FieldProblem]:
    """APIFlask's {"json": {"spec.model": ["msg"]}} (or query/headers/files) as field problems."""
    out: list[FieldProblem] = []
    if isinstance(detail, dict):
        for location, fields in detail.items():
            if isinstance(fields, dict):
                for path, messages in fields.items():
                    msgs = messages if isinstance(messages, list) else [messages]
                    for m in msgs:
                        name = "" if path in ("_schema", "") else _bracket_indexes(str(path))
                        # pydantic prefixes the message of a validator's ValueError with this
                        message = str(m).removeprefix("Value error, ")
                        out.append(FieldProblem(name if location in ("json", "form", "files") else
                                                f"{location}.{name}" if name else location, message))
            else:
                out.append(FieldProblem(str(location), str(fields)))
    return out


def _bracket_indexes(path: str) -> str:
    """Pydantic's ``inputs.3.1`` in the spec validator's notation, ``inputs[3][1]``."""
    out = ""
    for part in path.split("."):
        out += f"[{part}]" if part.isdigit() and out else ("." if out else "") + part
    return out


def init_app(app: APIFlask) -> None:
    @app.error_processor
    def http_error(error: HTTPError) -> Response:
        status = error.status_code
        if status in (400, 422) and error.detail:
            problems = _validation_problems(error.detail)
            detail = "; ".join(f"{p.path or 'body'}: {p.message}" for p in problems[:5])
            return problem(422 if status == 422 else 400, "Invalid request", detail or error.message, problems,
                           error.headers)
        return problem(status, error.message or "Error", _detail_for(error), None, error.headers)

    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError) -> Response:
        if isinstance(exc, NotFound):
            return problem(404, exc.title, str(exc))
        if isinstance(exc, Conflict):
            return problem(409, exc.title, str(exc))
        if isinstance(exc, Forbidden):
            return problem(403, exc.title, str(exc))
        if isinstance(exc, Invalid):
            return problem(422, exc.title, str(exc), exc.problems)
        if isinstance(exc, QuotaExceeded):
            return problem(403, exc.title, str(exc), exc.problems, slug="quota")
        return problem(400, exc.title, str(exc))

    @app.errorhandler(HTTPException)
    def werkzeug_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        detail = exc.description
        if code == 413:
            limit = request.max_content_length or app.config["MAX_CONTENT_LENGTH"]
            detail = f"the request body is larger than this server accepts here ({limit} bytes)"
        elif code == 400 and _failed_json(exc):
            detail = ("this request needs a JSON body (Content-Type: application/json)" if not request.get_data()
                      else "the request body is not valid JSON")
        elif code == 405 and not _exists(exc):
            return problem(404, "Not Found", "The requested URL was not found on the server.")
        # keep what the exception says about itself (405's Allow), not its HTML content type
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return problem(code, exc.name, detail, headers=headers)

    # DBAPIError covers IntegrityError, ProgrammingError, ...: those are bugs or conflicts
    # and answered as before; only the errors that mean the database cannot be reached
    # (down, restarting, a dropped connection, a pool timeout) become 503
    @app.errorhandler(sa_exc.DBAPIError)
    @app.errorhandler(sa_exc.TimeoutError)
    def database_error(exc: sa_exc.SQLAlchemyError) -> Response:
        if not unreachable(exc):
            return unexpected(exc)
        log.warning("the database is unreachable on %s %s: %s", request.method, request.path,
                    str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
        discard_db()
        return problem(503, "Service Unavailable", "the database is unreachable; try again shortly",
                       headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})

    @app.errorhandler(RecursionError)
    def too_deep(exc: RecursionError) -> Response:
        # Python's JSON parser gives up on deeply nested arrays/objects with this, not ValueError
        if "JSON" in str(exc):
            return problem(400, "Bad Request", "the request body nests JSON arrays or objects too deeply")
        return unexpected(exc)

    @app.errorhandler(Exception)
    def unexpected(exc: BaseException) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return problem(500, "Internal server error", "the server failed to handle this request; it has been logged")


def _exists(exc: HTTPException) -> bool:
    """Whether a 405's URL names a resource at all. Werkzeug answers 405 when a rule for
    another method shares the path even if a converter refuses the value for every
    method (DELETE /jobs/<an id beyond 64 bits> gets "Allow: GET"): that URL is a 404."""
    adapter = current_app.create_url_adapter(request)
    for method in getattr(exc, "valid_methods", None) or ():
        try:
            adapter.match(method=method)
            return True
        except HTTPException:
            continue
    return False


def _failed_json(exc: HTTPException) -> bool:
    """Whether a 400 is Flask's refusal of the body as JSON (it hides the reason outside debug)."""
    for e in (exc, exc.__cause__):
        if isinstance(e, HTTPException) and (e.description or "").startswith("Failed to decode JSON"):
            return True
    return False


def _detail_for(error: HTTPError) -> str | None:
    if isinstance(error.detail, str) and error.detail:
        return error.detail
    if error.status_code == 401:
        return "send an API token as 'Authorization: Bearer <token>' (create one with: trainyard token create)"
    return None


def problem_responses_in_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Document every error response as application/problem+json with the problem schema,
    every request body as required (APIFlask leaves it optional; none of ours is), and
    the 400 that every JSON body which is not JSON gets (werkzeug_error above)."""
    for path_item in spec.get("paths", {}).values():
        for op in path_item.values():
            if not isinstance(op, dict):
                continue
            # the HTTP server answers these for any route, before it sees the request
            # (trainyard/httpworker.py: the request line and the head are bounded)
            op.setdefault("responses", {}).setdefault("414", {"description": "The request line is longer than "
                                                                             "the server accepts (8190 bytes)"})
            op["responses"].setdefault("431", {"description": "The request's header fields are larger than the "
                                                              "server accepts"})
            if "requestBody" in op:
                op["requestBody"]["required"] = True
                if "application/json" in op["requestBody"].get("content", {}):
                    op.setdefault("responses", {}).setdefault("400", {"description": "The body is not JSON"})
            if op.get("security"):
                # checking the token reads the database, so each of these routes answers
                # 503 while it is unreachable (see database_error)
                op.setdefault("responses", {}).setdefault("503", {
                    "description": "The database is unreachable; retry after Retry-After seconds",
                    "headers": {"Retry-After": {"description": "Seconds to wait before retrying",
                                                "schema": {"type": "integer"}}}})
            for code, resp in op.get("responses", {}).items():
                if str(code).isdigit() and int(code) >= 400 and not _declared_content(resp):
                    resp["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}
    return spec


_GENERIC_ERROR_SCHEMAS = {"#/components/schemas/HTTPError", "#/components/schemas/ValidationError"}


def _declared_content(response: dict[str, Any]) -> bool:
    """Whether a view documented this error response's body itself (``@bp.doc(responses={503:
    {"content": ...}})``), rather than APIFlask filling in its generic error schema."""
    for media in (response.get("content") or {}).values():
        schema = media.get("schema") if isinstance(media, dict) else None
        if schema and schema != PROBLEM_SCHEMA and schema.get("$ref") not in _GENERIC_ERROR_SCHEMAS:
            return True
    return False
