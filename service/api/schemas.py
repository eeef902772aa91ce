"""Request and response models (Pydantic), which APIFlask validates and documents."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Generic, Literal, TypeVar

import numpy as np
from apiflask.fields import UploadFile
from flask import url_for
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from nncore.spec import DATA_KEYS, DEFAULT_LIMITS, LAYER_FIELDS, MODEL_KEYS, TOP_LEVEL

from ..store.errors import bad_text
from ..store.metrics import MAX_METRICS_PAGE, MAX_POINTS, MIN_POINTS
from ..store.models import ApiToken, Checkpoint, User
from ..store.predict import Prediction
from ..store.results import MAX_EVENTS_PAGE, public_result
from ..store.status import JobStatus
from ..store.users import MAX_LIFETIME, MAX_NAME, expiry_problem
from ..store.workers import WorkerView

# ids and steps are BIGINT columns; larger numbers are refused before they reach SQL
MAX_BIGINT = 2**63 - 1

T = TypeVar("T")


def _json_int(value: Any) -> Any:
    if isinstance(value, (str, bool)):
        raise ValueError(f"must be an integer, got {value!r}")
    return value


# an integer as JSON Schema means it: 3 and 3.0, but not "3" or true (which pydantic's lax mode takes)
JsonInt = Annotated[int, BeforeValidator(_json_int)]


def _closed(keys: tuple[str, ...], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {k: properties.get(k, {}) for k in keys}, "additionalProperties": False}


# The outline of a job spec: its objects and their fields. Deliberately no looser nor
# stricter than the spec validator on what it shows; the validator checks the rest
# (names, numbers, cross-field rules) and answers 422 with every problem and its path.
# a layer of any type: "type" (default dense) and every type's fields; which fields go
# with which type is the validator's to say
_LAYER_KEYS = ("type", *sorted({f for fields in LAYER_FIELDS.values() for f in fields}))
SPEC_SCHEMA: dict[str, Any] = {
    **_closed(TOP_LEVEL,
              name={"type": "string", "maxLength": 200},
              model=_closed(MODEL_KEYS, layers={"type": "array", "minItems": 1, "items": _closed(_LAYER_KEYS)}),
              data=_closed(DATA_KEYS),
              distributed=_closed(("world_size",)),
              retention=_closed(("keep_last", "keep_best", "best_metric")),
              early_stopping={"anyOf": [_closed(("monitor", "patience", "min_delta", "mode", "restore_best")),
                                        {"type": "null"}]},
              metrics=_closed(("every_steps", "raw_steps"))),
    "required": ["model", "loss", "data"],
}


def iso(t: datetime | None) -> str | None:
    """A response's timestamp: ISO 8601 in UTC with a trailing Z (a naive time is taken as UTC)."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _iso_time(value: Any) -> Any:
    if isinstance(value, float):  # seconds since the epoch (metric points)
        value = datetime.fromtimestamp(value, UTC)
    return iso(value) if isinstance(value, datetime) else value


def _user_name(value: Any) -> Any:
    return value.name if isinstance(value, User) else value


def _tolist(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


# what a response shows of a datetime column, documented as the string it is
IsoTime = Annotated[str, BeforeValidator(_iso_time)]


def _no_nul(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL (nor an unpaired surrogate): refused here, as a 422
    # naming the field, not a 500 there
    if isinstance(value, str) and (why := bad_text(value)):
        raise ValueError(why)
    return value


#: text a client sends that is stored or looked up
Text = Annotated[str, BeforeValidator(_no_nul)]


#: a comma-separated list of series names (a query's ``name``)
SeriesNames = Annotated[Annotated[str, Field(json_schema_extra={"pattern": r"^[^\x00]*$"})] | None,
                        BeforeValidator(_no_nul)]
# what a response shows of a user (a job's or dataset's owner): the name
UserName = Annotated[str, BeforeValidator(_user_name)]


class _With:
    """The attributes of ``sources`` (the first that has one wins), with ``extra`` added
    or replaced: what a response model reads when a field is not an attribute of the row."""

    def __init__(self, *sources: Any, **extra: Any) -> None:
        self._sources = sources
        self.__dict__.update(extra)

    def __getattr__(self, name: str) -> Any:
        for source in self._sources:
            try:
                return getattr(source, name)
            except AttributeError:
                continue
        raise AttributeError(name)


# Responses are built with ``Model.model_validate(row)`` from the ORM rows (or store
# objects) they show: every field is read from the attribute of its name, and the few
# that are not such an attribute are filled in by the model's validators. (No docstrings
# on these models: pydantic would put them in the OpenAPI document.)
class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _Items(_Out, Generic[T]):
    items: list[T]


class _Page(_Items[T], Generic[T]):
    next_page_token: str | None


class _JobRef(_Out):
    id: int
    name: str | None
    owner: UserName


class _CheckpointRef(_Out):
    epoch: int
    step: int
    sha256: str


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] = Field(description="The job spec (see the README): model, loss, optimizer, data, ...",
                                 json_schema_extra=SPEC_SCHEMA)
    priority: JsonInt = Field(0, ge=-100, le=100, description="Higher runs first.")


_STATUS = "(" + "|".join(s.value for s in JobStatus) + ")"
_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
                      r"([Zz]|[+-][0-9]{2}:[0-9]{2})")


def _rfc3339(value: Any) -> datetime:
    """An RFC 3339 date-time (what the document's ``format: date-time`` means) in UTC.
    Stricter than pydantic, which also takes Unix timestamps and dates; more lenient in
    what RFC 3339 allows and Python does not: a leap second (:60) counts as :59.999999,
    and times beyond the calendar (year 0, 9999-12-31T23:59-01:00) clamp to its ends."""
    m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"must be an RFC 3339 date-time with a time zone, e.g. 2026-11-26T08:00:00Z, got {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7) or "", m.group(8).upper()
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    if second == 60:
        second, micro = 59, 999_999
    offset = timedelta(0) if zone == "Z" else \
        (1 if zone[0] == "+" else -1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    if year == 0:
        return datetime.min.replace(tzinfo=UTC)
    try:
        local = datetime(year, month, day, hour, minute, second, micro)
        tz = timezone(offset)
    except ValueError as exc:
        raise ValueError(f"is not a valid date-time: {exc}, got {value!r}") from None
    try:
        return local.replace(tzinfo=tz).astimezone(UTC)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if year > 1 else datetime.min.replace(tzinfo=UTC)


UTCTime = Annotated[datetime, PlainValidator(_rfc3339, json_schema_input_type=datetime)]


class JobsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(None, max_length=64, pattern=f"^ *{_STATUS} *(, *{_STATUS} *)*$",
                               description="Comma-separated: " + ",".join(s.value for s in JobStatus))
    created_after: UTCTime | None = Field(None, description="Only jobs created at or after this time.")
    created_before: UTCTime | None = Field(None, description="Only jobs created before this time.")
    limit: int = Field(50, ge=1, le=200)
    # an opaque cursor (base64url); which strings this server issued is more than a schema can say
    page_token: str | None = Field(None, max_length=64, pattern="^[A-Za-z0-9_-]+$",
                                   description="next_page_token of the previous page, unchanged.")


class JobOut(_JobRef):
    status: JobStatus
    priority: int
    attempts: int
    cancel_requested: bool
    progress: dict[str, Any] | None
    error: str | None
    result: Annotated[dict[str, Any] | None, AfterValidator(public_result)] = Field(
        description="The training summary once the job ended; its checkpoint is the last one's epoch.")
    dataset_id: int | None
    spec: dict[str, Any]
    created_at: IsoTime
    started_at: IsoTime | None
    finished_at: IsoTime | None
    updated_at: IsoTime


class JobList(_Page[JobOut]):
    pass


class DatasetUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: UploadFile = Field(description="A .csv file (numbers, optionally a header row and a text label column) "
                                         "or a .npz archive with arrays X and y (no object arrays).")
    name: Text | None = Field(None, max_length=200, description="Default: the file name without its extension.")
    target: Text | None = Field(None, max_length=200,
                               description="CSV only: the target column, by header name or by index (digits, "
                                           "negative counts from the end). Default: the last column.")


class DatasetsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=200)
    page_token: str | None = Field(None, max_length=200)


class DatasetOut(_Out):
    id: int
    name: str
    owner: UserName
    filename: str
    format: Literal["csv", "npz"]
    size_bytes: int
    sha256: str
    n_samples: int
    n_features: int
    task: Literal["binary", "multiclass", "regression"]
    n_classes: int | None
    target: str | None
    created_at: IsoTime


class DatasetList(_Page[DatasetOut]):
    pass


class MetricsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SeriesNames = Field(None, max_length=1000, description="Comma-separated series names; default all.")
    after_step: int | None = Field(None, ge=0, le=MAX_BIGINT, description="Only points with a larger step.")
    before_step: int | None = Field(None, ge=0, le=MAX_BIGINT, description="Only points with a smaller step.")
    limit: int = Field(1000, ge=1, le=MAX_METRICS_PAGE, description="Points per page (ignored with max_points).")
    page_token: str | None = Field(None, max_length=500)
    max_points: int | None = Field(None, ge=MIN_POINTS, le=MAX_POINTS, description=(
        "Each series in at most this many buckets of equal, aligned step ranges over the range, in one "
        "response: each bucket's count, mean (value), min, max, first and last, so no spike is lost. Served "
        "from rollups kept at write time: the cost follows the points returned, not the job's length."))


class MetricsExportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SeriesNames = Field(None, max_length=1000, description="Comma-separated series names; default all.")


class MetricPoint(_Out):
    """A raw point, or with ``max_points`` a bucket of ``count`` points from ``step`` to
    ``last_step`` whose ``value`` is their mean."""

    name: str
    step: int
    epoch: int
    value: float
    time: IsoTime
    last_step: int | None = None
    count: int | None = None
    min: float | None = None
    max: float | None = None
    first: float | None = None
    last: float | None = None
    bucket_steps: int | None = Field(None, description="The step width of this series' buckets in the response.")


class MetricsPage(_Page[MetricPoint]):
    pass


class CheckpointOut(_CheckpointRef):
    size_bytes: int
    metrics: dict[str, Any] | None
    is_best: bool
    created_at: IsoTime
    download_url: str

    @model_validator(mode="before")
    @classmethod
    def _with_download_url(cls, data: Any) -> Any:
        if isinstance(data, Checkpoint):  # its URL under the route that serves it (needs a request context)
            return _With(data, download_url=url_for("results.download_checkpoint", job_id=data.job_id,
                                                    epoch=data.epoch))
        return data


class CheckpointList(_Items[CheckpointOut]):
    pass


class OnnxExportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    best_params: bool = Field(False, description="Export early stopping's best parameters kept in this checkpoint "
                                                 "(what predict's checkpoint \"best\" uses when no checkpoint is "
                                                 "marked best); without them, the checkpoint's own.")


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_id: int | None = Field(None, ge=0, le=MAX_BIGINT, description="Only events after this one.")
    limit: int = Field(100, ge=1, le=MAX_EVENTS_PAGE)


class EventOut(_Out):
    id: int
    time: IsoTime
    kind: str
    message: str


class EventList(_Items[EventOut]):
    next_after_id: int | None


def _checkpoint_ref(value: Any) -> str | int:
    if type(value) is float and value.is_integer():  # 3.0 is an integer to JSON Schema
        value = int(value)
    if value in ("latest", "best") or (type(value) is int and value >= 0):
        return value
    raise ValueError(f"must be 'latest', 'best' or an epoch number, got {value!r}")


# one message for the field instead of one per member of the union
CheckpointRef = Annotated[str | int, PlainValidator(
    _checkpoint_ref, json_schema_input_type=Literal["latest", "best"] | Annotated[int, Field(ge=0)])]


class PredictIn(BaseModel):
    # strict: true, "1" and 1.5-as-text are not numbers here
    model_config = ConfigDict(extra="forbid", strict=True)

    inputs: list[list[float]] = Field(min_length=1, description=(
        "Rows of raw (unstandardised) features, each as long as the model's input; at most the server's "
        "max_predict_rows rows (10000 by default)."))
    checkpoint: CheckpointRef = Field("latest", description=(
        "'latest', 'best' (the checkpoint marked best, else the latest with early stopping's best parameters), "
        "or an epoch number."))


class PredictCheckpoint(_CheckpointRef):
    best_params: bool = Field(description="Whether early stopping's best parameters were used.")


class PredictOut(_Out):
    outputs: Annotated[list[list[float]], BeforeValidator(_tolist)]
    labels: Annotated[list[int] | None, BeforeValidator(_tolist)] = Field(
        description="Predicted classes (0..k-1) for classification, else null.")
    checkpoint: PredictCheckpoint

    @model_validator(mode="before")
    @classmethod
    def _from_prediction(cls, data: Any) -> Any:
        if isinstance(data, Prediction):  # best_params is the prediction's, shown with its checkpoint
            return _With(data, checkpoint=_With(data.checkpoint, best_params=data.best_params))
        return data


class WorkerJob(_JobRef):
    progress: dict[str, Any] | None


class WorkerOut(_Out):
    name: str = Field(description="host:pid of the worker process; its jobs' leases are named <name>/<pid>.")
    state: Literal["alive", "lost", "stopped"] = Field(
        description="alive: reported in the last few seconds; lost: stopped reporting without saying goodbye "
                    "(crashed, or its machine did); stopped: shut down cleanly.")
    hostname: str
    pid: int
    concurrency: int = Field(description="Jobs it trains at once.")
    busy: int = Field(description="Jobs it is training now (all owners).")
    queues: str
    broker: str
    version: str
    started_at: IsoTime
    last_seen_at: IsoTime
    stopped_at: IsoTime | None
    jobs: list[WorkerJob] = Field(description="The running jobs you may see (all of them for an admin).")

    @model_validator(mode="before")
    @classmethod
    def _from_view(cls, data: Any) -> Any:
        if isinstance(data, WorkerView):  # the registry's row, with what the view adds (state, busy, jobs)
            return _With(data, data.worker)
        return data


class WorkerList(_Items[WorkerOut]):
    pass


class Quota(_Out):
    limit_bytes: int | None = Field(description="The user's quota on artifacts; null: none")
    used_bytes: int = Field(description="Datasets plus checkpoints stored now")
    datasets_bytes: int
    checkpoints_bytes: int
    reserved_bytes: int = Field(description="What the user's unfinished jobs may still write")
    free_bytes: int | None = Field(description="What is left for new datasets and jobs; null: no quota")


class Me(_Out):
    name: str
    is_admin: bool
    quota: Quota


class Health(BaseModel):
    status: str
    database: str
    broker: str


class StatusInfo(_Out):
    name: JobStatus
    finished: bool = Field(description="Whether the state is final: nothing changes such a job again.")
    description: str

    @model_validator(mode="before")
    @classmethod
    def _from_status(cls, data: Any) -> Any:
        if isinstance(data, JobStatus):  # the member itself, not its attribute .name ("QUEUED")
            return _With(data, name=data)
        return data


class _ServerLimits(BaseModel):
    max_upload_bytes: int = Field(description="The largest request body (dataset uploads included), bytes.")
    max_predict_rows: int = Field(description="Rows one predict call accepts.")
    max_dataset_cells: int = Field(description="Values (rows x columns) one uploaded dataset may hold.")
    job_memory_bytes: int = Field(description="A job's estimated peak training memory, all ranks, bytes.")
    job_checkpoint_bytes: int = Field(description="The checkpoint bytes one job may keep on disk at once.")
    user_quota_bytes: int | None = Field(description="Datasets plus checkpoints one user may keep; null: no quota.")


# one field per limit the spec validator enforces, so a limit added there shows here
Limits = create_model(
    "Limits", __base__=_ServerLimits,
    **{name: (int, Field(description="A job spec's limit (see the spec validator).")) for name in DEFAULT_LIMITS})


class SeriesEntry(BaseModel):
    name: str
    per: str = Field(description="step or epoch")
    better: str | None = Field(description="min or max; null for figures that are neither")
    group: str = Field(description="series of a group share a chart")
    label: str
    key: str | None = Field(description="the epoch figure's name, as early_stopping.monitor takes it")
    log_scale: bool


class Meta(BaseModel):
    version: str = Field(description="The server's trainyard version.")
    job_statuses: list[StatusInfo] = Field(description="Every job status, in the order of a job's life.")
    limits: Limits  # type: ignore[valid-type]
    series: list[SeriesEntry] = Field(description="The metric series a job can have (nncore.series).")


# a user's or token's name as the store keeps it. _no_nul after the length checks (before
# them pydantic's length messages go generic); the pattern only documents what it refuses,
# with its own message naming the field
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, json_schema_extra={"pattern": r"^[^\x00]*$"}),
                 AfterValidator(_no_nul)]


class TokensQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Name | None = Field(None, description="Administrators only: this user's tokens.")
    all: bool = Field(False, description="Administrators only: every user's tokens.")

    @field_validator("all")
    @classmethod
    def _one_choice(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("user") is not None:
            raise ValueError("give user or all, not both")
        return value


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="What the token is for (a laptop, a CI job): how the list shows it.")
    expires_in_days: Annotated[int, Field(ge=1, le=MAX_LIFETIME.days), BeforeValidator(_json_int)] | None = Field(
        None, description="Days until it stops working. Default: never.")
    expires_at: UTCTime | None = Field(None, description="When it stops working (instead of expires_in_days), "
                                                         "within 10 years. Default: never.")
    user: Name | None = Field(None, description="Administrators only: the token is for this user (created if "
                                                "new). Default: you.")

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return value
        if info.data.get("expires_in_days") is not None:
            raise ValueError("give expires_in_days or expires_at, not both")
        problem = expiry_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class TokenOut(_Out):
    id: int = Field(description="The token's public id (shown as #id): DELETE /tokens/{id} revokes it.")
    name: str
    user: UserName
    created_at: IsoTime
    last_used_at: IsoTime | None = Field(description="To within a minute (it is written at most once a minute); "
                                                     "null: never used.")
    expires_at: IsoTime | None = Field(description="null: never expires.")
    revoked_at: IsoTime | None
    expired: bool


class TokenCreated(TokenOut):
    token: str = Field(description="The secret, shown only in this answer: only its hash is stored.")

    @model_validator(mode="before")
    @classmethod
    def _from_issued(cls, data: Any) -> Any:
        if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], ApiToken):  # (row, secret)
            return _With(data[0], token=data[1])
        return data


class TokenList(_Items[TokenOut]):
    pass
