"""The ``trainyard`` command line.

``trainyard train SPEC`` trains a job spec on this machine with nncore alone (no
server, no database): the offline mode of the same spec the service runs.
"""
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

from nncore.callbacks import Callback, StepLog
from nncore.job import Job
from nncore.spec import SpecError, load_spec, validate_spec


class _Progress(Callback):
    """A one-line progress bar per epoch on stderr (TTY only) and a metrics line per epoch."""

    def __init__(self, steps_per_epoch: int, epochs: int, as_json: bool, stream_is_tty: bool) -> None:
        self.steps_per_epoch, self.epochs = steps_per_epoch, epochs
        self.as_json, self.tty = as_json, stream_is_tty
        self._last_draw = 0.0
        self._t0 = time.monotonic()

    def on_step(self, trainer, log: StepLog) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.1 and log.batch + 1 < self.steps_per_epoch:
            return
        self._last_draw = now
        done = (log.batch + 1) / self.steps_per_epoch
        width = 30
        bar = "#" * int(done * width) + "-" * (width - int(done * width))
        elapsed = now - self._t0
        total_done = (log.epoch + done) / self.epochs
        eta = elapsed / total_done - elapsed if total_done > 0 else 0.0
        sys.stderr.write(f"\repoch {log.epoch + 1}/{self.epochs} [{bar}] loss {log.loss:.4f} "
                         f"lr {log.lr:.3g} eta {_duration(eta)}   ")
        sys.stderr.flush()

    def on_epoch(self, trainer, logs: dict[str, float]) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        if self.as_json:
            click.echo(json.dumps({"event": "epoch", **{k: _round(v) for k, v in logs.items()}}))
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
        overrides = {k: v for k, v in {"epochs": epochs, "seed": seed}.items() if v is not None}
        if world_size is not None:
            overrides["distributed"] = {"world_size": world_size}
        if overrides:
            spec = validate_spec({**spec, **overrides})
    except SpecError as exc:
        _fail(str(exc))
    if spec["distributed"]["world_size"] > 1:
        _fail("data-parallel training (world_size > 1) is not available yet in this version; "
              "set distributed.world_size to 1")
    if out_dir is None:
        stem = spec.get("name") or spec_file.stem
        out_dir = Path("runs") / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        job = Job(spec, out_dir=out_dir)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    if resume_from is not None:
        try:
            job.resume(resume_from)
        except (ValueError, KeyError) as exc:
            _fail(f"cannot resume from {resume_from}: {exc}")
    d = job.data
    bs = spec["batch_size"] or d.train.n
    steps = max(1, -(-d.train.n // bs) if not spec["data"]["drop_last"] else d.train.n // bs)
    progress = _Progress(steps, spec["epochs"], as_json, sys.stderr.isatty() and not as_json)
    job.trainer.callbacks.insert(0, progress)
    if not as_json:
        click.echo(f"training {job.net!r} on {d.name} ({d.train.n} train / "
                   f"{d.val.n if d.val else 0} validation samples, {d.task}) for {spec['epochs']} epochs")
        click.echo(f"checkpoints -> {out_dir}")
    started = time.monotonic()
    result = job.run()
    wall = time.monotonic() - started
    summary: dict[str, Any] = {
        "event": "summary", "status": result.status, "reason": result.reason, "epochs": result.epochs,
        "steps": result.steps, "seconds": round(wall, 3),
        "train": {k: _round(v) for k, v in result.final.items() if not k.startswith("val_")
                  and k not in ("epoch", "step", "time", "samples_per_s", "lr")},
        "validation": {k[4:]: _round(v) for k, v in result.final.items() if k.startswith("val_")},
        "checkpoint": str(job.checkpointer.latest) if job.checkpointer and job.checkpointer.latest else None,
    }
    es = job.trainer.early_stopping
    if es is not None and es.best_epoch >= 0:
        summary["best_epoch"] = es.best_epoch
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{result.status}: {result.reason} in {wall:.1f} s")
        if summary["checkpoint"]:
            click.echo(f"last checkpoint: {summary['checkpoint']}")
    if result.status == "diverged":
        sys.exit(1)


if __name__ == "__main__":
    main()
