"""``trainyard train``: a job spec trained on this machine, without the service."""
from __future__ import annotations

import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from threadpoolctl import threadpool_limits

from nncore.callbacks import EventEmitter
from nncore.job import Job, summarize
from nncore.spec import SpecError, load_spec, validate_spec
from worker.launch import LaunchError, launch

from . import _duration, _fail, main


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


def _round(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) and math.isfinite(v) else v


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
