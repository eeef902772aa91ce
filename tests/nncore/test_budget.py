"""nncore.budget: the estimates bound what training really allocates and writes."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from nncore.budget import checkpoints_kept, footprint, format_bytes
from nncore.callbacks import Callback
from nncore.datasets import Dataset
from nncore.datasets.types import classification
from nncore.job import Job
from nncore.spec import validate_spec


def _spec(**over):
    doc = {"model": {"layers": [{"units": 64, "activation": "relu"}, {"units": 32, "activation": "tanh"},
                                {"units": 3, "activation": "softmax"}]},
           "loss": "categorical_cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
           "data": {"dataset": "blobs"}, "epochs": 2, "batch_size": 64, "seed": 1}
    for key, value in over.items():
        doc[key] = value
    return validate_spec(doc)


def _data(n: int, f: int) -> Dataset:
    rng = np.random.default_rng(0)
    return classification("synthetic", rng.normal(size=(n, f)), rng.integers(0, 3, n), ("a", "b", "c"), None)


def _peak(spec: dict, data: Dataset) -> int:
    # the data set is made before tracing starts: the job loads it in the estimate, so
    # its size is added back below
    tracemalloc.start()
    try:
        Job(spec, dataset=data).run()
        return tracemalloc.get_traced_memory()[1] + data.X.nbytes + data.y.nbytes
    finally:
        tracemalloc.stop()


CASES = {
    "mini-batch adam": dict(),
    "full batch": dict(batch_size="full"),
    "dropout sgd float64": dict(batch_size=256, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9},
                                model={"dtype": "float64", "layers": [
                                    {"units": 128, "activation": "relu", "dropout": 0.5},
                                    {"units": 3, "activation": "softmax"}]}),
    "wide input": dict(batch_size=32),
    # the general path (layers other than dense): arrays allocated per step, not cached
    "normalisation and dropout layers": dict(batch_size=256, model={"layers": [
        {"units": 128, "activation": "relu"}, {"type": "batchnorm"}, {"type": "dropout", "rate": 0.3},
        {"units": 64, "activation": "tanh"}, {"type": "layernorm"}, {"units": 3, "activation": "softmax"}]}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_memory_estimate_bounds_the_traced_peak_of_training(case):
    n, f = (3000, 400) if case == "wide input" else (4000, 20)
    spec = _spec(**CASES[case])
    measured = _peak(spec, _data(n, f))
    estimated = footprint(spec, n, f).train_bytes
    # from above, and not so loose that a sound job is refused
    assert measured <= estimated <= 3 * measured, (case, measured, estimated)


def test_the_memory_estimate_grows_with_the_ranks_and_the_batch():
    spec = _spec(batch_size=1000)
    one = footprint(spec, 100_000, 20)
    four = footprint({**spec, "distributed": {"world_size": 4}}, 100_000, 20)
    assert four.memory_bytes > 3 * one.memory_bytes
    full = footprint(_spec(batch_size="full"), 10_000_000, 20)
    # a full batch of 10^7 samples holds every layer's activations for all of them
    assert full.train_bytes > 10_000_000 * (64 + 32 + 3) * 4 * 3


class _Files(Callback):
    """The most checkpoint files on disk at once, and the largest one."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.most, self.largest = folder, 0, 0

    def on_epoch(self, trainer, logs):
        files = list(self.folder.glob("*.npz"))
        self.most = max(self.most, len(files))
        self.largest = max([self.largest, *(p.stat().st_size for p in files)])


@pytest.mark.parametrize("keep_last,every", [(0, 1), (2, 1), (3, 2), (1, 0)])
def test_checkpoint_estimates_bound_the_files_written(tmp_path, keep_last, every):
    spec = _spec(epochs=7, checkpoint_every=every, retention={"keep_last": keep_last},
                 early_stopping={"monitor": "val_loss", "patience": 100})
    files = _Files(tmp_path)
    job = Job(spec, out_dir=tmp_path, dataset=_data(600, 10), callbacks=[files])
    job.run()
    files.on_epoch(None, None)
    fp = footprint(job.spec, 600, 10)
    assert files.most <= fp.checkpoints_kept
    assert files.largest <= fp.checkpoint_bytes <= files.largest + 128 * 1024
    if keep_last == 0:
        # keeping all: every file written stays, so the estimate is exact
        assert files.most == fp.checkpoints_kept


def test_keeping_every_checkpoint_of_a_long_job_counts_them_all():
    spec = _spec(epochs=100_000, checkpoint_every=1, retention={"keep_last": 0})
    assert checkpoints_kept(spec) == 100_000
    assert checkpoints_kept({**spec, "retention": {"keep_last": 3, "keep_best": True}}) == 5


def test_sizes_read_for_a_person():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(8 << 30) == "8.0 GiB"
    assert format_bytes(40 << 40) == "40.0 TiB"
