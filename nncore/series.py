"""The catalog of metric series: what each one is, once, for everything that shows or
judges them (early stopping and the best checkpoint here; the store, the API's
``/meta``, the CLI and the dashboard in the service). Adding a series is one entry.

``key`` is the trainer's name for an epoch figure (``trainer.history`` and the names
early stopping and retention monitor); ``name`` is the stored series. Step series and
epoch series never share a name: ``loss`` is a batch's loss, ``epoch_loss`` the
epoch's mean, ``val_loss`` the validation loss.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Series:
    name: str
    per: Literal["step", "epoch"]
    #: which way is better; None for figures that are neither (a learning rate)
    better: Literal["min", "max"] | None
    #: series of a group share a chart
    group: str
    label: str
    #: the trainer's epoch-log name (epoch series only)
    key: str | None = None
    #: a loss-like series is drawn on a log scale when asked
    log_scale: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _epoch(key: str, better: Literal["min", "max"] | None, group: str, label: str, log_scale: bool = False
           ) -> list[Series]:
    """The training-set and validation-set series of one epoch figure."""
    out = [Series(f"epoch_{key}", "epoch", better, group, f"{label} (train, epoch)", key, log_scale)]
    if key not in ("lr", "samples_per_s"):
        out.append(Series(f"val_{key}", "epoch", better, group, f"{label} (validation)", f"val_{key}", log_scale))
    return out


CATALOG: tuple[Series, ...] = (
    Series("loss", "step", "min", "loss", "loss (batch)", log_scale=True),
    Series("lr", "step", None, "lr", "learning rate", log_scale=True),
    Series("grad_norm", "step", None, "grad_norm", "gradient norm", log_scale=True),
    Series("samples_per_s", "step", "max", "throughput", "samples/s"),
    *_epoch("loss", "min", "loss", "loss", log_scale=True),
    *_epoch("accuracy", "max", "accuracy", "accuracy"),
    *_epoch("mae", "min", "error", "MAE", log_scale=True),
    *_epoch("rmse", "min", "error", "RMSE", log_scale=True),
    *_epoch("r2", "max", "r2", "R²"),
    *_epoch("lr", None, "lr", "learning rate", log_scale=True),
    *_epoch("samples_per_s", "max", "throughput", "samples/s"),
)

BY_NAME: dict[str, Series] = {s.name: s for s in CATALOG}
BY_KEY: dict[str, Series] = {s.key: s for s in CATALOG if s.key is not None}
#: the epoch-log figures that are not series (their position, not a measurement)
EPOCH_POSITION = ("epoch", "step", "time")


def series_name(key: str) -> str:
    """The stored series of the trainer's epoch figure ``key``."""
    known = BY_KEY.get(key)
    if known is not None:
        return known.name
    return key if key.startswith("val_") else f"epoch_{key}"


def better(key: str) -> Literal["min", "max"]:
    """Which way ``key`` (an epoch figure, as early stopping and retention name it)
    improves: the catalog's word, lower for anything it does not list."""
    known = BY_KEY.get(key)
    return known.better if known is not None and known.better is not None else "min"


def monitorable() -> list[str]:
    """Epoch figures with a direction: what early stopping and retention may watch."""
    return [s.key for s in CATALOG if s.key is not None and s.better is not None]
