"""The contract between the training loop and what it reports to: the callback
protocol, what one step did, and how training ended. The trainer and every callback
stand on this module; neither imports the other.

A callback overrides any of ``on_train_begin``, ``on_step``, ``on_epoch``,
``should_stop`` and ``on_train_end``. The trainer calls ``on_step`` and
``should_stop`` only on callbacks that override them, so an unused hook costs
nothing per step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    """How training ended (``TrainResult.status``)."""

    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"
    DIVERGED = "diverged"
    #: ``max_runtime_s`` ran out
    TIMED_OUT = "timed_out"
    #: a callback's ``should_stop`` gave a reason
    STOPPED = "stopped"


@dataclass
class TrainResult:
    """How training ended: status is completed, early_stopped, diverged, timed_out
    (``max_runtime_s``) or stopped (a callback's ``should_stop`` gave a reason)."""

    status: Outcome
    reason: str
    epochs: int
    steps: int
    final: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


class TrainerState(Protocol):
    """What a callback may read of the trainer that calls it."""

    epoch: int
    step: int
    epochs: int
    history: list[dict[str, float]]
    callbacks: list[Callback]

    def state_dict(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class StepLog:
    """What one update did. ``loss`` is the mean over the global batch."""

    step: int
    epoch: int
    batch: int
    loss: float
    lr: float
    samples: int
    grad_norm: float = math.nan
    accuracy: float = math.nan


class Callback:
    def on_train_begin(self, trainer: TrainerState) -> None:
        pass

    def on_step(self, trainer: TrainerState, log: StepLog) -> None:
        pass

    def on_epoch(self, trainer: TrainerState, logs: dict[str, float]) -> None:
        pass

    def should_stop(self, trainer: TrainerState) -> str | None:
        """Return a reason to stop training after the current step, or None."""
        return None

    def on_train_end(self, trainer: TrainerState, result: TrainResult) -> None:
        pass

    #: set True to receive StepLog.grad_norm (one extra dot product per step)
    wants_grad_norm = False
    #: set True to receive StepLog.accuracy on classification tasks (three calls per step)
    wants_accuracy = False


def overrides(cb: Callback, method: str) -> bool:
    """True when ``cb`` implements ``method`` itself (an instance may switch a hook
    off by setting it to None)."""
    own = getattr(cb, method, None)
    return own is not None and getattr(type(cb), method) is not getattr(Callback, method)
