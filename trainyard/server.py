"""Running the API with the production WSGI server (gunicorn), from Python."""
from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from service.shared.settings import Settings

from .httpworker import MAX_HEADER_FIELD, MAX_HEADER_FIELDS, MAX_REQUEST_LINE, HeadBufferingWorker


class _Gunicorn(BaseApplication):
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self.application, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application


def serve(settings: Settings, host: str, port: int, workers: int = 2, threads: int | None = None,
          access_log: bool = True) -> None:
    """Migrate the database to head, re-enqueue jobs the broker missed, and serve the API.

    Each event stream holds a thread while it is open (``Settings.max_streams`` of them
    at most a process), so a process gets 4 threads for requests on top of those."""
    from service.api import create_app
    from service.shared.queue import Enqueuer, enqueue_pending, prepare_broker
    from service.store.db import make_engine, make_sessionmaker
    from service.store.migrate import upgrade

    prepare_broker(settings.broker_url)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        enqueue_pending(session, Enqueuer(settings.broker_url, settings.broker_timeout_s))
    engine.dispose()
    app = create_app(settings)
    threads = threads or 4 + settings.max_streams
    _Gunicorn(app, {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
                    # gthread, but a request's head (and a small body) is read by the event
                    # loop before a thread is given to it: a slow client costs a socket, not
                    # one of these few threads; what it refuses is a problem document
                    "worker_class": HeadBufferingWorker,
                    "accesslog": "-" if access_log else None, "loglevel": "info" if access_log else "warning",
                    "timeout": 60, "graceful_timeout": 10,
                    # gunicorn checks these again in the thread (the worker bounds the line
                    # and the whole head first); an unbounded line cost CPU quadratic in its
                    # length to parse (8 MiB: 7 s)
                    "limit_request_line": MAX_REQUEST_LINE, "limit_request_fields": MAX_HEADER_FIELDS,
                    "limit_request_field_size": MAX_HEADER_FIELD}).run()
