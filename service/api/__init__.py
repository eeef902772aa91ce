"""The HTTP API: an APIFlask application factory with blueprints under /api/v1."""
from __future__ import annotations

from typing import Any

from apiflask import APIFlask
from werkzeug.routing import IntegerConverter

from ..shared.queue import Enqueuer
from ..shared.settings import Settings
from ..store.db import make_engine, make_sessionmaker
from . import errors
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
                   docs_path=f"{API_PREFIX}/docs", json_errors=True)
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
    app.spec_processor(errors.problem_responses_in_spec)

    from . import dashboard, datasets, health, jobs, me, meta, results, stream, workers

    for bp in (health.bp, meta.bp, me.bp, jobs.bp, results.bp, stream.bp, datasets.bp, workers.bp):
        app.register_blueprint(bp, url_prefix=API_PREFIX + (bp.url_prefix or ""))
    app.register_blueprint(dashboard.bp)
    return app
