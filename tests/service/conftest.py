"""In-process API fixtures for the service tests (see tests/inprocess.py).

``api_server`` is the app on a fresh database per test, once on SQLite and once on
PostgreSQL, with tokens for alice, bob and the administrator root. A module may set
``API_SETTINGS = {...}`` to override fields of ``service.config.Settings`` (a small
``max_upload_bytes``, say). ``live_api_server`` (tests/conftest.py) is the real
gunicorn process, for the ``integration`` tests.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.inprocess import InProcessApiServer, Template, inprocess_server, migrated_template


def pytest_configure(config: pytest.Config) -> None:
    # kombu's SQLAlchemy transport (the embedded broker) uses a loader SQLAlchemy 2.1
    # deprecates; gunicorn's log used to swallow it, in this process it is only noise
    config.addinivalue_line("filterwarnings",
                            "ignore:The ``noload`` loader strategy is deprecated:sqlalchemy.exc.SADeprecationWarning")


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory) -> str:
    """The embedded SQLite broker, one for the session: the API only publishes to it
    (no worker consumes here), and kombu keeps an engine per broker URL for the life of
    the process, so one URL keeps that to one engine."""
    return f"sqla+sqlite:///{tmp_path_factory.mktemp('broker') / 'broker.sqlite'}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Template:
    return migrated_template("sqlite", tmp_path_factory.mktemp("sqlite-template"), None)


@pytest.fixture(scope="session")
def postgresql_template(tmp_path_factory, postgres_url) -> Iterator[Template]:
    template = migrated_template("postgresql", tmp_path_factory.mktemp("pg-template"), postgres_url)
    yield template
    template.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_template(request) -> Template:
    """The migrated template of each database kind."""
    return request.getfixturevalue(f"{request.param}_template")


@pytest.fixture
def api_server(request, db_template, tmp_path_factory, broker_url) -> Iterator[InProcessApiServer]:
    """The API in this process on a fresh database (its own folder, not the test's tmp_path)."""
    settings = getattr(request.module, "API_SETTINGS", {})
    with inprocess_server(db_template, tmp_path_factory.mktemp("api"), broker_url, **settings) as server:
        yield server
