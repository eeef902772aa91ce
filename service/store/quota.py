"""What a job may cost, and what a user may keep: checked when a job or a dataset arrives.

A job's figures come from :func:`nncore.budget.footprint` on the data it names (an
uploaded dataset's recorded shape, or a built-in set's), so the limits hold whether or
not the spec gives ``model.input_dim``. A user's artifacts are their datasets and
their jobs' checkpoints; an unfinished job also *reserves* what it may still write
(its most checkpoints on disk at once, less what it has written), so twenty queued jobs
cannot each fit a quota that they overrun together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nncore.budget import Footprint, footprint, format_bytes
from nncore.datasets import dataset_shape

from .errors import FieldProblem, Invalid, QuotaExceeded
from .models import Checkpoint, Dataset, Job, User
from .status import FINISHED


@dataclass(frozen=True)
class Budget:
    """The service's bounds on one job and one user (see ``Settings``)."""

    job_memory_bytes: int = 8 << 30
    job_checkpoint_bytes: int = 4 << 30
    #: 0: no quota
    user_quota_bytes: int = 50 << 30


@dataclass(frozen=True)
class Usage:
    datasets_bytes: int
    checkpoints_bytes: int
    #: what the user's unfinished jobs may still write
    reserved_bytes: int
    quota_bytes: int

    @property
    def used_bytes(self) -> int:
        return self.datasets_bytes + self.checkpoints_bytes

    @property
    def free_bytes(self) -> int | None:
        if not self.quota_bytes:
            return None
        return max(self.quota_bytes - self.used_bytes - self.reserved_bytes, 0)


def data_shape(spec: dict[str, Any], dataset: Dataset | None) -> tuple[int, int]:
    """``(n_samples, n_features)`` of the data a normalised spec trains on."""
    if dataset is not None:
        return dataset.n_samples, dataset.n_features
    return dataset_shape(spec["data"]["dataset"], spec["data"].get("n_samples"))


def job_footprint(spec: dict[str, Any], dataset: Dataset | None) -> Footprint:
    return footprint(spec, *data_shape(spec, dataset))


def check_job(spec: dict[str, Any], fp: Footprint, budget: Budget) -> None:
    """Invalid when the job's estimated memory or checkpoint bytes exceed the budget,
    naming the field most worth changing."""
    problems = []
    if fp.memory_bytes > budget.job_memory_bytes:
        problems.append(FieldProblem(_memory_field(spec, fp), (
            f"training would need about {format_bytes(fp.memory_bytes)} of memory "
            f"({fp.world_size} rank(s) x {format_bytes(fp.train_bytes)}: activations for the batch, "
            f"{fp.params:,} parameters with gradients and optimizer state, the data set); the limit is "
            f"{format_bytes(budget.job_memory_bytes)} a job. Use a smaller batch_size, narrower layers or fewer "
            "ranks")))
    if fp.storage_bytes > budget.job_checkpoint_bytes:
        keep = spec.get("retention", {}).get("keep_last", 0)
        how = ("keeps every checkpoint" if not keep else f"keeps up to {fp.checkpoints_kept} checkpoints")
        field = "spec.retention.keep_last" if 2 * fp.checkpoint_bytes <= budget.job_checkpoint_bytes else "spec.model"
        problems.append(FieldProblem(field, (
            f"{how} of {format_bytes(fp.checkpoint_bytes)} each, up to {format_bytes(fp.storage_bytes)} on disk; "
            f"the limit is {format_bytes(budget.job_checkpoint_bytes)} a job. Set retention.keep_last to a few, "
            "checkpoint less often (checkpoint_every) or train a smaller model")))
    if problems:
        raise Invalid("the job would cost more than this server allows", problems)


def _memory_field(spec: dict[str, Any], fp: Footprint) -> str:
    # the batch is what a person most often sizes wrongly; a full batch of a large set is it
    per_param = fp.params * 8 * 6
    return "spec.model.layers" if per_param > fp.train_bytes // 2 else "spec.batch_size"


def usage(session: Session, user: User, quota_bytes: int) -> Usage:
    datasets = session.scalar(select(func.coalesce(func.sum(Dataset.size_bytes), 0))
                              .where(Dataset.owner_id == user.id)) or 0
    written = dict(session.execute(
        select(Checkpoint.job_id, func.sum(Checkpoint.size_bytes)).join(Job, Job.id == Checkpoint.job_id)
        .where(Job.owner_id == user.id).group_by(Checkpoint.job_id)).all())
    reserved = 0
    for job in session.scalars(select(Job).where(Job.owner_id == user.id, Job.status.not_in(FINISHED))):
        reserved += max(_projected(session, job) - int(written.get(job.id, 0)), 0)
    return Usage(int(datasets), int(sum(written.values())), reserved, quota_bytes)


def _projected(session: Session, job: Job) -> int:
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id is not None else None
    try:
        return job_footprint(job.spec, dataset).storage_bytes
    except (KeyError, TypeError, ValueError):
        # a spec stored by an older server may lack a field; it reserves nothing
        return 0


def check_quota(session: Session, user: User, quota_bytes: int, adding: int, field: str, what: str,
                lock: bool = True) -> None:
    """QuotaExceeded when ``adding`` more bytes would take ``user`` past the quota.

    With ``lock`` the user's row is written (to itself) first, so the caller's
    transaction holds it until it commits what it is adding: two requests of one user
    cannot both fit the last free bytes (a row lock on PostgreSQL, the write lock on
    SQLite). Commit soon after; ``lock=False`` is for an early, advisory check."""
    if not quota_bytes:
        return
    if lock:
        session.execute(update(User).where(User.id == user.id).values(name=User.name)
                        .execution_options(synchronize_session=False))
    u = usage(session, user, quota_bytes)
    if u.used_bytes + u.reserved_bytes + adding <= quota_bytes:
        return
    message = (f"{what} needs {format_bytes(adding)}, but your quota of {format_bytes(quota_bytes)} has "
               f"{format_bytes(u.free_bytes or 0)} free (datasets {format_bytes(u.datasets_bytes)}, checkpoints "
               f"{format_bytes(u.checkpoints_bytes)}, reserved by unfinished jobs {format_bytes(u.reserved_bytes)}); "
               "delete datasets or finished jobs you no longer need")
    raise QuotaExceeded(message, [FieldProblem(field, message)])
