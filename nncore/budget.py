"""What a job will cost before it runs: parameters, peak training memory, checkpoint bytes.

The service bounds jobs by these figures at submit time, when a wrong guess costs a 4xx
instead of a worker's memory or a disk. Every figure is an upper estimate built from the
arrays the training code actually allocates (see :class:`nncore.network._Buffers`,
:meth:`nncore.trainer.Trainer.fit`, :func:`nncore.job.prepare_data`); the tests hold it
against the peak that ``tracemalloc`` sees and the size of real checkpoint files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layers import layout
from .optimizers import OPTIMIZERS

#: rows of one evaluation chunk (``Network.predict``'s default batch)
EVAL_ROWS = 4096
#: a checkpoint's fixed part (the spec, the network config, schedule state, the npz
#: directory) and the history it carries per epoch, bytes; measured from real files
#: and rounded up generously
CHECKPOINT_OVERHEAD = 64 * 1024
HISTORY_BYTES_PER_EPOCH = 512


@dataclass(frozen=True)
class Footprint:
    """The estimated cost of one job.

    ``train_bytes`` is the peak of the arrays one rank allocates (the interpreter
    itself, ~100 MB a process, is not in it); the job's memory is that times the
    ranks, which each hold the whole data set. ``checkpoints_kept`` is the most files
    on disk at one time (retention writes a new file before it drops an old one).
    """

    params: int
    train_bytes: int
    world_size: int
    checkpoint_bytes: int
    checkpoints_kept: int

    @property
    def memory_bytes(self) -> int:
        return self.train_bytes * self.world_size

    @property
    def storage_bytes(self) -> int:
        return self.checkpoint_bytes * self.checkpoints_kept


def footprint(spec: dict[str, Any], n_samples: int, n_features: int) -> Footprint:
    """Estimate a normalised (validated) spec's cost on ``n_samples`` x ``n_features`` data.

    Parameters
    ----------
    spec : dict
        As :func:`nncore.spec.validate_spec` returns it.
    n_samples, n_features : int
        The data set's shape (before the validation split).
    """
    model = spec["model"]
    layers = model["layers"]
    isz = np.dtype(model["dtype"]).itemsize
    shape = layout(n_features, layers)
    n_params = sum(la.n_params for la in shape)
    out = layers[-1]["units"]
    n_val = math.ceil(n_samples * spec["data"]["validation_split"])
    n_train = max(n_samples - n_val, 1)
    ws = spec["distributed"]["world_size"]
    batch = n_train if spec["batch_size"] is None else min(spec["batch_size"], n_train)
    rank_rows = math.ceil(batch / ws)

    opt_slots = len(OPTIMIZERS.resolve(spec["optimizer"]).state_keys)
    es = spec.get("early_stopping")
    best_copy = 1 if es and es.get("restore_best") else 0
    # params, grads, the all-reduce buffer, the optimizer's slots, early stopping's best
    # parameters, and the copy a checkpoint takes
    param_bytes = n_params * isz * (3 + opt_slots + best_copy + 1)
    if spec["gradient"] == "finite_difference":
        param_bytes += n_params * isz * 2

    # the loaded set in float64 (features and the target matrix), its standardised copy,
    # the train/validation parts in the model's dtype, the shuffled copies of the train
    # part with labels, and the outputs scored at each epoch's end
    data_bytes = n_samples * (n_features + out) * 8 + n_samples * 8
    if spec["data"]["standardize"]:
        data_bytes += n_samples * n_features * 8
    data_bytes += n_samples * (n_features + out) * isz
    data_bytes += n_train * ((n_features + out) * isz + 16)
    data_bytes += n_samples * out * isz

    # per cached batch size: each layer's pre-activation, activation and gradient (plus
    # a mask and a pre-dropout copy with dropout) and a cast copy of the input; at most
    # the training batch, its last partial batch and two chunk sizes of the validation
    # set (the training set is scored from the outputs its batches already made).
    # A network with other layer types runs the general path: a workspace per layer and
    # cached batch size (its output, what its backward needs, the gradient it passes
    # down, one input's width), for the training batch and its last partial batch;
    # evaluation makes its arrays afresh, one chunk at a time.
    general = any(la.kind != "dense" for la in shape)
    per_row = n_features + sum(
        la.out_dim * (5 if cfg.get("dropout") else 3) + (la.in_dim if general else 0)
        for la, cfg in zip(shape, layers, strict=True))
    partial = 0 if spec["data"]["drop_last"] else n_train % batch
    eval_rows = min(EVAL_ROWS, n_val)
    rows = rank_rows + math.ceil(partial / ws) + (1 if general else 2) * eval_rows
    act_bytes = rows * per_row * isz

    n_state = sum(la.n_state for la in shape)  # running statistics, in the state buffer and the checkpoint
    param_bytes += 2 * n_state * isz
    ckpt = (n_params * isz * (1 + opt_slots + best_copy) + n_state * isz + 2 * n_features * 8
            + spec["epochs"] * HISTORY_BYTES_PER_EPOCH + CHECKPOINT_OVERHEAD)
    return Footprint(n_params, param_bytes + data_bytes + act_bytes, ws, ckpt, checkpoints_kept(spec))


def checkpoints_kept(spec: dict[str, Any]) -> int:
    """The most checkpoint files of a job on disk at one time."""
    every, epochs = spec["checkpoint_every"], spec["epochs"]
    # every ``every`` epochs, and at the end unless that epoch was just written
    written = epochs // every + (1 if epochs % every else 0) if every else 1
    keep = spec.get("retention", {}).get("keep_last", 0)
    if not keep:
        return written
    best = 1 if spec.get("retention", {}).get("keep_best", True) else 0
    # a new file is written before retention drops the oldest
    return min(written, keep + best + 1)


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: sizes in messages meant for a person."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TiB"
