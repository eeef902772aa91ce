"""``trainyard metrics``: a job's metric series as a table, a terminal chart or a PNG."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from nncore.series import BY_NAME

from . import _fail, main
from .remote import _call, _table, _value, client_command

#: series the worker writes every step; every other series is written once per epoch
#: (``epoch_*`` the epoch's training means, ``val_*`` the validation metrics)
STEP_SERIES = ("loss", "lr", "grad_norm", "samples_per_s")
#: the order of the epoch table's columns; series not named here follow alphabetically
_EPOCH_ORDER = ("epoch_loss", "epoch_accuracy", "epoch_mae", "epoch_rmse", "epoch_r2", "val_loss", "val_accuracy",
                "val_mae", "val_rmse", "val_r2", "epoch_lr", "epoch_samples_per_s")
#: left out of a default chart: a learning rate or thousands of samples/s on the axis of
#: a loss would flatten it
_OFF_SCALE = ("epoch_lr", "epoch_samples_per_s")
_TAIL_ROWS = 10
_PNG_POINTS = 2000


def _is_epoch_series(name: str) -> bool:
    known = BY_NAME.get(name)
    return known.per == "epoch" if known is not None else name.startswith(("epoch_", "val_"))


def _series_order(names: set[str]) -> list[str]:
    known = [n for n in _EPOCH_ORDER if n in names]
    return known + sorted(names - set(known))


@main.command()
@click.argument("job_id", type=int)
@click.option("--name", "names", help="Comma-separated series, e.g. loss,grad_norm or epoch_loss,val_loss "
                                      "[default: every per-epoch series; for a chart, all but epoch_lr and "
                                      "epoch_samples_per_s, whose scales would flatten the rest].")
@click.option("--plot", is_flag=True, help="Draw the series as a chart in the terminal.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw the chart into this PNG file instead (needs: pip install 'trainyard[plot]').")
@click.option("--max-points", type=click.IntRange(4, 10_000),
              help="Downsample each series to this many points, keeping its first and last points and each "
                   "stretch's lowest and highest [default: all points; for a chart, what its width shows].")
@client_command()
def metrics(job_id: int, names: str | None, plot: bool, out: Path | None, max_points: int | None,
            client: Any, as_json: bool) -> None:
    """Show a job's metrics: a table by epoch, step series summarised, or a chart.

    Per-step series: loss, lr, grad_norm, samples_per_s. Per-epoch series: epoch_loss,
    epoch_accuracy (epoch_mae, epoch_rmse, epoch_r2 for regression), val_loss,
    val_accuracy, ..., epoch_lr, epoch_samples_per_s.
    """
    chosen = _metric_names(client, job_id, names, chart=plot or out is not None)
    width, height = _plot_size()
    if max_points is None and (plot or out) and not as_json:
        # a braille column holds two x positions; the server keeps each stretch's min and max
        max_points = _PNG_POINTS if out else max(4, 4 * width)
    points = _call(client.metrics, job_id, chosen, max_points=max_points)
    if as_json:
        click.echo(json.dumps(points))
        if out is None:
            return
    present = {p["name"] for p in points}
    missing = [n for n in chosen if n not in present]
    if len(missing) == len(chosen):
        _fail(f"job {job_id} has no points of {', '.join(missing)}{_known_series(client, job_id)}", 1)
    if out is not None:
        _plot_png(points, chosen, out, f"job {job_id}")
        click.echo(f"wrote {out}", err=as_json)
    elif plot:
        from ..termplot import line_plot

        series = {n: _xy(points, n) for n in chosen if n in present}
        click.echo(line_plot(series, width=width, height=height, color=sys.stdout.isatty()))
    else:
        epoch_names = [n for n in chosen if n in present and _is_epoch_series(n)]
        step_names = [n for n in chosen if n in present and not _is_epoch_series(n)]
        if epoch_names:
            _epoch_table(points, epoch_names)
        if step_names:
            if epoch_names:
                click.echo()
            _step_summary(points, step_names, downsampled=max_points is not None)
    if missing:
        click.echo(f"note: no points yet of {', '.join(missing)}", err=True)


def _metric_names(client: Any, job_id: int, names: str | None, chart: bool) -> list[str]:
    if names:
        chosen = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
        if not chosen:
            _fail("--name needs at least one series name, e.g. --name loss,val_loss")
        return chosen
    # the smallest downsampling lists every series in one short answer
    found = {p["name"] for p in _call(client.metrics, job_id, max_points=4)}
    chosen = _series_order({n for n in found if _is_epoch_series(n)})
    if chart:
        chosen = [n for n in chosen if n not in _OFF_SCALE] or chosen
    if not chosen:
        status = _call(client.job, job_id)["status"]
        if found:
            _fail(f"job {job_id} ({status}) has no per-epoch metrics yet; its series: {', '.join(sorted(found))} "
                  "(pick some with --name)", 1)
        _fail(f"job {job_id} ({status}) has no metrics yet", 1)
    return chosen


def _known_series(client: Any, job_id: int) -> str:
    found = sorted({p["name"] for p in _call(client.metrics, job_id, max_points=4)})
    return f"; its series: {', '.join(found)}" if found else "; it has no metrics yet"


def _xy(points: list[dict[str, Any]], name: str) -> tuple[list[float], list[float]]:
    """A series to draw: a bucket of many points as its min and its max (its spikes
    stay visible), a raw point as itself."""
    xs: list[float] = []
    ys: list[float] = []
    for p in points:
        if p["name"] != name:
            continue
        if (p.get("count") or 1) > 1:
            xs += [p["step"], (p["step"] + p["last_step"]) / 2]
            ys += [p["min"], p["max"]]
        else:
            xs.append(p["step"])
            ys.append(p["value"])
    return xs, ys








def _epoch_table(points: list[dict[str, Any]], names: list[str]) -> None:
    by_epoch: dict[int, dict[str, Any]] = {}
    for p in points:
        if p["name"] in names:
            # a resumed job may repeat an epoch; its later points are the ones that count
            row = by_epoch.setdefault(p["epoch"], {"step": p["step"]})
            row["step"], row[p["name"]] = p["step"], p["value"]
    rows = [[str(e), str(r["step"]), *(_value(r.get(n)) for n in names)] for e, r in sorted(by_epoch.items())]
    _table(["epoch", "step", *names], rows)


def _of(point: dict[str, Any], field: str) -> float:
    """A bucket's ``field`` (min, max, first, last); a raw point's value."""
    value = point.get(field)
    return point["value"] if value is None else value


def _step_summary(points: list[dict[str, Any]], names: list[str], downsampled: bool) -> None:
    summary = []
    for name in names:
        mine = [p for p in points if p["name"] == name]
        low = min(mine, key=lambda p: _of(p, "min"))
        high = max(mine, key=lambda p: _of(p, "max"))
        count = sum(p.get("count") or 1 for p in mine)
        summary.append([name, f"{count:,}", f"{mine[0]['step']}-{mine[-1].get('last_step') or mine[-1]['step']}",
                        _value(_of(mine[0], "first")), _value(_of(mine[-1], "last")),
                        f"{_value(_of(low, 'min'))} @{low['step']}", f"{_value(_of(high, 'max'))} @{high['step']}"])
    _table(["series", "points" + (" (downsampled)" if downsampled else ""), "steps", "first", "last", "min", "max"],
           summary, left=(0,))
    by_step: dict[int, dict[str, Any]] = {}
    for p in points:
        if p["name"] in names:
            by_step.setdefault(p["step"], {"epoch": p["epoch"]})[p["name"]] = p["value"]
    tail = sorted(by_step.items())[-_TAIL_ROWS:]
    click.echo(f"\nlast {len(tail)} steps:")
    _table(["step", "epoch", *names], [[str(s), str(r["epoch"]), *(_value(r.get(n)) for n in names)]
                                       for s, r in tail])


def _plot_size() -> tuple[int, int]:
    import shutil

    # off a terminal (a pipe, CI) this falls back to COLUMNS/LINES or 80x24
    cols, lines = shutil.get_terminal_size((80, 24))
    return max(40, min(cols, 200)), max(8, min(lines - 8, 20))


def _plot_png(points: list[dict[str, Any]], names: list[str], out: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        _fail("install the plot extra: pip install 'trainyard[plot]'", 1)
    matplotlib.use("Agg")  # no display needed, and none is opened
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    try:
        for name in names:
            steps, values = _xy(points, name)
            if steps:
                ax.plot(steps, values, label=name, marker="o" if _is_epoch_series(name) and len(steps) <= 50 else None,
                        markersize=3, linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        try:
            fig.savefig(out, format=out.suffix[1:].lower() or "png")
        except ValueError as exc:  # a suffix matplotlib cannot write
            _fail(f"cannot write {out}: {exc}")
        except OSError as exc:
            _fail(f"cannot write {out}: {exc.strerror}", 1)
    finally:
        plt.close(fig)
