"""Service configuration, from the environment (CLI flags override it).

TRAINYARD_DATABASE_URL   SQLAlchemy URL; default a SQLite file under ./var/
TRAINYARD_BROKER_URL     Celery broker; default the embedded SQLite broker under ./var/
TRAINYARD_ARTIFACT_DIR   checkpoints and uploaded datasets; default ./var/artifacts
TRAINYARD_MAX_UPLOAD_BYTES  largest request body (dataset uploads included); default 64 MiB
TRAINYARD_MAX_DATASET_CELLS  values an uploaded dataset may hold (rows x columns); default 33554432 (2**25)
TRAINYARD_LEASE_S        how long a worker's hold on a job lasts unrenewed, seconds; default 30
TRAINYARD_STREAM_MAX_S   how long one event stream (GET /jobs/<id>/stream) stays open, seconds; default 120
TRAINYARD_MAX_STREAMS    event streams one API process serves at once (0: none, clients poll); default 4
TRAINYARD_JOB_MEMORY_BYTES  estimated peak training memory one job may need (all its ranks); default 8 GiB
TRAINYARD_JOB_CHECKPOINT_BYTES  checkpoint bytes one job may keep on disk at once; default 4 GiB
TRAINYARD_USER_QUOTA_BYTES  artifacts (datasets + checkpoints) one user may keep; 0: no quota; default 50 GiB
TRAINYARD_MAX_WORLD_SIZE  most ranks one job may ask for; default 64
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nncore.datasets import FileLimits
from nncore.spec import DEFAULT_LIMITS


def _var() -> Path:
    return Path(os.environ.get("TRAINYARD_VAR_DIR", "var")).resolve()


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    artifact_dir: Path
    #: largest request body (dataset uploads included), bytes
    max_upload_bytes: int = 64 * 1024 * 1024
    max_json_bytes: int = 1024 * 1024
    #: values an uploaded dataset may hold (CSV rows x columns, NPZ rows x features), so a
    #: small file cannot inflate into gigabytes; rows and features are bounded by
    #: ``spec_limits`` ("max_samples", "max_units")
    max_dataset_cells: int = 2**25
    #: rows accepted by one predict call
    max_predict_rows: int = 10_000
    #: limits on job specs, on top of nncore's defaults
    spec_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    #: how long the API waits for the broker when enqueueing, seconds
    broker_timeout_s: float = 2.0
    #: a running attempt's lease lasts this long unrenewed (renewed every third of it); a
    #: worker that dies or freezes loses its job to another this long after its last renewal
    lease_s: float = 30.0
    #: raw metric points kept for a job whose spec does not say: "all", "none" (rollups
    #: only) or a number of the latest steps (``metrics.raw_steps`` in a spec)
    metrics_raw_steps: str | int = "all"
    #: an event stream closes itself after this long, seconds (its client reconnects with
    #: Last-Event-ID), so a forgotten browser tab does not hold a server thread forever
    stream_max_s: float = 120.0
    #: event streams one API process serves at once; each holds one of its threads while
    #: open (past it: 503 with Retry-After, and clients poll instead)
    max_streams: int = 4
    #: a job is refused at submit when its estimated peak training memory (``nncore.budget``,
    #: every rank's arrays) is above this, or its checkpoints on disk could be
    job_memory_bytes: int = 8 << 30
    job_checkpoint_bytes: int = 4 << 30
    #: datasets plus checkpoints one user may keep (0: unlimited); what unfinished jobs
    #: may still write counts against it from their submission
    user_quota_bytes: int = 50 << 30

    @property
    def dataset_limits(self) -> FileLimits:
        """The bounds on a dataset file, for the upload that checks it and the worker that
        reads it: a job spec's rows and inputs, and ``max_dataset_cells`` values."""
        return FileLimits(max_rows=self.spec_limits["max_samples"], max_features=self.spec_limits["max_units"],
                          max_cells=self.max_dataset_cells)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        var = _var()
        env = os.environ
        optional: dict[str, Any] = {}
        if limit := env.get("TRAINYARD_MAX_UPLOAD_BYTES"):
            optional["max_upload_bytes"] = _positive_int("TRAINYARD_MAX_UPLOAD_BYTES", limit)
        if cells := env.get("TRAINYARD_MAX_DATASET_CELLS"):
            optional["max_dataset_cells"] = _whole("TRAINYARD_MAX_DATASET_CELLS", cells, 1,
                                                   "a positive whole number of values")
        if lease := env.get("TRAINYARD_LEASE_S"):
            optional["lease_s"] = _positive_float("TRAINYARD_LEASE_S", lease)
        if raw := env.get("TRAINYARD_METRICS_RAW_STEPS"):
            optional["metrics_raw_steps"] = parse_raw_steps("TRAINYARD_METRICS_RAW_STEPS", raw)
        if stream_s := env.get("TRAINYARD_STREAM_MAX_S"):
            optional["stream_max_s"] = _positive_float("TRAINYARD_STREAM_MAX_S", stream_s)
        if streams := env.get("TRAINYARD_MAX_STREAMS"):
            optional["max_streams"] = _count("TRAINYARD_MAX_STREAMS", streams)
        for name, key in (("TRAINYARD_JOB_MEMORY_BYTES", "job_memory_bytes"),
                          ("TRAINYARD_JOB_CHECKPOINT_BYTES", "job_checkpoint_bytes")):
            if text := env.get(name):
                optional[key] = _positive_int(name, text)
        if quota := env.get("TRAINYARD_USER_QUOTA_BYTES"):
            optional["user_quota_bytes"] = _whole("TRAINYARD_USER_QUOTA_BYTES", quota, 0, "a whole number of bytes "
                                                                                       ">= 0 (0: no quota)")
        if world := env.get("TRAINYARD_MAX_WORLD_SIZE"):
            optional["spec_limits"] = {**DEFAULT_LIMITS,
                                       "max_world_size": _whole("TRAINYARD_MAX_WORLD_SIZE", world, 1,
                                                                "a whole number of ranks >= 1")}
        settings = cls(
            database_url=env.get("TRAINYARD_DATABASE_URL") or f"sqlite:///{var / 'trainyard.sqlite'}",
            broker_url=env.get("TRAINYARD_BROKER_URL") or f"sqla+sqlite:///{var / 'broker.sqlite'}",
            artifact_dir=Path(env.get("TRAINYARD_ARTIFACT_DIR") or var / "artifacts").resolve(),
            **optional,
        )
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if "artifact_dir" in overrides:
            overrides["artifact_dir"] = Path(overrides["artifact_dir"]).resolve()
        return replace(settings, **overrides)


def parse_raw_steps(name: str, text: str) -> str | int:
    if text in ("all", "none"):
        return text
    return _whole(name, text, 1, "'all', 'none' or a positive number of steps")


def raw_steps_for(spec: dict[str, Any], settings: Settings) -> int | None:
    """The raw points a job keeps, as ``SeriesWriter`` takes it: None all, 0 none, N
    about the last N steps. The spec's ``metrics.raw_steps`` wins over the server's."""
    value = (spec.get("metrics") or {}).get("raw_steps", settings.metrics_raw_steps)
    return None if value == "all" else 0 if value == "none" else int(value)


def _positive_float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:
        raise ValueError(f"{name} must be a number of seconds between 0 and 86400, got {text!r}")
    return value


def _whole(name: str, text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise ValueError(f"{name} must be {what}, got {text!r}")
    return value


def _positive_int(name: str, text: str) -> int:
    return _whole(name, text, 1, "a positive whole number of bytes")


def _count(name: str, text: str) -> int:
    return _whole(name, text, 0, "a whole number >= 0")
