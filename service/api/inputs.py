"""Checks every request's query string before a view sees it.

PostgreSQL text cannot hold NUL, and neither it nor a JSON encoder can hold an unpaired
surrogate; a query parameter carrying either would reach the driver as a 500. One hook
answers both for every route, as a 422 naming the parameter, so no view has to remember.
(JSON bodies are checked by their schemas and the spec validator, form fields by theirs.)
"""
from __future__ import annotations

from flask import Flask, Response, request

from ..store.errors import FieldProblem, bad_text
from .errors import problem


def _check_query() -> Response | None:
    problems = []
    for key, values in request.args.lists():
        for reason in {bad_text(key), *(bad_text(v) for v in values)} - {None}:
            problems.append(FieldProblem(f"query.{key}", reason))
    if not problems:
        return None
    detail = "; ".join(f"{p.path}: {p.message}" for p in problems)
    return problem(422, "Invalid request", detail, problems)


def init_app(app: Flask) -> None:
    app.before_request(_check_query)
