"""Server commands: migrate, token, api, worker, and up (all of it on one machine)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from . import _fail, main
from .tokens import Expiry, describe, expiry_text, expiry_time, print_tokens


def _settings(database_url: str | None = None, artifact_dir: Path | None = None,
              broker_url: str | None = None) -> Any:
    from service.shared.settings import Settings

    return Settings.from_env(database_url=database_url, artifact_dir=artifact_dir, broker_url=broker_url)


_quiet_option = click.option("--quiet", is_flag=True, help="Log warnings and errors only (no banner, no access log).")
_db_option = click.option("--database-url", envvar="TRAINYARD_DATABASE_URL",
                          help="SQLAlchemy URL [env TRAINYARD_DATABASE_URL; default a SQLite file in ./var].")


@main.command()
@_db_option
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema to the latest migration."""
    from service.store.migrate import current, upgrade

    settings = _settings(database_url)
    upgrade(settings.database_url)
    click.echo(f"database at revision {current(settings.database_url)}: {_safe_url(settings.database_url)}")


@main.group()
def token() -> None:
    """Manage API tokens."""


@contextlib.contextmanager
def _database(database_url: str | None) -> Iterator[Any]:
    """A session on the migrated database, for the operator's token commands."""
    from service.store.db import make_engine, make_sessionmaker
    from service.store.migrate import upgrade

    settings = _settings(database_url)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _shown(row: Any) -> dict[str, Any]:
    """A token's row as the API shows it (no hash, no secret)."""
    from service.api.schemas import TokenOut

    return TokenOut.model_validate(row).model_dump()


@token.command("create")
@click.option("--name", required=True, help="The user the token belongs to (created if new).")
@click.option("--admin", is_flag=True, help="Make the user an administrator (sees every job).")
@click.option("--expires", type=Expiry(), help="When it stops working: 30d, 12h, 2w from now, or a date "
                                               "(2027-01-01, midnight UTC) [default: never].")
@click.option("--label", help="What the token is for (a laptop, a CI job), shown in the list [default: the "
                              "user name].")
@_db_option
def token_create(name: str, admin: bool, expires: Any, label: str | None, database_url: str | None) -> None:
    """Create a token for user NAME and print it (it is shown only this once)."""
    from service.store.users import issue_token

    try:
        with _database(database_url) as session:
            row, secret = issue_token(session, name, label, admin=admin, expires_at=expiry_time(expires))
            shown = _shown(row)
    except ValueError as exc:
        _fail(str(exc))
    click.echo(f"token {describe(shown)}{' (admin)' if admin else ''}, {expiry_text(shown)}; "
               "it is shown only once:", err=True)
    click.echo(secret)


@token.command("list")
@click.option("--user", "user_name", help="Only this user's tokens [default: everyone's].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_db_option
def token_list(user_name: str | None, as_json: bool, database_url: str | None) -> None:
    """List the tokens (revoked and expired ones too), by id; never their secrets."""
    from service.store.errors import NotFound
    from service.store.users import list_tokens

    try:
        with _database(database_url) as session:
            items = [_shown(row) for row in list_tokens(session, None, user_name)]
    except NotFound as exc:
        _fail(str(exc), 1)
    if as_json:
        click.echo(json.dumps(items))
    else:
        print_tokens(items)


@token.command("revoke")
@click.argument("token_id", required=False, type=click.IntRange(min=1), metavar="[ID]")
@click.option("--user", "user_name", help="Revoke every token of this user instead.")
@_db_option
def token_revoke(token_id: int | None, user_name: str | None, database_url: str | None) -> None:
    """Revoke token ID (as token list shows it, #ID), or every token of a user: they are
    refused from their next request on."""
    from service.store.errors import NotFound
    from service.store.models import utcnow
    from service.store.users import list_tokens, revoke_token, revoke_tokens

    if (token_id is None) == (user_name is None):
        _fail("give a token id or --user NAME (one of them)")
    with _database(database_url) as session:
        try:
            if user_name is not None:
                list_tokens(session, None, user_name)  # NotFound for a name nobody has
                n = revoke_tokens(session, user_name)
                click.echo(f"revoked {n} token{'' if n == 1 else 's'} of {user_name}")
                return
            started = utcnow()
            row = revoke_token(session, None, token_id)
        except NotFound as exc:
            _fail(str(exc), 1)
        shown = _shown(row)
    if row.revoked_at < started:
        click.echo(f"token {describe(shown)} was already revoked")
    else:
        click.echo(f"revoked token {describe(shown)}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn processes")
@_db_option
@click.option("--broker-url", envvar="TRAINYARD_BROKER_URL", help="Celery broker [env TRAINYARD_BROKER_URL].")
@click.option("--artifact-dir", envvar="TRAINYARD_ARTIFACT_DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoints and datasets [env TRAINYARD_ARTIFACT_DIR].")
@_quiet_option
def api(host: str, port: int, workers: int, database_url: str | None, broker_url: str | None,
        artifact_dir: Path | None, quiet: bool) -> None:
    """Serve the HTTP API (gunicorn) and the dashboard at /, migrating the database first."""
    from ..server import serve

    settings = _settings(database_url, artifact_dir, broker_url)
    if not quiet:
        click.echo(f"trainyard API on http://{host}:{port}/api/v1 (docs at /api/v1/docs), dashboard at "
                   f"http://{host}:{port}/, database {_safe_url(settings.database_url)}", err=True)
    serve(settings, host, port, workers, access_log=not quiet)


@main.command()
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Jobs trained at once on this worker (each uses its own process).")
@click.option("--queues", default="jobs", show_default=True, help="Comma-separated queues to consume.")
@_db_option
@click.option("--broker-url", envvar="TRAINYARD_BROKER_URL", help="Celery broker [env TRAINYARD_BROKER_URL].")
@click.option("--artifact-dir", envvar="TRAINYARD_ARTIFACT_DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoints and datasets [env TRAINYARD_ARTIFACT_DIR].")
@click.option("--loglevel", default="info", show_default=True)
@_quiet_option
def worker(concurrency: int, queues: str, database_url: str | None, broker_url: str | None,
           artifact_dir: Path | None, loglevel: str, quiet: bool) -> None:
    """Run a Celery worker that trains submitted jobs (and the reaper that recovers
    jobs of dead workers)."""
    # the Celery app reads its settings from the environment when it is imported
    for var, value in (("TRAINYARD_DATABASE_URL", database_url), ("TRAINYARD_BROKER_URL", broker_url),
                       ("TRAINYARD_ARTIFACT_DIR", str(artifact_dir) if artifact_dir else None)):
        if value:
            os.environ[var] = value
    from celery.signals import worker_ready

    from service.shared.queue import prepare_broker
    from service.store.migrate import upgrade
    from worker.celery_app import celery
    from worker.presence import Presence, worker_name
    from worker.reaper import Reaper

    settings = celery.trainyard_settings
    prepare_broker(settings.broker_url)
    upgrade(settings.database_url)
    reaper = Reaper(settings)
    reaper.start()
    # named now, before the pool forks, so its processes name their leases after this worker
    worker_name()
    presence: list[Presence] = []

    def register(**_kwargs: Any) -> None:
        # Listed only once Celery is connected to the broker and consuming: a worker in the
        # registry can take jobs, and `trainyard up` waits for this row to say it is up.
        if not presence:
            presence.append(Presence(settings, concurrency, queues))
            presence[0].start()

    worker_ready.connect(register, weak=False)
    try:
        celery.worker_main([*(["--quiet"] if quiet else []), "worker", f"--concurrency={concurrency}",
                            f"--queues={queues}", f"--loglevel={'warning' if quiet else loglevel}",
                            "--without-gossip", "--without-mingle"])
    finally:
        for p in presence:
            p.stop()
        reaper.stop()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", "n_workers", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Jobs trained at once.")
@click.option("--start-timeout", default=30.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds the API and the worker have to start working before up gives up.")
def up(host: str, port: int, n_workers: int, start_timeout: float) -> None:
    """Everything on this machine, no server to install: migrations on a SQLite file,
    the API, a worker on the embedded broker, and the reaper. Ctrl-C stops it all."""
    import signal

    from sqlalchemy.exc import SQLAlchemyError

    from service.shared.queue import Enqueuer, prepare_broker
    from service.store.db import make_engine, make_sessionmaker, unreachable
    from service.store.migrate import upgrade
    from service.store.users import create_token

    from .supervise import Part, Readiness, stop, wait_until_up

    settings = _settings()
    # A broker nobody can reach would leave the worker retrying forever and every job
    # queued: say so before anything is started.
    prepare_broker(settings.broker_url)
    broker_problem = Enqueuer(settings.broker_url, timeout_s=5.0).ping()
    if broker_problem is not None:
        _fail(f"the broker {_safe_url(settings.broker_url)} cannot be reached: {broker_problem}", 1)
    try:
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            with make_sessionmaker(engine)() as session:
                secret = create_token(session, "admin", token_name="trainyard up", admin=True)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _fail(f"the database {_safe_url(settings.database_url)} cannot be "
              f"{'reached' if unreachable(exc) else 'used'}: {reason}", 1)

    stopping: list[bool] = []

    def on_signal(_signum: int, _frame: Any) -> None:
        stopping.append(True)

    # set before the parts start, so Ctrl-C while they start stops them too (they run in
    # sessions of their own, which the terminal's Ctrl-C does not reach)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    exe = [sys.executable, "-m", "trainyard.cli"]
    env = {**os.environ, "TRAINYARD_DATABASE_URL": settings.database_url,
           "TRAINYARD_BROKER_URL": settings.broker_url, "TRAINYARD_ARTIFACT_DIR": str(settings.artifact_dir)}
    # the parts log to up's stderr: stdout carries only the token, for scripts
    parts = [Part("api", exe + ["api", "--host", host, "--port", str(port), "--quiet"], env),
             Part("worker", exe + ["worker", "--concurrency", str(n_workers), "--quiet"], env)]
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    problem = wait_until_up(parts, Readiness(base, secret, parts[1].proc.pid), start_timeout,
                            lambda: bool(stopping))
    if problem is not None:
        stop(parts)
        _fail(f"trainyard did not start: {problem}", 1)
    if stopping:
        stop(parts)
        click.echo("trainyard stopped", err=True)
        return

    embedded = " (embedded, no server needed)" if settings.broker_url.startswith("sqla+") else ""
    # the command as this shell can run it (a virtualenv's bin is often not on PATH)
    cli = "trainyard" if shutil.which("trainyard") == os.path.abspath(sys.argv[0]) else os.path.relpath(sys.argv[0])
    click.echo(f"""trainyard is up
  dashboard  {base}/   (sign in with the admin token below)
  API        {base}/api/v1   (docs {base}/api/v1/docs)
  database   {_safe_url(settings.database_url)}
  broker     {_safe_url(settings.broker_url)}{embedded}
  artifacts  {settings.artifact_dir}
  workers    1 worker training {n_workers} job{'s' if n_workers > 1 else ''} at a time, with the reaper
in another terminal:
  export TRAINYARD_TOKEN={secret}
  {cli} submit examples/digits.json --watch
Ctrl-C stops everything. The admin token (shown once):""", err=True)
    click.echo(secret)

    while not stopping and not any(p.exited for p in parts):
        time.sleep(0.2)
    exited = next((p for p in parts if p.exited), None)
    if exited is not None and not stopping:
        click.echo(f"error: the {exited.name} stopped unexpectedly ({exited.exit_text()}); stopping the rest of "
                   f"trainyard. The last it printed:\n{exited.last_lines()}", err=True)
        stop(parts)
        sys.exit(1)
    stop(parts)
    click.echo("trainyard stopped", err=True)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
