"""The HTTP API: an APIFlask application factory with blueprints under /api/v1."""
from __future__ import annotations

from typing import Any

from apiflask import APIFlask
from flask import Response
from werkzeug.routing import IntegerConverter

from ..shared.queue import Enqueuer
from ..shared.settings import Settings
from ..store.db import make_engine, make_sessionmaker
from . import errors, inputs
from .state import ServiceState, close_db

API_PREFIX = "/api/v1"


class BigIntConverter(IntegerConverter):
    """``<int:...>`` bounded to the BIGINT ids it looks up: a larger number names nothing
    (404), and SQLite could not even bind it (an OverflowError, so a 500)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


def create_app(settings: Settings | None = None, **overrides: Any) -> APIFlask:
    """Build the API for ``settings`` (default: from the environment). The schema must
    exist already: run the migrations first (``trainyard migrate``)."""
    settings = settings or Settings.from_env(**overrides)
    app = APIFlask("trainyard", title="trainyard API", version="1", spec_path=f"{API_PREFIX}/openapi.json",
                   # /docs is our own page (docs.py), not APIFlask's CDN-loading one
                   docs_path=None, json_errors=True)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        VALIDATION_ERROR_STATUS_CODE=422,
        VALIDATION_ERROR_SCHEMA=errors.PROBLEM_SCHEMA,
        HTTP_ERROR_SCHEMA=errors.PROBLEM_SCHEMA,
        SYNC_LOCAL_SPEC=False,
        INFO={"description": "Submit, watch and use neural-network training jobs. Errors are RFC 9457 "
                             "problem documents (application/problem+json)."},
    )
    engine = make_engine(settings.database_url, pool_pre_ping=True)
    app.extensions["trainyard"] = ServiceState(settings, engine, make_sessionmaker(engine),
                                               Enqueuer(settings.broker_url, settings.broker_timeout_s))
    app.url_map.converters["int"] = BigIntConverter
    app.teardown_appcontext(close_db)
    errors.init_app(app)
    app.after_request(_security_headers)
    inputs.init_app(app)
    app.spec_processor(errors.problem_responses_in_spec)

    from . import dashboard, datasets, health, jobs, me, meta, results, stream, tokens, workers

    for bp in (health.bp, meta.bp, me.bp, tokens.bp, jobs.bp, results.bp, stream.bp, datasets.bp, workers.bp):
        app.register_blueprint(bp, url_prefix=API_PREFIX + (bp.url_prefix or ""))
    app.register_blueprint(dashboard.bp)
    from . import docs

    app.register_blueprint(docs.bp, url_prefix=API_PREFIX)
    return app


def _security_headers(response: Response) -> Response:
    # on every response, errors too: no browser is to sniff a body into another type (a
    # dataset's bytes or a job's log as HTML), and no URL of ours (a job's id, a query)
    # is to leave for another site as a referrer
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response
