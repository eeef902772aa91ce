"""A checkpoint file that is not the one recorded is never resumed from, nor served.

The worker runs in this process on a real database (SQLite and PostgreSQL): a job
trains to its end, is put back in the queue as a lost attempt would be, and its newest
checkpoint is rewritten (a valid file with other parameters: what a disk fault that
keeps the format, or a hand edit, leaves). The next attempt must pass over it, resume
from the one before, and end with the parameters of the run that was never disturbed.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from nncore.checkpoint import ChecksumMismatch, load_checkpoint, save_checkpoint
from nncore.spec import validate_spec
from service.shared.settings import Settings
from service.store.models import Checkpoint, Event, Job
from service.store.predict import ModelCache
from service.store.status import JobStatus
from tests.inprocess import queued_job, store_sessions
from worker.runner import run_job

SPEC = validate_spec({"model": {"layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}]},
                      "loss": "binary_cross_entropy", "optimizer": {"name": "sgd", "lr": 0.5},
                      "data": {"dataset": "moons", "n_samples": 64}, "epochs": 6, "batch_size": 16,
                      "checkpoint_every": 2, "retention": {"keep_last": 0}, "seed": 4})


@pytest.fixture
def db(db_template, tmp_path) -> Iterator[tuple[str, object]]:
    with store_sessions(db_template, tmp_path) as made:
        yield made


def _tamper(path: Path) -> None:
    state = load_checkpoint(path)
    state["params"] = state["params"] + 0.25
    state.pop("format_version")
    save_checkpoint(path, state)


def test_resume_passes_over_a_checkpoint_whose_sha256_changed(db, tmp_path):
    url, sessions = db
    settings = Settings(database_url=url, broker_url="memory://", artifact_dir=tmp_path / "artifacts")
    job_id = queued_job(sessions, spec=SPEC)
    assert run_job(job_id, settings, "w1").startswith("succeeded")
    with sessions() as s:
        rows = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.epoch)).all()
        assert [r.epoch for r in rows] == [2, 4, 6]
        newest = Path(rows[-1].path)
        undisturbed = load_checkpoint(newest)["params"]
        _tamper(newest)
        # put back as the reaper puts back an attempt whose lease expired
        s.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.QUEUED, finished_at=None,
                                                             lease_owner=None, lease_expires_at=None))
        s.commit()

    assert run_job(job_id, settings, "w2").startswith("succeeded")
    with sessions() as s:
        messages = s.scalars(select(Event.message).where(Event.job_id == job_id)).all()
        note = next(m for m in messages if m.startswith("resumed from"))
        assert note.startswith("resumed from epoch-00004") and "skipped epoch-00006" in note and "sha256" in note
        final = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.epoch == 6)).one()
        np.testing.assert_array_equal(load_checkpoint(final.path, final.sha256)["params"], undisturbed)


def test_the_model_cache_notices_a_file_changed_after_it_was_loaded(tmp_path):
    from nncore.job import Job as TrainJob

    job = TrainJob(SPEC, out_dir=tmp_path)
    job.run()
    epoch, path, digest = job.checkpointer.written[-1]
    cache = ModelCache()
    first = cache.get(path, digest)
    assert cache.get(path, digest) is first  # a hit: no second load
    _tamper(path)
    from service.store.errors import Conflict

    with pytest.raises(Conflict, match="does not match its recorded sha256"):
        cache.get(path, digest)
    with pytest.raises(ChecksumMismatch, match="the file changed since"):
        load_checkpoint(path, digest)
