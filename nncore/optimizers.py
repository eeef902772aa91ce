"""Optimisers on the flat parameter buffer.

Every optimiser updates the whole buffer with a handful of vectorised NumPy calls,
whatever the depth of the network, and owns only its state (step count, velocities,
moments). The learning rate of each step is passed in by the trainer, which takes it
from the schedule. ``grads`` may be overwritten: it is recomputed every step.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .registry import Configurable, FieldError, Registry, check_number

OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")


def _config_keys(*own: str) -> tuple[str, ...]:
    """``config_keys`` of an optimiser: ``lr``, its own hyperparameters, then the options
    every optimiser takes (the order its config has always had)."""
    return ("lr", *own, "weight_decay", "clip_norm")


class Optimizer(Configurable):
    """Base: ``lr`` is the initial learning rate; schedules scale it per step.

    Common options (all off by default, each adds a few NumPy calls when on):
    ``weight_decay`` adds L2 decay ``weight_decay * w`` to the gradient (coupled,
    as in SGD's classic L2; AdamW decouples it); ``clip_norm`` rescales the gradient
    so its global L2 norm is at most ``clip_norm``.
    """

    config_keys: tuple[str, ...] = _config_keys()
    state_keys: tuple[str, ...] = ()

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0)
        self.clip_norm = None if clip_norm is None else check_number("clip_norm", clip_norm, low=0, low_open=True)
        self.iterations = 0
        self._size = -1

    def _ensure_state(self, params: np.ndarray) -> None:
        if self._size != params.size:
            for key in self.state_keys:
                setattr(self, key, np.zeros_like(params))
            self._size = params.size

    def prepare(self, params: np.ndarray, grads: np.ndarray) -> float:
        """Apply L2 decay and clipping to ``grads`` in place; return the gradient norm
        (before clipping) when clipping is on, else NaN (not computed: saves a call)."""
        if self.weight_decay and self.decay_in_gradient:
            grads += self.weight_decay * params
        norm = math.nan
        if self.clip_norm is not None:
            norm = math.sqrt(float(np.dot(grads, grads)))
            if norm > self.clip_norm:
                grads *= self.clip_norm / norm
        return norm

    decay_in_gradient = True

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        """Update ``params`` in place from ``grads`` with learning rate ``lr``."""
        if self._size != params.size:
            self._ensure_state(params)
        self.iterations += 1
        self._update(params, grads, lr)

    _lr_value: float = math.nan
    _lr_array: np.ndarray | None = None

    def _lr(self, lr: float, like: np.ndarray) -> np.ndarray:
        """lr as a 0-d array of the buffers' dtype, rebuilt only when lr changes."""
        arr = self._lr_array
        if lr != self._lr_value or arr is None or arr.dtype != like.dtype:
            arr = self._lr_array = np.asarray(lr, dtype=like.dtype)
            self._lr_value = lr
        return arr

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    # state for checkpoints: arrays plus the step count
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"iterations": np.asarray(self.iterations, dtype=np.int64)}
        if self._size >= 0:
            for key in self.state_keys:
                state[key] = getattr(self, key).copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iterations = int(state["iterations"])
        if all(key in state for key in self.state_keys) and self.state_keys:
            for key in self.state_keys:
                setattr(self, key, np.array(state[key], copy=True))
            self._size = getattr(self, self.state_keys[0]).size


@OPTIMIZERS.register
class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional momentum exactly as section 10.3:

    .. math:: v_t = \beta v_{t-1} - \eta \nabla L(w_t), \qquad w_{t+1} = w_t + v_t

    and optional Nesterov momentum (the gradient is looked up ahead, w + beta v;
    implemented in the usual reformulation w += beta v_t - eta g).
    """

    name = "sgd"
    config_keys = _config_keys("momentum", "nesterov")

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.momentum = check_number("momentum", momentum, low=0, high=1, high_open=True)
        if not isinstance(nesterov, bool):
            raise FieldError("nesterov", f"`nesterov` must be true or false, got {nesterov!r}")
        if nesterov and not self.momentum:
            raise FieldError("nesterov", f"`nesterov` needs `momentum` > 0, got momentum={momentum!r}")
        self.nesterov = nesterov
        self.state_keys = ("velocity",) if self.momentum else ()
        self._beta: np.ndarray | None = None

    def _update(self, params, grads, lr):
        np.multiply(grads, self._lr(lr, grads), out=grads)  # grads now holds eta*g
        if not self.momentum:
            np.subtract(params, grads, out=params)
            return
        v = self.velocity
        if self._beta is None or self._beta.dtype != v.dtype:
            # a 0-d array of the buffer's dtype: NumPy converts a Python float on every call
            self._beta = np.asarray(self.momentum, dtype=v.dtype)
        np.multiply(v, self._beta, out=v)
        np.subtract(v, grads, out=v)
        if self.nesterov:
            np.subtract(params, grads, out=params)
            params += self._beta * v
        else:
            np.add(params, v, out=params)


# "momentum" and "nesterov" are SGD with other defaults. Each is a class of its own
# because the registry maps a name to a class, reads the accepted parameters and their
# defaults from ``__init__`` and takes the config's name from the class.

@OPTIMIZERS.register
class Momentum(SGD):
    """SGD with momentum (section 10.3); ``momentum`` defaults to 0.9."""

    name = "momentum"

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        super().__init__(lr, momentum, nesterov, weight_decay, clip_norm)


@OPTIMIZERS.register
class Nesterov(Momentum):
    """Momentum with ``nesterov`` on by default: Nesterov accelerated momentum."""

    name = "nesterov"

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        super().__init__(lr, momentum, nesterov, weight_decay, clip_norm)


def _scaled_step(params: np.ndarray, grads: np.ndarray, square: np.ndarray, epsilon: float, lr: float) -> None:
    """params -= lr grads / (sqrt(square) + epsilon); overwrites grads."""
    denom = np.sqrt(square)
    denom += epsilon
    np.divide(grads, denom, out=grads)
    grads *= lr
    params -= grads


@OPTIMIZERS.register
class AdaGrad(Optimizer):
    r"""AdaGrad (Duchi et al. 2011): per-parameter rates shrink with the sum of squares.

    .. math:: G_t = G_{t-1} + g^2, \qquad w \mathrel{-}= \eta\, g / (\sqrt{G_t} + \epsilon)
    """

    name = "adagrad"
    config_keys = _config_keys("epsilon", "initial_accumulator")
    state_keys = ("accumulator",)

    def __init__(self, lr: float = 0.01, epsilon: float = 1e-7, initial_accumulator: float = 0.1,
                 weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.epsilon = check_number("epsilon", epsilon, low=0, low_open=True)
        self.initial_accumulator = check_number("initial_accumulator", initial_accumulator, low=0)

    def _ensure_state(self, params):
        if self._size != params.size:
            super()._ensure_state(params)
            self.accumulator[...] = self.initial_accumulator

    def _update(self, params, grads, lr):
        acc = self.accumulator
        acc += grads * grads
        _scaled_step(params, grads, acc, self.epsilon, lr)


@OPTIMIZERS.register
class RMSProp(Optimizer):
    r"""RMSProp (Hinton, lecture 6e): a moving average of squared gradients.

    .. math:: s_t = \rho s_{t-1} + (1-\rho) g^2, \qquad w \mathrel{-}= \eta\, g / (\sqrt{s_t} + \epsilon)
    """

    name = "rmsprop"
    config_keys = _config_keys("rho", "epsilon")
    state_keys = ("square_avg",)

    def __init__(self, lr: float = 0.001, rho: float = 0.9, epsilon: float = 1e-7,
                 weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.rho = check_number("rho", rho, low=0, high=1, high_open=True)
        self.epsilon = check_number("epsilon", epsilon, low=0, low_open=True)

    def _update(self, params, grads, lr):
        s = self.square_avg
        s *= self.rho
        s += (1.0 - self.rho) * grads * grads
        _scaled_step(params, grads, s, self.epsilon, lr)


@OPTIMIZERS.register
class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015) with bias correction.

    .. math:: m_t = \beta_1 m + (1-\beta_1) g,\ v_t = \beta_2 v + (1-\beta_2) g^2,\
              w \mathrel{-}= \eta \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon},\
              \hat m_t = m_t/(1-\beta_1^t),\ \hat v_t = v_t/(1-\beta_2^t)
    """

    name = "adam"
    config_keys = _config_keys("beta1", "beta2", "epsilon")
    state_keys = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                 weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.beta1 = check_number("beta1", beta1, low=0, high=1, high_open=True)
        self.beta2 = check_number("beta2", beta2, low=0, high=1, high_open=True)
        self.epsilon = check_number("epsilon", epsilon, low=0, low_open=True)

    def _update(self, params, grads, lr):
        t = self.iterations
        m, v = self.m, self.v
        m *= self.beta1
        m += (1.0 - self.beta1) * grads
        v *= self.beta2
        np.multiply(grads, grads, out=grads)
        grads *= 1.0 - self.beta2
        v += grads
        # fold both bias corrections into one scalar step and one epsilon
        c2 = math.sqrt(1.0 - self.beta2 ** t)
        step = lr * c2 / (1.0 - self.beta1 ** t)
        denom = np.sqrt(v, out=grads)
        denom += self.epsilon * c2
        np.divide(m, denom, out=denom)
        denom *= step
        self._decoupled_decay(params, lr)
        params -= denom

    def _decoupled_decay(self, params, lr):
        pass


@OPTIMIZERS.register
class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019):
    :math:`w \mathrel{-}= \eta \lambda w` separately from the adaptive step."""

    name = "adamw"
    decay_in_gradient = False

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                 weight_decay: float = 0.01, clip_norm: float | None = None) -> None:
        super().__init__(lr, beta1, beta2, epsilon, weight_decay, clip_norm)

    def _decoupled_decay(self, params, lr):
        if self.weight_decay:
            params *= 1.0 - lr * self.weight_decay
