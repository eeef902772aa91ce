"""In-process API fixtures for the service tests (see tests/inprocess.py).

``api_server`` is the app on a fresh database per test, once on SQLite and once on
PostgreSQL, with tokens for alice, bob and the administrator root. A module may set
``API_SETTINGS = {...}`` to override fields of ``service.shared.settings.Settings`` (a small
``max_upload_bytes``, say). ``live_api_server`` (tests/conftest.py) is the real
gunicorn process, for the ``integration`` tests.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.inprocess import InProcessApiServer, inprocess_server


@pytest.fixture
def api_server(request, db_template, tmp_path_factory, broker_url) -> Iterator[InProcessApiServer]:
    """The API in this process on a fresh database (its own folder, not the test's tmp_path)."""
    settings = getattr(request.module, "API_SETTINGS", {})
    with inprocess_server(db_template, tmp_path_factory.mktemp("api"), broker_url, **settings) as server:
        yield server
