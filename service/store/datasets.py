"""Uploaded datasets: CSV or NPZ files, checked by nncore's loader before a row exists.

A file is streamed to a temporary name inside ``<artifact_dir>/datasets/``, loaded
with :func:`nncore.datasets.load_file` (numbers only, no NaN, consistent shapes, rows,
features and values within the server's limits, measured before the file is inflated or
parsed; NPZ read with ``allow_pickle=False``), and only then renamed to ``<id>.<format>`` and
recorded. A refused upload leaves neither a row nor a file behind.

Like jobs, a user sees only their own datasets (NotFound otherwise), an administrator
sees all.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from nncore.datasets import DatasetError, FileLimits, load_file

from .errors import Conflict, FieldProblem, Invalid, NotFound, bad_text
from .jobs import MAX_PAGE, _visible, newest_first
from .models import Dataset, Job, User, utcnow
from .quota import check_quota
from .status import FINISHED

FORMATS = ("csv", "npz")
MAX_FILENAME = 255
MAX_NAME = 200
_CHUNK = 1 << 20
_INDEX = re.compile(r"-?\d+")


def datasets_dir(artifact_root: Path) -> Path:
    return artifact_root / "datasets"


def parse_target(text: str | None) -> int | str | None:
    """A CSV target as :func:`nncore.datasets.load_file` takes it: digits (optionally
    negative) are a column index, anything else a header name. Form fields and the
    ``target`` column are text, so this one rule reads both."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    return int(text) if _INDEX.fullmatch(text) else text


def create_dataset(session: Session, user: User, stream: BinaryIO, filename: str | None, artifact_root: Path,
                   name: str | None = None, target: str | None = None, *,
                   limits: FileLimits | None = None, quota_bytes: int = 0) -> Dataset:
    """Validate and store an uploaded file; Invalid (path ``file`` or ``target``) if
    nncore cannot load it as a dataset, or it holds more rows, features or values than
    ``limits`` allow (default nncore's :class:`~nncore.datasets.FileLimits`);
    QuotaExceeded if it does not fit the user's ``quota_bytes`` (0: no quota)."""
    base = _base_name(filename)
    fmt = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    if fmt not in FORMATS:
        raise Invalid(f"cannot tell the format of {base!r}", [FieldProblem(
            "file", f"must be a .csv or .npz file, got {base!r}")])
    if len(base) > MAX_FILENAME:
        raise Invalid("the file name is too long", [FieldProblem("file", f"the file name must be at most "
                                                                         f"{MAX_FILENAME} characters")])
    target_value = parse_target(target)
    if fmt == "npz" and target_value is not None:
        raise Invalid("target applies to CSV files only", [FieldProblem(
            "target", "applies to CSV files only; an NPZ file holds its targets in the array 'y'")])

    folder = datasets_dir(artifact_root)
    folder.mkdir(parents=True, exist_ok=True)
    # same folder as the final name, so the rename below is atomic
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix="." + fmt, dir=folder)
    tmp = Path(tmp_name)
    final: Path | None = None
    try:
        with os.fdopen(fd, "wb") as out:
            sha256, size = _copy(stream, out)
        if size == 0:
            raise Invalid(f"{base} is empty", [FieldProblem("file", "the uploaded file is empty")])
        # early and advisory: a file that cannot fit is not parsed
        check_quota(session, user, quota_bytes, size, "file", f"the upload {base}", lock=False)
        try:
            # source: nncore's messages name the client's own file, not our temp path
            # limits: the loader measures the file before it inflates or parses it
            data = load_file(tmp, target=target_value, source=base, limits=limits)
        except ValueError as exc:
            # nncore says which input is wrong; all but the target column are about the file
            field = "target" if isinstance(exc, DatasetError) and exc.field == "target" else "file"
            raise Invalid(f"{base} is not a usable dataset: {exc}", [FieldProblem(field, str(exc))]) from None
        dataset = Dataset(owner_id=user.id, name=name or Path(base).stem[:MAX_NAME] or base[:MAX_NAME],
                          filename=base, format=fmt, path="", size_bytes=size, sha256=sha256,
                          n_samples=data.n_samples, n_features=data.n_features, task=data.task,
                          n_classes=data.n_classes, target=None if target_value is None else str(target_value),
                          created_at=utcnow())
        # again, holding the user's row until the commit below: a concurrent upload waits
        check_quota(session, user, quota_bytes, size, "file", f"the upload {base}")
        session.add(dataset)
        session.flush()
        final = folder / f"{dataset.id}.{fmt}"
        dataset.path = str(final)
        os.replace(tmp, final)
        session.commit()
        return dataset
    except BaseException:
        session.rollback()
        if final is not None:
            final.unlink(missing_ok=True)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _base_name(filename: str | None) -> str:
    # browsers may send a full client-side path; only the last part is the name
    base = re.split(r"[/\\]", (filename or "").strip())[-1].strip()
    if not base:
        raise Invalid("the upload has no file name", [FieldProblem(
            "file", "the file needs a name ending in .csv or .npz")])
    if why := bad_text(base):
        raise Invalid(f"the file name {why}", [FieldProblem("file", f"the file name {why}")])
    return base


def _copy(stream: BinaryIO, out: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def list_datasets(session: Session, user: User, limit: int = 50, page_token: str | None = None
                  ) -> tuple[list[Dataset], str | None]:
    """Newest first, with the same opaque keyset page token as jobs."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt = _visible(select(Dataset), user, Dataset.owner_id)
    return newest_first(session, stmt, Dataset.id, limit, page_token)


def get_dataset(session: Session, user: User, dataset_id: int) -> Dataset:
    dataset = session.scalar(_visible(select(Dataset).where(Dataset.id == dataset_id), user, Dataset.owner_id))
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    return dataset


def delete_dataset(session: Session, user: User, dataset_id: int) -> None:
    """Delete a dataset and its file; Conflict while a queued or running job uses it
    (finished jobs keep their spec, their ``dataset_id`` becomes null)."""
    dataset = get_dataset(session, user, dataset_id)
    active = list(session.scalars(select(Job.id).where(Job.dataset_id == dataset.id, Job.status.not_in(FINISHED))
                                  .order_by(Job.id).limit(10)))
    if active:
        ids = ", ".join(str(i) for i in active)
        raise Conflict(f"dataset {dataset_id} is used by queued or running job(s) {ids}; cancel them or wait for "
                       "them to finish before deleting it")
    path = Path(dataset.path)
    session.delete(dataset)
    session.commit()
    path.unlink(missing_ok=True)


def dataset_path(session: Session, dataset_id: int) -> Path:
    """The stored file of an uploaded dataset, for the worker that trains on it (no
    owner check: the job was checked against its owner when it was submitted)."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} does not exist (it was deleted)")
    path = Path(dataset.path)
    if not path.is_file():
        raise NotFound(f"the file of dataset {dataset_id} is missing from the artifact store")
    return path
