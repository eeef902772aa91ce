"""From a validated job spec to a trained model: data, network, trainer, checkpoints.

This is the one place that turns the spec's JSON into objects, used by the offline
``trainyard train`` command, the worker and the data-parallel ranks alike, so a job
trains the same way wherever it runs.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .callbacks import Checkpointer, EarlyStopping
from .checkpoint import load_checkpoint
from .data import Standardizer, train_validation_split
from .datasets import Dataset, FileLimits, load_dataset
from .hooks import Callback, TrainResult
from .losses import LOSSES, Loss
from .network import Network
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES
from .spec import validate_spec
from .trainer import Reducer, TrainData, Trainer


@dataclass
class PreparedData:
    """The job's data after split and standardisation, in the network's dtype."""

    train: TrainData
    val: TrainData | None
    task: str
    n_features: int
    n_classes: int | None
    standardizer: Standardizer | None
    name: str


def prepare_data(spec: dict[str, Any], dataset: Dataset | None = None, path: str | None = None,
                 target: int | str | None = None, limits: FileLimits | None = None) -> PreparedData:
    """Load the spec's dataset (or use ``dataset``), split, standardise, encode targets.

    ``path`` overrides ``data.path`` (the service resolves an uploaded dataset's id to
    its file this way).
    """
    d = spec["data"]
    if dataset is None:
        name = d["dataset"]
        kwargs: dict[str, Any] = {}
        file_path = path or d.get("path")
        if name == "uploaded":
            if file_path is None:
                raise ValueError("data.dataset_id names an uploaded dataset, but no file was resolved for it")
            name = "npz" if str(file_path).endswith(".npz") else "csv"
        if name in ("csv", "npz"):
            # the spec's target wins; else the one recorded with an uploaded dataset
            kwargs = {"path": file_path, "target": d.get("target", target), "limits": limits}
        else:
            kwargs = {"n_samples": d.get("n_samples"), "noise": d.get("noise"), "seed": spec["seed"]}
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
        dataset = load_dataset(name, **kwargs)
    dtype = np.dtype(spec["model"]["dtype"])
    input_dim = spec["model"].get("input_dim")
    if input_dim is not None and input_dim != dataset.n_features:
        raise ValueError(f"model.input_dim is {input_dim} but dataset {dataset.name!r} has "
                         f"{dataset.n_features} features; set input_dim to {dataset.n_features} or leave it out")
    out_units = spec["model"]["layers"][-1]["units"]
    Y = dataset.targets(out_units, np.float64)
    labels = dataset.y if dataset.task != "regression" else None
    strat = labels if (labels is not None and d["stratify"]) else None
    tr, va = train_validation_split(dataset.n_samples, d["validation_split"], spec["seed"], strat)
    X = dataset.X
    scaler = Standardizer.fit(X[tr]) if d["standardize"] else None
    if scaler is not None:
        X = scaler.transform(X)

    def part(idx: np.ndarray) -> TrainData:
        return TrainData(np.ascontiguousarray(X[idx], dtype=dtype), np.ascontiguousarray(Y[idx], dtype=dtype),
                         None if labels is None else labels[idx].astype(np.int64))

    return PreparedData(part(tr), part(va) if va.size else None, dataset.task, dataset.n_features,
                        dataset.n_classes, scaler, dataset.name)


def build_network(spec: dict[str, Any], input_dim: int) -> Network:
    m = spec["model"]
    return Network(input_dim, m["layers"], init=m["init"], dtype=m["dtype"], seed=spec["seed"])


def build_trainer(spec: dict[str, Any], net: Network, task: str, callbacks: Iterable[Callback] = (),
                  reducer: Reducer | None = None, max_runtime_s: float | None = None) -> Trainer:
    loss: Loss = LOSSES.resolve(spec["loss"])
    es = spec.get("early_stopping")
    return Trainer(
        net, loss, OPTIMIZERS.resolve(spec["optimizer"]),
        schedule=SCHEDULES.resolve(spec["schedule"]) if spec.get("schedule") else None,
        batch_size=spec["batch_size"], epochs=spec["epochs"], shuffle=spec["data"]["shuffle"],
        drop_last=spec["data"]["drop_last"], seed=spec["seed"], gradient=spec["gradient"],
        early_stopping=EarlyStopping(**es) if es else None, callbacks=callbacks, reducer=reducer, task=task,
        max_runtime_s=max_runtime_s if max_runtime_s is not None else spec.get("max_runtime_s"))


def best_checkpoint_options(spec: dict[str, Any]) -> dict[str, Any]:
    """Which metric picks the best checkpoint (kept through retention): the spec's
    retention.best_metric, else what early stopping monitors, else the validation loss
    (or the training loss without a validation split)."""
    retention = spec.get("retention") or {}
    best = retention.get("best_metric") or (spec.get("early_stopping") or {}).get("monitor") or (
        "val_loss" if spec["data"].get("validation_split") else "loss")
    return {"best_metric": best, "keep_best": retention.get("keep_best", True)}


class Job:
    """Everything a spec describes, built and ready to ``run``.

    Parameters
    ----------
    spec : dict
        A job spec (validated here if it is not already normalised).
    out_dir : path, optional
        Where checkpoints go; without it nothing is written.
    callbacks : iterable of Callback
        Extra hooks (progress bars, metric writers, cancel flags).
    reducer : Reducer, optional
        The data-parallel gradient reducer; rank 0 alone writes checkpoints.
    data_limits : FileLimits, optional
        Bounds on a csv/npz file read for the job (the service's, which checked it on upload).
    """

    def __init__(self, spec: dict[str, Any], out_dir: str | Path | None = None, callbacks: Iterable[Callback] = (),
                 reducer: Reducer | None = None, dataset: Dataset | None = None, data_path: str | None = None,
                 keep_last: int | None = None, checkpoint_hooks: dict[str, Any] | None = None,
                 data_target: int | str | None = None, data_limits: FileLimits | None = None) -> None:
        self.spec = validate_spec(spec)
        self.data = prepare_data(self.spec, dataset, data_path, data_target, data_limits)
        self.net = build_network(self.spec, self.data.n_features)
        callbacks = list(callbacks)
        self.checkpointer: Checkpointer | None = None
        if out_dir is not None and (reducer is None or reducer.rank == 0):
            keep = self.spec["retention"]["keep_last"] if keep_last is None else keep_last
            self.checkpointer = Checkpointer(out_dir, self.spec["checkpoint_every"], keep, self.checkpoint_extra(),
                                             **{**best_checkpoint_options(self.spec), **(checkpoint_hooks or {})})
            callbacks.append(self.checkpointer)
        self.trainer = build_trainer(self.spec, self.net, self.data.task, callbacks, reducer)
        ws = self.trainer.reducer.world_size
        smallest = min((stop - start for start, stop in self.trainer.batch_plan(self.data.train.n)), default=0)
        if ws > smallest:
            raise ValueError(f"world size {ws} is larger than a batch ({smallest} samples): every rank needs at "
                             "least one sample; use a larger batch_size or fewer ranks")

    def checkpoint_extra(self) -> dict[str, Any]:
        """What a checkpoint needs besides the trainer state to predict on its own."""
        extra: dict[str, Any] = {"spec": self.spec, "task": self.data.task, "n_classes": self.data.n_classes,
                                 "dataset": self.data.name}
        if self.data.standardizer is not None:
            extra["scaler_mean"] = self.data.standardizer.mean
            extra["scaler_std"] = self.data.standardizer.std
        return extra

    def resume(self, checkpoint: str | Path | dict[str, Any], sha256: str | None = None) -> None:
        """Continue from a checkpoint: the rest of training is as if never stopped.
        ``sha256``: the file's recorded digest, verified before it is loaded."""
        state = load_checkpoint(checkpoint, sha256) if not isinstance(checkpoint, dict) else checkpoint
        self.trainer.load_state_dict(state)
        if self.checkpointer is not None:
            self.checkpointer.load_state_dict(state.get("checkpointer"))

    def run(self) -> TrainResult:
        return self.trainer.fit(self.data.train, self.data.val)

    def describe(self) -> dict[str, Any]:
        """A ``start`` event: what is about to be trained."""
        d = self.data
        return {"event": "start", "network": repr(self.net), "params": self.net.n_params, "dataset": d.name,
                "task": d.task, "train": d.train.n, "validation": d.val.n if d.val else 0,
                "epochs": self.spec["epochs"], "from_epoch": self.trainer.epoch,
                "world_size": self.trainer.reducer.world_size,
                "steps_per_epoch": len(self.trainer.batch_plan(d.train.n))}


def summarize(job: Job, result: TrainResult, seconds: float) -> dict[str, Any]:
    """The ``summary`` event: how training ended, final metrics, the last checkpoint."""
    def clean(v: Any) -> Any:
        return round(v, 6) if isinstance(v, float) and np.isfinite(v) else v

    skip = ("epoch", "step", "time", "samples_per_s", "lr")
    out: dict[str, Any] = {
        "event": "summary", "status": result.status, "reason": result.reason, "epochs": result.epochs,
        "steps": result.steps, "seconds": round(seconds, 3),
        "train": {k: clean(v) for k, v in result.final.items() if not k.startswith("val_") and k not in skip},
        "validation": {k[4:]: clean(v) for k, v in result.final.items() if k.startswith("val_")},
        "checkpoint": str(job.checkpointer.latest) if job.checkpointer and job.checkpointer.latest else None,
    }
    es = job.trainer.early_stopping
    if es is not None and es.best_epoch >= 0:
        out["best_epoch"] = es.best_epoch
    return out


class Model:
    """A trained network with its input standardisation, loaded from a checkpoint."""

    def __init__(self, net: Network, scaler: Standardizer | None, task: str, spec: dict[str, Any]) -> None:
        self.net, self.scaler, self.task, self.spec = net, scaler, task, spec

    @classmethod
    def load(cls, path: str | Path, best: bool = False, sha256: str | None = None) -> Model:
        """The model of a checkpoint file (``best``: early stopping's best parameters);
        with ``sha256``, only if the file is the one recorded (see :func:`load_checkpoint`)."""
        state = load_checkpoint(path, sha256)
        net = Network.from_config(state["network"])
        params = state["best_params"] if best and "best_params" in state else state["params"]
        np.copyto(net.params, params, casting="same_kind")
        if "state" in state:  # BatchNorm's running statistics: evaluation uses them
            key = "best_state" if best and "best_state" in state and "best_params" in state else "state"
            np.copyto(net.state, state[key], casting="same_kind")
        scaler = Standardizer(state["scaler_mean"], state["scaler_std"]) if "scaler_mean" in state else None
        return cls(net, scaler, state.get("task", "regression"), state.get("spec", {}))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Network outputs for raw (unstandardised) inputs of shape (n_samples, n_features)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.net.input_dim:
            raise ValueError(f"expected inputs with {self.net.input_dim} features, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("inputs contain NaN or infinite values")
        if self.scaler is not None:
            X = self.scaler.transform(X)
        return self.net.predict(X).astype(np.float64)

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        from .metrics import predicted_labels
        return predicted_labels(self.predict(X))

    def to_onnx(self, path: str | Path | None = None, *, opset: int = 17) -> bytes:
        """This model as ONNX bytes (input ``input`` [N, n_features] raw features, output
        ``output`` equal to :meth:`predict`), also written to ``path`` if given. Needs the
        optional packages (``pip install 'trainyard[onnx]'``); see :mod:`nncore.onnx_export`."""
        from .onnx_export import to_onnx

        data = to_onnx(self, opset=opset)
        if path is not None:
            Path(path).write_bytes(data)
        return data


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
