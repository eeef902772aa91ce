"""The ``trainyard`` command line.

``trainyard train SPEC`` trains a job spec on this machine with nncore alone (no
server, no database): the offline mode of the same spec the service runs.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from threadpoolctl import threadpool_limits

from nncore.callbacks import EventEmitter
from nncore.distributed import LaunchError, launch
from nncore.job import Job, summarize
from nncore.spec import SpecError, load_spec, validate_spec


class _Renderer:
    """Shows training events to a person (epoch lines, a progress bar on a terminal)
    or, with ``--json``, passes epoch and summary events through as JSON lines.

    The same events come from a local run and from rank 0 of an MPI launch, so both
    look the same."""

    def __init__(self, as_json: bool, tty: bool, out_dir: Path) -> None:
        self.as_json, self.tty, self.out_dir = as_json, tty, out_dir
        self.epochs, self.steps_per_epoch, self.first_epoch = 1, 1, 0
        self._last_draw = 0.0
        self._t0 = time.monotonic()
        self.summary: dict[str, Any] | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            self.epochs, self.steps_per_epoch = event["epochs"], max(1, event["steps_per_epoch"])
            self.first_epoch = event.get("from_epoch", 0)
            if not self.as_json:
                ranks = f" on {event['world_size']} MPI ranks" if event.get("world_size", 1) > 1 else ""
                resumed = f", resuming after epoch {self.first_epoch}" if self.first_epoch else ""
                click.echo(f"training {event['network']} on {event['dataset']} ({event['train']} train / "
                           f"{event['validation']} validation samples, {event['task']}) for {self.epochs} "
                           f"epochs{ranks}{resumed}")
                click.echo(f"checkpoints -> {self.out_dir}")
        elif kind == "step":
            self._draw(event)
        elif kind == "epoch":
            self._epoch(event)
        elif kind == "summary":
            self.summary = event
            if self.as_json:
                click.echo(json.dumps(event))
            else:
                click.echo(f"{event['status']}: {event['reason']} in {event['seconds']:.1f} s")
                if event.get("checkpoint"):
                    click.echo(f"last checkpoint: {event['checkpoint']}")

    def _draw(self, ev: dict[str, Any]) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.1 and ev["batch"] + 1 < self.steps_per_epoch:
            return
        self._last_draw = now
        done = (ev["batch"] + 1) / self.steps_per_epoch
        width = 30
        bar = "#" * int(done * width) + "-" * (width - int(done * width))
        elapsed = now - self._t0
        fraction = (ev["epoch"] - self.first_epoch + done) / max(1, self.epochs - self.first_epoch)
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        sys.stderr.write(f"\repoch {ev['epoch'] + 1}/{self.epochs} [{bar}] loss {ev['loss']:.4f} "
                         f"lr {ev['lr']:.3g} eta {_duration(eta)}   ")
        sys.stderr.flush()

    def _epoch(self, logs: dict[str, Any]) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        if self.as_json:
            click.echo(json.dumps({k: _round(v) for k, v in logs.items()}))
            return
        keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "mae", "rmse", "r2", "val_mae",
                            "val_rmse", "val_r2") if k in logs]
        parts = "  ".join(f"{k} {logs[k]:.4f}" for k in keys)
        click.echo(f"epoch {int(logs['epoch']):>{len(str(self.epochs))}}/{self.epochs}  {parts}  "
                   f"lr {logs['lr']:.3g}  {logs['samples_per_s']:,.0f} samples/s")


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _round(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) and math.isfinite(v) else v


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trainyard", prog_name="trainyard")
def main() -> None:
    """trainyard: train neural networks from JSON job specs."""


@main.command()
@click.argument("spec_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for checkpoints [default: runs/<spec name>-<time>].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per epoch and a summary, for scripts.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the spec's number of epochs.")
@click.option("--seed", type=click.IntRange(min=0), help="Override the spec's seed.")
@click.option("--resume", "resume_from", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Continue from this checkpoint (.npz).")
@click.option("--world-size", type=click.IntRange(min=1), help="Train data-parallel on this many MPI processes.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="BLAS threads for matrix products. More only pays off for wide layers on an idle machine.")
def train(spec_file: Path, out_dir: Path | None, as_json: bool, epochs: int | None, seed: int | None,
          resume_from: Path | None, world_size: int | None, threads: int) -> None:
    """Train the job described by SPEC_FILE on this machine, without the service."""
    # Small matrix products are slower threaded: OpenBLAS's thread hand-off costs more
    # than the work, and collapses when the other core is busy (measured on digits:
    # 142k samples/s with 1 thread, 1k-100k with 2 under load).
    with threadpool_limits(limits=threads, user_api="blas"):
        _train(spec_file, out_dir, as_json, epochs, seed, resume_from, world_size)


def _train(spec_file: Path, out_dir: Path | None, as_json: bool, epochs: int | None, seed: int | None,
           resume_from: Path | None, world_size: int | None) -> None:
    try:
        spec = load_spec(spec_file)
        overrides: dict[str, Any] = {k: v for k, v in {"epochs": epochs, "seed": seed}.items() if v is not None}
        if world_size is not None:
            overrides["distributed"] = {"world_size": world_size}
        if overrides:
            spec = validate_spec({**spec, **overrides})
    except SpecError as exc:
        _fail(str(exc))
    if out_dir is None:
        stem = spec.get("name") or spec_file.stem
        out_dir = Path("runs") / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    tty = sys.stderr.isatty() and not as_json
    render = _Renderer(as_json, tty, out_dir)
    if spec["distributed"]["world_size"] > 1:
        _train_mpi(spec, out_dir, resume_from, render, tty)
    else:
        _train_local(spec, out_dir, resume_from, render, tty)
    if render.summary and render.summary["status"] == "diverged":
        sys.exit(1)


def _train_local(spec: dict[str, Any], out_dir: Path, resume_from: Path | None, render: _Renderer,
                 tty: bool) -> None:
    try:
        job = Job(spec, out_dir=out_dir, callbacks=[EventEmitter(render, steps=tty)])
        if resume_from is not None:
            job.resume(resume_from)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        _fail(str(exc))
    render(job.describe())
    started = time.monotonic()
    result = job.run()
    render(summarize(job, result, time.monotonic() - started))


def _train_mpi(spec: dict[str, Any], out_dir: Path, resume_from: Path | None, render: _Renderer,
               tty: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path = out_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    args = ["--spec", str(spec_path), "--out", str(out_dir)]
    if resume_from is not None:
        args += ["--resume", str(resume_from)]
    if tty:
        args.append("--steps")
    try:
        result = launch(spec["distributed"]["world_size"], "nncore.distributed", args, render,
                        timeout_s=spec.get("max_runtime_s"))
    except LaunchError as exc:
        _fail(str(exc))
    if not result.ok:
        _fail(result.error or "the MPI launch failed", 2 if render.summary is None else 1)
    if render.summary is None:
        _fail("the MPI ranks ended without reporting a result: " + " | ".join(result.stderr_tail[-3:]), 1)


# -- server commands --------------------------------------------------------------------

def _settings(database_url: str | None = None, artifact_dir: Path | None = None,
              broker_url: str | None = None) -> Any:
    from .config import Settings

    return Settings.from_env(database_url=database_url, artifact_dir=artifact_dir, broker_url=broker_url)


_db_option = click.option("--database-url", envvar="TRAINYARD_DATABASE_URL",
                          help="SQLAlchemy URL [env TRAINYARD_DATABASE_URL; default a SQLite file in ./var].")


@main.command()
@_db_option
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema to the latest migration."""
    from .store.migrate import current, upgrade

    settings = _settings(database_url)
    upgrade(settings.database_url)
    click.echo(f"database at revision {current(settings.database_url)}: {_safe_url(settings.database_url)}")


@main.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option("--name", required=True, help="The user the token belongs to (created if new).")
@click.option("--admin", is_flag=True, help="Make the user an administrator (sees every job).")
@_db_option
def token_create(name: str, admin: bool, database_url: str | None) -> None:
    """Create a token for user NAME and print it (it is shown only this once)."""
    from .store.db import make_engine, make_sessionmaker
    from .store.migrate import upgrade
    from .store.users import create_token

    settings = _settings(database_url)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            secret = create_token(session, name, admin=admin)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    click.echo(f"token for {name}{' (admin)' if admin else ''}; it is shown only once:", err=True)
    click.echo(secret)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn processes")
@_db_option
@click.option("--broker-url", envvar="TRAINYARD_BROKER_URL", help="Celery broker [env TRAINYARD_BROKER_URL].")
@click.option("--artifact-dir", envvar="TRAINYARD_ARTIFACT_DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoints and datasets [env TRAINYARD_ARTIFACT_DIR].")
def api(host: str, port: int, workers: int, database_url: str | None, broker_url: str | None,
        artifact_dir: Path | None) -> None:
    """Serve the HTTP API (gunicorn), migrating the database first."""
    from .server import serve

    settings = _settings(database_url, artifact_dir, broker_url)
    click.echo(f"trainyard API on http://{host}:{port}/api/v1 (docs at /api/v1/docs), "
               f"database {_safe_url(settings.database_url)}", err=True)
    serve(settings, host, port, workers)


@main.command()
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Jobs trained at once on this worker (each uses its own process).")
@click.option("--queues", default="jobs", show_default=True, help="Comma-separated queues to consume.")
@_db_option
@click.option("--broker-url", envvar="TRAINYARD_BROKER_URL", help="Celery broker [env TRAINYARD_BROKER_URL].")
@click.option("--artifact-dir", envvar="TRAINYARD_ARTIFACT_DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoints and datasets [env TRAINYARD_ARTIFACT_DIR].")
@click.option("--loglevel", default="info", show_default=True)
def worker(concurrency: int, queues: str, database_url: str | None, broker_url: str | None,
           artifact_dir: Path | None, loglevel: str) -> None:
    """Run a Celery worker that trains submitted jobs (and the reaper that recovers
    jobs of dead workers)."""
    # the Celery app reads its settings from the environment when it is imported
    for var, value in (("TRAINYARD_DATABASE_URL", database_url), ("TRAINYARD_BROKER_URL", broker_url),
                       ("TRAINYARD_ARTIFACT_DIR", str(artifact_dir) if artifact_dir else None)):
        if value:
            os.environ[var] = value
    from worker.celery_app import celery
    from worker.reaper import Reaper

    from .store.migrate import upgrade

    settings = celery.trainyard_settings
    upgrade(settings.database_url)
    reaper = Reaper(settings)
    reaper.start()
    try:
        celery.worker_main(["worker", f"--concurrency={concurrency}", f"--queues={queues}",
                            f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"])
    finally:
        reaper.stop()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", "n_workers", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Jobs trained at once.")
def up(host: str, port: int, n_workers: int) -> None:
    """Everything on this machine, no server to install: migrations on a SQLite file,
    the API, a worker on the embedded broker, and the reaper. Ctrl-C stops it all."""
    import signal
    import subprocess
    import time

    from .store.db import make_engine, make_sessionmaker
    from .store.migrate import upgrade
    from .store.users import create_token

    settings = _settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        secret = create_token(session, "admin", token_name="trainyard up", admin=True)
    engine.dispose()
    exe = [sys.executable, "-m", "service.cli"]
    env = {**os.environ, "TRAINYARD_DATABASE_URL": settings.database_url,
           "TRAINYARD_BROKER_URL": settings.broker_url, "TRAINYARD_ARTIFACT_DIR": str(settings.artifact_dir)}
    children = [
        subprocess.Popen(exe + ["api", "--host", host, "--port", str(port)], env=env, start_new_session=True),
        subprocess.Popen(exe + ["worker", "--concurrency", str(n_workers), "--loglevel", "warning"], env=env,
                         start_new_session=True),
    ]
    click.echo(f"trainyard is up: API http://{host}:{port}/api/v1 (docs /api/v1/docs)", err=True)
    click.echo(f"database {_safe_url(settings.database_url)}, artifacts {settings.artifact_dir}", err=True)
    click.echo("admin token (shown once):", err=True)
    click.echo(secret)

    stopping = []

    def stop(_signum: int, _frame: Any) -> None:
        stopping.append(True)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.2)
    failed = [c for c in children if c.poll() not in (None, 0)]
    for c in children:
        if c.poll() is None:
            os.killpg(c.pid, signal.SIGTERM)
    for c in children:
        try:
            c.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(c.pid, signal.SIGKILL)
            c.wait()
    if failed and not stopping:
        _fail("a part of trainyard stopped unexpectedly; see its output above", 1)
    click.echo("trainyard stopped", err=True)


# -- client verbs --------------------------------------------------------------------------

_url_option = click.option("--url", envvar="TRAINYARD_URL", default="http://127.0.0.1:8000", show_default=True,
                           help="The API [env TRAINYARD_URL].")
_token_option = click.option("--token", envvar="TRAINYARD_TOKEN", help="API token [env TRAINYARD_TOKEN].")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _client(url: str, token: str | None) -> Any:
    from .client import Client

    if not token:
        _fail("no API token: pass --token or set TRAINYARD_TOKEN (create one with: trainyard token create)")
    return Client(url, token)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from .client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        _fail(str(exc), 2 if exc.status in (400, 422) else 1)
    except ConnectionError as exc:
        _fail(str(exc), 1)


def _job_line(job: dict[str, Any]) -> str:
    p = job.get("progress") or {}
    progress = f"epoch {p['epoch']}/{p['epochs']}" if p.get("epochs") else ""
    return f"{job['id']:>6}  {job['status']:<10} {job.get('name') or '-':<20} {progress:<14} {job['created_at']}"


@main.command()
@click.argument("spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--priority", default=0, type=click.IntRange(-100, 100))
@click.option("--watch", is_flag=True, help="Follow the job with a progress bar until it ends.")
@_url_option
@_token_option
@_json_option
def submit(spec_file: Path, priority: int, watch: bool, url: str, token: str | None, as_json: bool) -> None:
    """Submit the job spec in SPEC_FILE to the service."""
    try:
        spec = json.loads(spec_file.read_text())
    except json.JSONDecodeError as exc:
        _fail(f"{spec_file} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    client = _client(url, token)
    job = _call(client.submit, spec, priority)
    if as_json and not watch:
        click.echo(json.dumps(job))
        return
    click.echo(f"submitted job {job['id']} ({job['status']})", err=as_json)
    if watch:
        job = _watch(client, job["id"], as_json)
        if job["status"] != "succeeded":
            sys.exit(1)


def _watch(client: Any, job_id: int, as_json: bool) -> dict[str, Any]:
    import time

    tty = sys.stderr.isatty() and not as_json
    while True:
        job = _call(client.job, job_id)
        p = job.get("progress") or {}
        if tty and p.get("epochs"):
            done = p["epoch"] / p["epochs"]
            bar = "#" * int(30 * done) + "-" * (30 - int(30 * done))
            eta = p.get("eta_s")
            sys.stderr.write(f"\rjob {job_id} {job['status']} [{bar}] epoch {p['epoch']}/{p['epochs']}"
                             + (f" eta {_duration(eta)}" if eta is not None else "") + "   ")
            sys.stderr.flush()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if tty:
                sys.stderr.write("\r\033[K")
            if as_json:
                click.echo(json.dumps(job))
            else:
                val = (job.get("result") or {}).get("validation") or {}
                extra = "  ".join(f"val_{k} {v:.4f}" for k, v in val.items() if isinstance(v, float))
                click.echo(f"job {job_id} {job['status']}" + (f": {job['error']}" if job.get("error") else "")
                           + (f"  {extra}" if extra else ""))
            return job
        time.sleep(0.5)


@main.command()
@click.option("--status", help="Comma-separated statuses to show.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@_url_option
@_token_option
@_json_option
def jobs(status: str | None, limit: int, url: str, token: str | None, as_json: bool) -> None:
    """List your jobs, newest first."""
    page = _call(_client(url, token).jobs, status, limit)
    if as_json:
        click.echo(json.dumps(page))
        return
    click.echo(f"{'id':>6}  {'status':<10} {'name':<20} {'progress':<14} created")
    for job in page["items"]:
        click.echo(_job_line(job))


@main.command()
@click.argument("job_id", type=int)
@_url_option
@_token_option
@_json_option
def status(job_id: int, url: str, token: str | None, as_json: bool) -> None:
    """Show one job."""
    job = _call(_client(url, token).job, job_id)
    if as_json:
        click.echo(json.dumps(job))
        return
    click.echo(_job_line(job))
    if job.get("error"):
        click.echo(f"error: {job['error']}")


@main.command()
@click.argument("job_id", type=int)
@_url_option
@_token_option
def cancel(job_id: int, url: str, token: str | None) -> None:
    """Cancel a job (a running one stops at its next step)."""
    job = _call(_client(url, token).cancel, job_id)
    click.echo(f"job {job_id}: {'cancel requested' if job['status'] == 'running' else job['status']}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


if __name__ == "__main__":
    main()
