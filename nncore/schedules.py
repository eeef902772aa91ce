"""Learning-rate schedules (section 10.2).

A schedule maps the update count (``step``, starting at 0 for the first update) and
the epoch to a multiplier-free learning rate, given the optimiser's initial rate
``lr0``. Schedules are pure functions of (step, epoch) except reduce-on-plateau,
whose state (best value, wait, current factor) goes into checkpoints.
"""
from __future__ import annotations

import math
from typing import Any

from .registry import Configurable, FieldError, Registry, check_number
from .series import better

SCHEDULES: Registry[Schedule] = Registry("schedule")


class Schedule(Configurable):
    #: "step" schedules change every update; "epoch" schedules once per epoch.
    unit = "step"

    def __call__(self, lr0: float, step: int, epoch: int) -> float:
        raise NotImplementedError

    def on_epoch_end(self, metrics: dict[str, float]) -> None:
        """Hook for schedules that react to metrics (reduce-on-plateau)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@SCHEDULES.register
class Constant(Schedule):
    name = "constant"
    unit = "epoch"  # the same value every step: nothing to recompute per update

    def __call__(self, lr0, step, epoch):
        return lr0


@SCHEDULES.register
class TimeDecay(Schedule):
    r"""The decay formula of section 10.2.1, applied at every update:

    .. math:: lr = lr_0 \cdot \frac{1}{1 + decay \cdot iteration}

    where iteration is the number of updates made so far.
    """

    name = "decay"
    config_keys = ("decay",)

    def __init__(self, decay: float = 0.01) -> None:
        self.decay = check_number("decay", decay, low=0)

    def __call__(self, lr0, step, epoch):
        return lr0 / (1.0 + self.decay * step)


@SCHEDULES.register
class StepDecay(Schedule):
    r"""Multiply by ``gamma`` every ``step_size`` epochs: :math:`lr_0 \gamma^{\lfloor e / s \rfloor}`."""

    name = "step"
    unit = "epoch"
    config_keys = ("step_size", "gamma")

    def __init__(self, step_size: int = 10, gamma: float = 0.5) -> None:
        self.step_size = check_number("step_size", step_size, low=1, integer=True)
        self.gamma = check_number("gamma", gamma, low=0, low_open=True, high=1)

    def __call__(self, lr0, step, epoch):
        return lr0 * self.gamma ** (epoch // self.step_size)


@SCHEDULES.register
class ExponentialDecay(Schedule):
    r"""Smooth exponential decay per update: :math:`lr_0 \cdot rate^{step / decay\_steps}`."""

    name = "exponential"
    config_keys = ("rate", "decay_steps")

    def __init__(self, rate: float = 0.96, decay_steps: int = 100) -> None:
        self.rate = check_number("rate", rate, low=0, low_open=True, high=1)
        self.decay_steps = check_number("decay_steps", decay_steps, low=1, integer=True)

    def __call__(self, lr0, step, epoch):
        return lr0 * self.rate ** (step / self.decay_steps)


@SCHEDULES.register
class Cosine(Schedule):
    r"""Cosine annealing (Loshchilov & Hutter 2017) over epochs, optionally with warm restarts.

    .. math:: lr = lr_{min} + \tfrac12 (lr_0 - lr_{min})(1 + \cos(\pi\, t_{cur} / T))

    Without restarts T = ``t_max`` and the rate stays at lr_min after it. With
    ``restarts`` the period starts at ``t_max`` and is multiplied by ``t_mult`` after
    each restart (SGDR).
    """

    name = "cosine"
    unit = "epoch"
    config_keys = ("t_max", "lr_min", "restarts", "t_mult")

    def __init__(self, t_max: int = 50, lr_min: float = 0.0, restarts: bool = False, t_mult: int = 1) -> None:
        self.t_max = check_number("t_max", t_max, low=1, integer=True)
        self.lr_min = check_number("lr_min", lr_min, low=0)
        if not isinstance(restarts, bool):
            raise FieldError("restarts", f"`restarts` must be true or false, got {restarts!r}")
        self.restarts = restarts
        self.t_mult = check_number("t_mult", t_mult, low=1, integer=True)

    def __call__(self, lr0, step, epoch):
        t, period = epoch, self.t_max
        if self.restarts:
            while t >= period:
                t -= period
                period *= self.t_mult
        else:
            t = min(t, period)
        return self.lr_min + 0.5 * (lr0 - self.lr_min) * (1.0 + math.cos(math.pi * t / period))


@SCHEDULES.register
class ReduceOnPlateau(Schedule):
    """Multiply the rate by ``factor`` when ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` epochs (then wait ``cooldown`` epochs), never below
    ``min_lr``."""

    name = "reduce_on_plateau"
    unit = "epoch"
    config_keys = ("monitor", "factor", "patience", "min_delta", "cooldown", "min_lr", "mode")

    def __init__(self, monitor: str = "val_loss", factor: float = 0.5, patience: int = 5, min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, mode: str | None = None) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise FieldError("monitor", f"`monitor` must be a metric name, got {monitor!r}")
        self.monitor = monitor
        self.factor = check_number("factor", factor, low=0, low_open=True, high=1, high_open=True)
        self.patience = check_number("patience", patience, low=0, integer=True)
        self.min_delta = check_number("min_delta", min_delta, low=0)
        self.cooldown = check_number("cooldown", cooldown, low=0, integer=True)
        self.min_lr = check_number("min_lr", min_lr, low=0)
        if mode is None:
            mode = better(monitor)
        if mode not in ("min", "max"):
            raise FieldError("mode", f"`mode` must be 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.scale, self.best, self.wait, self.cooling = 1.0, math.inf, 0, 0

    def __call__(self, lr0, step, epoch):
        return max(lr0 * self.scale, min(self.min_lr, lr0))

    def on_epoch_end(self, metrics):
        if self.monitor not in metrics:
            raise ValueError(f"reduce_on_plateau monitors {self.monitor!r}, which is not among the metrics "
                             f"({', '.join(sorted(metrics))})")
        value = metrics[self.monitor] if self.mode == "min" else -metrics[self.monitor]
        # epochs inside the cooldown after a reduction are not counted as bad
        in_cooldown = self.cooling > 0
        if in_cooldown:
            self.cooling -= 1
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
        elif not in_cooldown:
            self.wait += 1
            if self.wait > self.patience:
                self.scale *= self.factor
                self.wait, self.cooling = 0, self.cooldown

    def state_dict(self):
        return {"scale": self.scale, "best": self.best, "wait": self.wait, "cooling": self.cooling}

    def load_state_dict(self, state):
        self.scale, self.best = float(state["scale"]), float(state["best"])
        self.wait, self.cooling = int(state["wait"]), int(state["cooling"])


@SCHEDULES.register
class Warmup(Schedule):
    """Linear warm-up from ``start_factor * lr0`` to the wrapped schedule over
    ``warmup_steps`` updates, then the wrapped schedule (default constant)."""

    name = "warmup"
    config_keys = ("warmup_steps", "start_factor", "after")

    def __init__(self, warmup_steps: int = 100, start_factor: float = 0.0, after: Any = "constant") -> None:
        self.warmup_steps = check_number("warmup_steps", warmup_steps, low=1, integer=True)
        self.start_factor = check_number("start_factor", start_factor, low=0, high=1)
        self._after = SCHEDULES.resolve(after)
        if isinstance(self._after, Warmup):
            raise FieldError("after", "`after` cannot itself be a warmup")
        self.unit = "step"

    @property
    def after(self) -> dict[str, Any]:
        return self._after.get_config()

    def __call__(self, lr0, step, epoch):
        target = self._after(lr0, step, epoch)
        if step >= self.warmup_steps:
            return target
        frac = self.start_factor + (1.0 - self.start_factor) * (step + 1) / self.warmup_steps
        return target * frac

    def on_epoch_end(self, metrics):
        self._after.on_epoch_end(metrics)

    def state_dict(self):
        return self._after.state_dict()

    def load_state_dict(self, state):
        self._after.load_state_dict(state)
