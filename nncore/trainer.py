"""The training loop: batches, backprop (or finite differences), reduce, update.

The trainer knows nothing of SQL, Celery or MPI. It takes callbacks for reporting
and stopping, and a gradient reducer: :class:`LocalReducer` on one process, an MPI
all-reduce (``nncore.distributed``) on several. Every rank walks the same global
batches; the reducer says which slice of each batch is this rank's.

Per step the loop does O(1) NumPy calls beyond the network's own work, and no
allocation: the epoch's shuffle is one ``take`` into a preallocated array and each
batch is a contiguous view of it.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .callbacks import EarlyStopping
from .data import ShardedNoise, batch_bounds, epoch_permutation, noise_rng
from .gradcheck import MAX_FD_TRAIN_PARAMS, numerical_gradient
from .hooks import Callback, Outcome, StepLog, TrainResult, overrides
from .losses import Loss
from .metrics import correct_count, regression_metrics
from .network import Network
from .optimizers import Optimizer
from .schedules import Constant, Schedule

GRADIENT_MODES = ("backprop", "finite_difference")


@dataclass
class TrainData:
    """Arrays for training or validation.

    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_outputs), the targets the loss compares with
    labels : ndarray of shape (n_samples,) of int, for classification (accuracy)
    """

    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.X.ndim != 2 or self.Y.ndim != 2:
            raise ValueError(f"X and Y must be 2-D, got shapes {self.X.shape} and {self.Y.shape}")
        if self.X.shape[0] != self.Y.shape[0]:
            raise ValueError(f"X has {self.X.shape[0]} samples but Y has {self.Y.shape[0]}")
        if self.labels is not None and self.labels.shape != (self.X.shape[0],):
            raise ValueError(f"labels must have shape ({self.X.shape[0]},), got {self.labels.shape}")

    @property
    def n(self) -> int:
        return self.X.shape[0]


class Reducer(Protocol):
    rank: int
    world_size: int

    def shard(self, start: int, stop: int) -> tuple[int, int]: ...

    def allreduce_sum(self, buf: np.ndarray) -> None: ...

    def broadcast(self, buf: np.ndarray) -> None: ...


class LocalReducer:
    """One process: the whole batch is ours and there is nothing to reduce."""

    rank, world_size = 0, 1

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        return start, stop

    def allreduce_sum(self, buf: np.ndarray) -> None:
        pass

    def broadcast(self, buf: np.ndarray) -> None:
        pass


class Trainer:
    """Gradient descent on a :class:`Network`.

    Parameters
    ----------
    batch_size : int or None
        Samples per update: None (or >= n) is batch gradient descent, 1 is
        stochastic, anything between is mini-batch.
    shuffle : bool
        Reshuffle every epoch with the permutation of (seed, epoch).
    drop_last : bool
        Drop the last partial batch of each epoch.
    gradient : {"backprop", "finite_difference"}
        How gradients are computed; finite differences are for tiny networks only.
    task : {"binary", "multiclass", "regression"} or None
        Which metrics to report besides the loss.
    max_runtime_s : float, optional
        Stop (status "timed_out") once training has run this long.
    """

    def __init__(self, net: Network, loss: Loss, optimizer: Optimizer, *, schedule: Schedule | None = None,
                 batch_size: int | None = 32, epochs: int = 10, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0, gradient: str = "backprop", early_stopping: EarlyStopping | None = None,
                 callbacks: Iterable[Callback] = (), reducer: Reducer | None = None, task: str | None = None,
                 max_runtime_s: float | None = None) -> None:
        if gradient not in GRADIENT_MODES:
            raise ValueError(f"`gradient` must be one of {', '.join(GRADIENT_MODES)}, got {gradient!r}")
        if gradient == "finite_difference" and net.n_params > MAX_FD_TRAIN_PARAMS:
            raise ValueError(
                f"finite-difference training needs 2 forward passes per parameter per step; this network has "
                f"{net.n_params} parameters, above the limit of {MAX_FD_TRAIN_PARAMS}. Use \"gradient\": \"backprop\".")
        if gradient == "finite_difference" and net.state.size:
            raise ValueError("finite-difference training differentiates the evaluation-mode network, where "
                             "batchnorm uses its running statistics, not the batch's; use \"gradient\": \"backprop\"")
        if not loss.decomposable and reducer is not None and reducer.world_size > 1:
            raise ValueError(f"loss {loss.name!r} is not a mean of per-sample costs, so it cannot be split "
                             "across ranks; use mse or mae for data-parallel regression")
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.schedule = schedule or Constant()
        self.batch_size, self.epochs = batch_size, int(epochs)
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, int(seed)
        self.gradient, self.task = gradient, task
        self.early_stopping = early_stopping
        self.callbacks = list(callbacks)
        self.reducer: Reducer = reducer or LocalReducer()
        self.max_runtime_s = max_runtime_s
        self.epoch = 0  # completed epochs
        self.step = 0  # updates made
        self.history: list[dict[str, float]] = []
        # running statistics at early stopping's best epoch: restoring the best
        # parameters without them would evaluate with statistics of other weights
        self.best_state: np.ndarray | None = None
        # the batch's loss total and correct count travel with the gradients in one all-reduce
        self._reduce_buf = np.zeros(net.n_params + 2, dtype=net.dtype)

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: parameters, network state (running
        statistics), optimiser state, schedule position and state, epoch/step,
        early-stopping state, history."""
        state: dict[str, Any] = {"params": self.net.params.copy(), "epoch": self.epoch, "step": self.step,
                                 "history": self.history, "schedule_state": self.schedule.state_dict(),
                                 "network": self.net.get_config()}
        if self.net.state.size:  # only networks with state: dense-only checkpoints keep their keys
            state["state"] = self.net.state.copy()
        for key, value in self.optimizer.state_dict().items():
            state["opt." + key] = value
        if self.early_stopping is not None:
            state["early_stopping"] = self.early_stopping.state_dict()
            if self.early_stopping.best_params is not None:
                state["best_params"] = self.early_stopping.best_params.copy()
            if self.best_state is not None:
                state["best_state"] = self.best_state.copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        params = state["params"]
        if params.shape != self.net.params.shape:
            raise ValueError(f"checkpoint has {params.size} parameters but the network has {self.net.n_params}; "
                             "was it written for a different model?")
        np.copyto(self.net.params, params, casting="same_kind")
        if self.net.state.size:
            if "state" not in state or state["state"].shape != self.net.state.shape:
                raise ValueError(f"the network has {self.net.state.size} state values (running statistics) but "
                                 "the checkpoint has none of that size; was it written for a different model?")
            np.copyto(self.net.state, state["state"], casting="same_kind")
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state.get("history", []))
        self.schedule.load_state_dict(state.get("schedule_state", {}))
        self.optimizer.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("opt.")})
        if self.early_stopping is not None and "early_stopping" in state:
            self.early_stopping.load_state_dict(state["early_stopping"], state.get("best_params"))
            self.best_state = state["best_state"].copy() if "best_state" in state else None

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, data: TrainData, prefix: str = "") -> dict[str, float]:
        """Loss and task metrics over ``data`` in evaluation mode."""
        a = self.net.predict(data.X)
        y = data.Y.astype(a.dtype, copy=False)
        n = data.n
        out = {prefix + "loss": self.loss.total(a, y) / n}
        if data.labels is not None:
            out[prefix + "accuracy"] = correct_count(a, data.labels) / n
        elif self.task == "regression":
            out.update({prefix + k: v for k, v in regression_metrics(a, y).items()})
        return out

    def batch_plan(self, n: int) -> list[tuple[int, int]]:
        """(start, stop) of the global batches of an epoch over n samples."""
        bs = n if self.batch_size is None else min(int(self.batch_size), n)
        return batch_bounds(n, bs, self.drop_last)

    def _epoch_correct(self, outs: np.ndarray, labels: np.ndarray, mine: np.ndarray | None, seen: int) -> int:
        if mine is None:
            return correct_count(outs[:seen], labels[:seen])
        count = np.array([correct_count(outs[mine], labels[mine])], dtype=np.float64)
        self.reducer.allreduce_sum(count)
        return int(round(count[0]))

    # -- training -----------------------------------------------------------------------
    def fit(self, train: TrainData, val: TrainData | None = None) -> TrainResult:
        """Train from the current epoch up to ``epochs`` and return how it ended."""
        # overflow is detected (the loss turns non-finite) and reported as divergence,
        # so NumPy's own warnings would only repeat it less clearly
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._fit(train, val)

    def _fit(self, train: TrainData, val: TrainData | None) -> TrainResult:
        net, loss, opt, sched, red = self.net, self.loss, self.optimizer, self.schedule, self.reducer
        dt = net.dtype
        n = train.n
        bounds = self.batch_plan(n)
        if not bounds:
            raise ValueError(f"no batch to train on: {n} samples with batch_size {self.batch_size} and drop_last")
        if red.world_size > min(stop - start for start, stop in bounds):
            raise ValueError(f"world size {red.world_size} is larger than a batch "
                             f"({min(stop - start for start, stop in bounds)} samples): "
                             "every rank needs at least one sample; use a larger batch_size or fewer ranks")
        distributed = red.world_size > 1
        net.reducer = red if distributed else None
        X = np.ascontiguousarray(train.X, dtype=dt)
        Y = np.ascontiguousarray(train.Y, dtype=dt)
        labels = train.labels
        track_acc = labels is not None
        Xs, Ys = (np.empty_like(X), np.empty_like(Y)) if self.shuffle else (X, Y)
        Ls = np.empty_like(labels) if (self.shuffle and track_acc) else labels
        # Outputs are kept per epoch and scored once at its end: one copy per step
        # instead of the three calls a per-step argmax-compare-count costs.
        outs = np.empty((n, net.output_dim), dtype=dt) if track_acc else None
        mine = np.concatenate([np.arange(*red.shard(s, e)) for s, e in bounds]) if distributed else None

        step_cbs = [cb for cb in self.callbacks if overrides(cb, "on_step")]
        stop_cbs = [cb for cb in self.callbacks if overrides(cb, "should_stop")]
        want_norm = any(cb.wants_grad_norm for cb in step_cbs)
        want_acc = track_acc and any(cb.wants_accuracy for cb in step_cbs)
        prepare = bool(opt.weight_decay and opt.decay_in_gradient) or opt.clip_norm is not None
        fd = self.gradient == "finite_difference"
        stochastic = net.stochastic
        lr0 = opt.lr
        per_step_lr = sched.unit == "step"
        grads, params, rbuf = net.grads, net.params, self._reduce_buf
        deadline = None if self.max_runtime_s is None else time.monotonic() + self.max_runtime_s
        # per batch: index, global size, this rank's rows, and 1/size as a 0-d array of
        # the buffer dtype (a Python float operand is converted on every NumPy call)
        scales: dict[int, np.ndarray] = {}
        plan = [(b, stop - start, *red.shard(start, stop),
                 scales.setdefault(stop - start, np.asarray(1.0 / (stop - start), dtype=dt)))
                for b, (start, stop) in enumerate(bounds)]
        # rows of each global batch above and below this rank's slice: its noise is cut
        # from the whole batch's (see ShardedNoise)
        pads = [(plan[b][2] - start, stop - plan[b][3]) for b, (start, stop) in enumerate(bounds)]
        sharded_noise = distributed and stochastic

        for cb in self.callbacks:
            cb.on_train_begin(self)
        status, reason = Outcome.COMPLETED, f"trained {self.epochs} epochs"
        timed_out = False
        while self.epoch < self.epochs:
            epoch = self.epoch
            t0 = time.perf_counter()
            if self.shuffle:
                perm = epoch_permutation(n, self.seed, epoch)
                np.take(X, perm, axis=0, out=Xs)
                np.take(Y, perm, axis=0, out=Ys)
                if track_acc:
                    np.take(labels, perm, out=Ls)
            rng = noise_rng(self.seed, epoch) if stochastic else None
            noise = ShardedNoise(rng) if sharded_noise else None
            lr = sched(lr0, self.step, epoch)
            total_loss, seen = 0.0, 0
            stop_reason = None
            for b, nb, lo, hi, scale in plan:
                xb, yb = Xs[lo:hi], Ys[lo:hi]
                if fd:
                    numerical_gradient(net, xb, yb, loss, out=grads)
                    grads *= (hi - lo) / nb  # numerical_gradient returns the local mean
                    out = net.forward(xb)
                else:
                    out = net.forward(xb, True, noise.rows(*pads[b]) if noise is not None else rng)
                    net.backward(net.output_delta(loss, yb, scale))
                bl = net.loss_total(loss, yb)
                if track_acc:
                    np.copyto(outs[lo:hi], out)
                correct = correct_count(out, Ls[lo:hi]) if want_acc else 0
                if distributed:
                    rbuf[:-2] = grads
                    rbuf[-2], rbuf[-1] = bl, correct
                    red.allreduce_sum(rbuf)
                    grads[...] = rbuf[:-2]
                    bl, correct = float(rbuf[-2]), int(round(float(rbuf[-1])))
                if not math.isfinite(bl):
                    status = Outcome.DIVERGED
                    reason = (f"the loss became {bl} at epoch {epoch + 1}, batch {b + 1}: training diverged; "
                              "try a smaller learning rate")
                    break
                if per_step_lr:
                    lr = sched(lr0, self.step, epoch)
                norm = opt.prepare(params, grads) if prepare else math.nan
                if want_norm and norm != norm:
                    norm = math.sqrt(float(np.dot(grads, grads)))
                opt.step(params, grads, lr)
                self.step += 1
                total_loss += bl
                seen += nb
                if step_cbs:
                    log = StepLog(self.step, epoch, b, bl / nb, lr, nb, norm,
                                  correct / nb if want_acc else math.nan)
                    for cb in step_cbs:
                        cb.on_step(self, log)
                for cb in stop_cbs:
                    stop_reason = cb.should_stop(self)
                    if stop_reason:
                        break
                if stop_reason is None and deadline is not None and time.monotonic() > deadline:
                    stop_reason, timed_out = f"reached the time limit of {self.max_runtime_s:g} s", True
                if stop_reason:
                    break
            if status is Outcome.DIVERGED:
                break
            if stop_reason:
                status, reason = Outcome.TIMED_OUT if timed_out else Outcome.STOPPED, stop_reason
                break
            self.epoch += 1
            elapsed = time.perf_counter() - t0
            if distributed:
                # MPI does not promise bitwise-equal all-reduce results on every rank;
                # re-sharing rank 0's parameters keeps rounding drift from accumulating
                red.broadcast(params)
                if net.state.size:
                    red.broadcast(net.state)
            logs: dict[str, float] = {"epoch": self.epoch, "step": self.step, "loss": total_loss / seen,
                                      "lr": lr, "time": elapsed, "samples_per_s": seen / elapsed if elapsed else 0.0}
            if track_acc:
                logs["accuracy"] = self._epoch_correct(outs, Ls, mine, seen) / seen
            elif self.task == "regression":
                logs.update(self.evaluate(train))
            if val is not None and val.n:
                logs.update(self.evaluate(val, "val_"))
            if not math.isfinite(logs["loss"]):
                status, reason = Outcome.DIVERGED, f"the loss became {logs['loss']} at epoch {self.epoch}"
                break
            self.history.append(logs)
            sched.on_epoch_end(logs)
            early = self.early_stopping.update(logs, self.epoch, params) if self.early_stopping else False
            if net.state.size and self.early_stopping is not None and self.early_stopping.restore_best \
                    and self.early_stopping.best_epoch == self.epoch:
                self.best_state = net.state.copy()
            for cb in self.callbacks:
                cb.on_epoch(self, logs)
            if early:
                es = self.early_stopping
                status = Outcome.EARLY_STOPPED
                reason = (f"{es.monitor} did not improve for {es.patience} epochs (best at epoch {es.best_epoch}"
                          + ("; its parameters are restored)" if es.restore_best else ")"))
                break
        ended_well = status in (Outcome.COMPLETED, Outcome.EARLY_STOPPED)
        if self.early_stopping and self.early_stopping.restore_best and ended_well \
                and self.early_stopping.best_params is not None:
            np.copyto(params, self.early_stopping.best_params)
            if self.best_state is not None:
                np.copyto(net.state, self.best_state)
        final = dict(self.history[-1]) if self.history else {}
        result = TrainResult(status, reason, self.epoch, self.step, final, self.history)
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result
