"""Client verbs: the API from a shell (submit, jobs, status, logs, cancel, checkpoints,
download, datasets, predict). Server and token from --url/--token or the environment."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from nncore.budget import format_bytes
from service.store.status import JobStatus

from . import _duration, _fail, main
from .tokens import Expiry as _Expiry

_url_option = click.option("--url", envvar="TRAINYARD_URL", default="http://127.0.0.1:8000", show_default=True,
                           help="The API [env TRAINYARD_URL].")
_token_option = click.option("--token", envvar="TRAINYARD_TOKEN", help="API token [env TRAINYARD_TOKEN].")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def client_command(json_flag: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every client verb shares (--url, --token and, unless ``json_flag`` is
    false, --json) turned into the command's ``client`` argument (and ``as_json``).

    Put it right above the function, below the command's own options: they are listed
    first in --help, these three last.
    """
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def command(*args: Any, url: str, token: str | None, **kwargs: Any) -> Any:
            return fn(*args, client=_client(url, token), **kwargs)

        # click lists options in the reverse of the order they are applied
        for option in ([_json_option] if json_flag else []) + [_token_option, _url_option]:
            command = option(command)
        return command

    return decorate


class _Statuses(click.ParamType):
    """Job statuses, comma-separated (``queued,running``), each one of JobStatus: a typo
    is refused here with the list, rather than by the server as a bare 422."""

    name = "statuses"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        names = [v.strip() for v in str(value).split(",") if v.strip()]
        known = [s.value for s in JobStatus]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            self.fail(f"{', '.join(map(repr, unknown)) or 'nothing'} is not a job status; choose from "
                      f"{', '.join(known)} (several separated by commas)", param, ctx)
        return ",".join(names)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        done, _, last = incomplete.rpartition(",")
        prefix = done + "," if done else ""
        return [CompletionItem(prefix + s.value) for s in JobStatus if s.value.startswith(last)]


def _client(url: str, token: str | None) -> Any:
    from ..client import Client

    class CommandClient(Client):
        def _request(self, method: str, path: str, **kwargs: Any) -> Any:
            # at the first request rather than when the command starts: a command reports
            # what is wrong with its own input (a spec, rows to predict) before the token
            if not token:
                _fail("no API token: pass --token or set TRAINYARD_TOKEN (create one with: trainyard token create)")
            return super()._request(method, path, **kwargs)

    return CommandClient(url, token)


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """A client error as the command's message and exit code (2: the input, 1: the rest)."""
    from ..client import ApiError, ChecksumError, NoSuchCheckpoint

    try:
        yield
    except ApiError as exc:
        _fail(str(exc), 2 if exc.status in (400, 422) else 1)
    except (ConnectionError, NoSuchCheckpoint, ChecksumError) as exc:
        _fail(str(exc), 1)
    except ValueError as exc:  # input the client refused to send (NaN, say)
        _fail(str(exc), 2)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with _reported():
        return fn(*args, **kwargs)


def _follow(client: Any, job_id: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """The job's status changes and events until it ends (``Client.stream``, no points)."""
    with _reported():
        yield from client.stream(job_id, names=[])


def _job_line(job: dict[str, Any]) -> str:
    p = job.get("progress") or {}
    progress = f"epoch {p['epoch']}/{p['epochs']}" if p.get("epochs") else ""
    return (f"{job['id']:>6}  {job['status']:<10} {job.get('name') or '-':<20} {progress:<14} "
            f"{_validation(job.get('result')):<30} {_local_time(job['created_at'])}")


def _validation(result: dict[str, Any] | None) -> str:
    """The one validation metric a person looks at first (accuracy, else r2, else the
    loss) from a finished job's result, with the best epoch when early stopping saw one."""
    val = (result or {}).get("validation") or {}
    key = next((k for k in ("accuracy", "r2", "loss") if isinstance(val.get(k), (int, float))), None)
    if key is None:
        return ""
    best = (result or {}).get("best_epoch")
    return f"val_{key} {val[key]:.4f}" + (f" (best {best})" if best is not None else "")


@main.command()
@click.argument("spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--priority", default=0, type=click.IntRange(-100, 100))
@click.option("--watch", is_flag=True, help="Follow the job with a progress bar until it ends.")
@client_command()
def submit(spec_file: Path, priority: int, watch: bool, client: Any, as_json: bool) -> None:
    """Submit the job spec in SPEC_FILE to the service."""
    try:
        spec = json.loads(spec_file.read_text())
    except json.JSONDecodeError as exc:
        _fail(f"{spec_file} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    job = _call(client.submit, spec, priority)
    if as_json and not watch:
        click.echo(json.dumps(job))
        return
    click.echo(f"submitted job {job['id']} ({job['status']})", err=as_json)
    if watch:
        job = _watch(client, job["id"], as_json)
        if job["status"] != JobStatus.SUCCEEDED:
            sys.exit(1)


def _watch(client: Any, job_id: int, as_json: bool) -> dict[str, Any]:
    tty = sys.stderr.isatty() and not as_json
    for event, data in _follow(client, job_id):
        p = data.get("progress") or {}
        if event == "status" and tty and p.get("epochs"):
            done = p["epoch"] / p["epochs"]
            bar = "#" * int(30 * done) + "-" * (30 - int(30 * done))
            eta = p.get("eta_s")
            # the latest epoch's figures, which the worker sends with the progress
            latest = p.get("metrics") or {}
            figures = "".join(f" {k} {latest[k]:.4f}" for k in ("loss", "val_loss", "val_accuracy") if k in latest)
            sys.stderr.write(f"\rjob {job_id} {data['status']} [{bar}] epoch {p['epoch']}/{p['epochs']}{figures}"
                             + (f" eta {_duration(eta)}" if eta is not None else "") + "\033[K")
            sys.stderr.flush()
    # the stream ended with the job; its result (the validation figures) is in the job
    job = _call(client.job, job_id)
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


def _event_line(event: dict[str, Any]) -> str:
    return f"{_local_time(event['time'])}  {event['kind']:<6} {event['message']}"


@main.command()
@click.argument("job_id", type=int)
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing events as they happen until the job ends, then its final status; "
                   "exit 0 if it succeeded, 1 otherwise.")
@client_command()
def logs(job_id: int, follow: bool, client: Any, as_json: bool) -> None:
    """Print a job's events (state changes, log lines), oldest first."""
    show = (lambda e: click.echo(json.dumps(e))) if as_json else (lambda e: click.echo(_event_line(e)))
    if not follow:
        after: int | None = None
        while True:
            page = _call(client.events, job_id, after, 1000)
            for event in page["items"]:
                show(event)
            if page["next_after_id"] is None:
                return
            after = page["next_after_id"]
    status: dict[str, Any] = {}
    for name, data in _follow(client, job_id):
        if name == "log":
            show(data)
        elif name == "status":
            status = data
        elif name == "end":
            status = {**status, **data}
    if as_json:
        click.echo(json.dumps({"id": job_id, "status": status["status"], "error": status.get("error")}))
    else:
        click.echo(f"job {job_id} {status['status']}" + (f": {status['error']}" if status.get("error") else ""))
    sys.exit(0 if status["status"] == JobStatus.SUCCEEDED else 1)


@main.command()
@click.option("--status", type=_Statuses(),
              help=f"Only jobs in these statuses, comma-separated: {', '.join(s.value for s in JobStatus)}.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@client_command()
def jobs(status: str | None, limit: int, client: Any, as_json: bool) -> None:
    """List your jobs, newest first, with progress and the final validation metric."""
    page = _call(client.jobs, status, limit)
    if as_json:
        click.echo(json.dumps(page))
        return
    click.echo(f"{'id':>6}  {'status':<10} {'name':<20} {'progress':<14} {'validation':<30} created")
    for job in page["items"]:
        click.echo(_job_line(job))


@main.command()
@click.argument("job_id", type=int)
@client_command()
def status(job_id: int, client: Any, as_json: bool) -> None:
    """Show one job."""
    job = _call(client.job, job_id)
    if as_json:
        click.echo(json.dumps(job))
        return
    click.echo(_job_line(job))
    if job.get("error"):
        click.echo(f"error: {job['error']}")


@main.command()
@click.argument("job_id", type=int)
@client_command(json_flag=False)
def cancel(job_id: int, client: Any) -> None:
    """Cancel a job (a running one stops at its next step)."""
    job = _call(client.cancel, job_id)
    click.echo(f"job {job_id}: {'cancel requested' if job['status'] == JobStatus.RUNNING else job['status']}")


@main.command()
@client_command()
def me(client: Any, as_json: bool) -> None:
    """Who your token belongs to, and what your datasets and checkpoints use of your quota."""
    who = _call(client.me)
    if as_json:
        click.echo(json.dumps(who))
        return
    q = who["quota"]
    click.echo(f"{who['name']}{' (administrator)' if who['is_admin'] else ''}")
    limit = "no quota" if q["limit_bytes"] is None else f"of {format_bytes(q['limit_bytes'])}"
    click.echo(f"storage: {format_bytes(q['used_bytes'])} used {limit} (datasets {format_bytes(q['datasets_bytes'])}, "
               f"checkpoints {format_bytes(q['checkpoints_bytes'])})")
    click.echo(f"reserved by unfinished jobs: {format_bytes(q['reserved_bytes'])}"
               + ("" if q["free_bytes"] is None else f"; free: {format_bytes(q['free_bytes'])}"))


@main.command()
@client_command()
def workers(client: Any, as_json: bool) -> None:
    """Show the workers: alive, lost (stopped reporting) or stopped, and what they train."""
    items = _call(client.workers)
    if as_json:
        click.echo(json.dumps(items))
        return
    if not items:
        click.echo("no worker has reported in the last day; start one with: trainyard worker", err=True)
        return
    _table(["worker", "state", "busy", "jobs", "last seen", "broker"],
           [[w["name"], w["state"], f"{w['busy']}/{w['concurrency']}",
             ", ".join(str(j["id"]) for j in w["jobs"]) or "-", _local_time(w["last_seen_at"]), w["broker"]]
            for w in items], left=(0, 1, 3, 4, 5))


def _value(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.4f}"
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.3e}"


def _table(header: list[str], rows: list[list[str]], left: tuple[int, ...] = ()) -> None:
    """Columns of numbers aligned right, the columns ``left`` (text) aligned left."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) if i in left else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip())


# -- checkpoints -------------------------------------------------------------------------

def _local_time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


@main.command()
@click.argument("job_id", type=int)
@client_command()
def checkpoints(job_id: int, client: Any, as_json: bool) -> None:
    """List a job's checkpoints, oldest first; the best one (by the spec's best_metric) is marked."""
    from nncore.job import best_checkpoint_options

    rows = _call(client.checkpoints, job_id)
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        job = _call(client.job, job_id)
        click.echo(f"job {job_id} ({job['status']}) has no checkpoints yet", err=True)
        return
    metric = best_checkpoint_options(_call(client.job, job_id)["spec"])["best_metric"]
    table = [[str(c["epoch"]), str(c["step"]), format_bytes(c["size_bytes"]), c["sha256"][:12],
              _value((c.get("metrics") or {}).get(metric)), _local_time(c["created_at"]),
              "best" if c["is_best"] else ""] for c in rows]
    _table(["epoch", "step", "size", "sha256", metric, "created", ""], table, left=(3, 5, 6))


@main.command()
@click.argument("job_id", type=int)
@click.option("--epoch", type=click.IntRange(min=0), help="The checkpoint of this epoch [default: the latest].")
@click.option("--best", is_flag=True, help="The checkpoint marked best.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="File or existing folder to write to [default: ./job-<id>-epoch-<epoch>.npz].")
@client_command(json_flag=False)
def download(job_id: int, epoch: int | None, best: bool, output: Path | None, client: Any) -> None:
    """Download a checkpoint (.npz), check its sha256 and print where it was written."""
    if epoch is not None and best:
        _fail("--epoch and --best name different checkpoints; give one of them")
    which = "best" if best else epoch if epoch is not None else "latest"
    ckpt = _call(client.checkpoint, job_id, which)
    try:
        path = _call(client.download, job_id, ckpt["epoch"], output)
    except OSError as exc:
        _fail(f"cannot write {output or 'the checkpoint here'}: {exc.strerror}", 1)
    click.echo(f"checkpoint of epoch {ckpt['epoch']} (step {ckpt['step']}, {format_bytes(ckpt['size_bytes'])}), "
               f"sha256 {ckpt['sha256'][:12]}... verified", err=True)
    click.echo(str(path))


# -- datasets ----------------------------------------------------------------------------

@main.group()
def datasets() -> None:
    """Upload and list datasets to train on (use one in a spec as "data": {"dataset_id": ID})."""


def _shape(ds: dict[str, Any]) -> str:
    classes = f" ({ds['n_classes']} classes)" if ds.get("n_classes") else ""
    return f"{ds['n_samples']:,} samples x {ds['n_features']} features, {ds['task']}{classes}"


@datasets.command("upload")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--name", help="A name for it [default: the file name without its extension].")
@click.option("--target", help="CSV only: the target column, by header name or index (-1 is the last) "
                               "[default: the last column].")
@client_command()
def datasets_upload(file: Path, name: str | None, target: str | None, client: Any,
                    as_json: bool) -> None:
    """Upload FILE (.csv of numbers with an optional header row, or .npz with arrays X and y)."""
    try:
        ds = _call(client.upload_dataset, file, name, target)
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}", 1)
    if as_json:
        click.echo(json.dumps(ds))
        return
    click.echo(f"dataset {ds['id']} \"{ds['name']}\": {_shape(ds)}"
               + (f", target {ds['target']}" if ds.get("target") else ""))
    click.echo(f'use it in a job spec as: "data": {{"dataset_id": {ds["id"]}}}')


@datasets.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 200))
@client_command()
def datasets_list(limit: int, client: Any, as_json: bool) -> None:
    """List your datasets, newest first."""
    page = _call(client.datasets, limit)
    if as_json:
        click.echo(json.dumps(page))
        return
    if not page["items"]:
        click.echo("no datasets yet; add one with: trainyard datasets upload FILE.csv", err=True)
        return
    _table(["id", "name", "samples", "features", "task", "classes", "size", "created"],
           [[str(d["id"]), d["name"], f"{d['n_samples']:,}", str(d["n_features"]), d["task"],
             str(d["n_classes"] or "-"), format_bytes(d["size_bytes"]), _local_time(d["created_at"])]
            for d in page["items"]], left=(1, 4, 7))


# -- tokens ------------------------------------------------------------------------------

@main.group()
def tokens() -> None:
    """Your API tokens through the API: list, create, revoke (the server's operator has
    `trainyard token ...` on the database)."""


@tokens.command("list")
@click.option("--user", help="Administrators: this user's tokens.")
@click.option("--all", "all_users", is_flag=True, help="Administrators: everyone's tokens.")
@client_command()
def tokens_list(user: str | None, all_users: bool, client: Any, as_json: bool) -> None:
    """List your tokens (revoked and expired ones too), by id; never their secrets."""
    from .tokens import print_tokens

    items = _call(client.tokens, user, all_users)
    if as_json:
        click.echo(json.dumps(items))
    else:
        print_tokens(items)


@tokens.command("create")
@click.argument("name")
@click.option("--expires", type=_Expiry(), help="When it stops working: 30d, 12h, 2w from now, or a date "
                                                "(2027-01-01, midnight UTC) [default: never].")
@click.option("--user", help="Administrators: the token is for this user (created if new).")
@client_command()
def tokens_create(name: str, expires: Any, user: str | None, client: Any, as_json: bool) -> None:
    """Create a token NAME (what it is for: a laptop, a CI job) and print its secret,
    which is shown only this once."""
    from datetime import timedelta

    from .tokens import describe, expiry_text, expiry_time

    days = expires.days if isinstance(expires, timedelta) and expires == timedelta(days=expires.days) else None
    at = None if days is not None else expiry_time(expires)
    created = _call(client.create_token, name, expires_in_days=days, expires_at=at, user=user)
    if as_json:
        click.echo(json.dumps(created))
        return
    click.echo(f"token {describe(created)}, {expiry_text(created)}; it is shown only once:", err=True)
    click.echo(created["token"])


@tokens.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1), metavar="ID")
@client_command(json_flag=False)
def tokens_revoke(token_id: int, client: Any) -> None:
    """Revoke token ID (as tokens list shows it, #ID): it is refused from its next
    request on. Revoking the token this command uses is allowed."""
    from .tokens import describe

    me = _call(client.me)
    known = {t["id"]: t for t in _call(client.tokens, all_users=me["is_admin"])}
    _call(client.revoke_token, token_id)
    if token_id not in known:  # revoked all the same: the list and the revoke may disagree only in a race
        click.echo(f"revoked token #{token_id}")
    elif known[token_id]["revoked_at"]:
        click.echo(f"token {describe(known[token_id])} was already revoked")
    else:
        click.echo(f"revoked token {describe(known[token_id])}")


# -- predictions -------------------------------------------------------------------------

#: rows per predict call, well under the server's default max_predict_rows (10000)
_PREDICT_CHUNK = 1000


class _CheckpointRef(click.ParamType):
    name = "latest|best|EPOCH"

    def convert(self, value: Any, param: Any, ctx: Any) -> str | int:
        if isinstance(value, int) or value in ("latest", "best"):
            return value
        if str(value).isdigit():
            return int(value)
        self.fail(f"must be latest, best or an epoch number, got {value!r}", param, ctx)


@main.command()
@click.argument("job_id", type=int)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--checkpoint", default="latest", show_default=True, type=_CheckpointRef(),
              help="Which checkpoint predicts: latest, best, or an epoch number.")
@client_command()
def predict(job_id: int, file: Path, checkpoint: str | int, client: Any, as_json: bool) -> None:
    """Predict with a job's checkpoint, one line per row of FILE: the class for a
    classifier, else the outputs.

    FILE holds raw feature rows: CSV (numbers; a header row is skipped), .npy, or JSON
    (a list of rows); - reads CSV from standard input.
    """
    rows = _read_rows(file)
    answer: dict[str, Any] | None = None
    for start in range(0, len(rows), _PREDICT_CHUNK):
        part = _call(client.predict, job_id, rows[start:start + _PREDICT_CHUNK], checkpoint)
        if answer is None:
            answer = part
            # the later chunks use the same checkpoint, even if a newer one is written meanwhile
            if not part["checkpoint"]["best_params"]:
                checkpoint = part["checkpoint"]["epoch"]
        else:
            answer["outputs"] += part["outputs"]
            if answer["labels"] is not None:
                answer["labels"] += part["labels"]
    assert answer is not None  # _read_rows never returns no rows
    if as_json:
        click.echo(json.dumps(answer))
        return
    if answer["labels"] is not None:
        click.echo("\n".join(str(label) for label in answer["labels"]))
    else:
        click.echo("\n".join(",".join(f"{v:.6g}" for v in out) for out in answer["outputs"]))


@main.command()
@click.argument("job_id", type=int)
@click.option("--checkpoint", default="latest", show_default=True, type=_CheckpointRef(),
              help="Which checkpoint: latest, best (as predict picks it), or an epoch number.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="File or existing folder to write to [default: ./job-<id>-epoch-<epoch>.onnx].")
@client_command(json_flag=False)
def export(job_id: int, checkpoint: str | int, output: Path | None, client: Any) -> None:
    """Export a job's checkpoint to ONNX: raw feature rows in (input "input", float32),
    predict's outputs out (output "output"), the standardisation included. The server
    needs the onnx extra (pip install 'trainyard[onnx]')."""
    import os
    import secrets

    exported = _call(client.export_onnx_described, job_id, checkpoint)
    name = f"job-{job_id}-epoch-{exported.epoch}{'-best' if exported.best_params else ''}.onnx"
    target = Path(name) if output is None else output
    if target.is_dir():
        target = target / name
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.part"
    try:
        tmp.write_bytes(exported.data)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        _fail(f"cannot write {target}: {exc.strerror}", 1)
    params = ", early stopping's best parameters" if exported.best_params else ""
    click.echo(f"wrote {target} ({format_bytes(len(exported.data))}): job {job_id}, epoch {exported.epoch}{params}, "
               f"{exported.n_inputs} inputs -> {exported.n_outputs} outputs")


def _read_rows(file: Path) -> list[list[float]]:
    import csv
    import io

    name = "standard input" if str(file) == "-" else str(file)
    try:
        if str(file) == "-":
            rows = _csv_rows(csv.reader(io.StringIO(sys.stdin.read())), name)
        elif file.suffix.lower() == ".npy":
            import numpy as np

            array = np.load(file, allow_pickle=False)
            if array.ndim not in (1, 2) or not np.issubdtype(array.dtype, np.number):
                _fail(f"{name} must hold a 1-D or 2-D array of numbers, got {array.ndim}-D {array.dtype}")
            rows = np.atleast_2d(array).astype(float).tolist()
        elif file.suffix.lower() == ".json":
            rows = json.loads(file.read_text())
            if isinstance(rows, dict) and "inputs" in rows:
                rows = rows["inputs"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                _fail(f"{name} must hold a JSON list of rows, e.g. [[5.1, 3.5, 1.4, 0.2], ...]")
        else:
            with open(file, newline="") as fh:
                rows = _csv_rows(csv.reader(fh), name)
    except FileNotFoundError:
        _fail(f"{name} does not exist")
    except json.JSONDecodeError as exc:
        _fail(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    except (OSError, ValueError) as exc:
        _fail(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}")
    if not rows:
        _fail(f"{name} has no rows to predict")
    for i, row in enumerate(rows, start=1):
        bad = next((v for v in row if isinstance(v, float) and not math.isfinite(v)), None)
        if bad is not None:
            _fail(f"{name} row {i}: {bad} is not a finite number; the model needs a number for every feature")
    return rows


def _csv_rows(reader: Any, name: str) -> list[list[float]]:
    rows: list[list[float]] = []
    first = True
    for line_no, cells in enumerate(reader, start=1):
        if not any(c.strip() for c in cells):
            continue
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            if not first:  # only the first row may be a header
                bad = next(c for c in cells if not _is_number(c))
                _fail(f"{name} line {line_no}: {bad.strip()!r} is not a number")
        first = False
    return rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
