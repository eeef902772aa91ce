"""Finite-difference gradients (section 6.2.1) and their comparison with backprop.

Forward difference, as in the notes: C'(w) ~ (C(w + eps) - C(w)) / eps, error O(eps).
Central difference: (C(w + eps) - C(w - eps)) / (2 eps), error O(eps^2).
Both perturb one parameter of the flat buffer at a time, so they cost one or two
forward passes per parameter: fine for checking and tiny models, not for training
anything large (see ``MAX_FD_TRAIN_PARAMS``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .losses import Loss
from .network import Network

METHODS = ("forward", "central")
# Training with finite differences costs 2 forward passes per parameter per step.
MAX_FD_TRAIN_PARAMS = 5000


def numerical_gradient(net: Network, X: np.ndarray, y: np.ndarray, loss: Loss, method: str = "central",
                       eps: float | None = None, out: np.ndarray | None = None, training: bool = False
                       ) -> np.ndarray:
    """Finite-difference gradient of the mean loss over (X, y) w.r.t. ``net.params``.

    Parameters
    ----------
    method : {"central", "forward"}
    eps : float, optional
        Step; default sqrt(machine eps) for forward and cbrt(machine eps) for central,
        the steps that balance truncation and rounding error.
    training : bool
        Differentiate the training-mode function (BatchNorm on the batch's statistics);
        only meaningful for a network that draws no random numbers.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    machine = float(np.finfo(net.dtype).eps)
    if eps is None:
        eps = machine ** (0.5 if method == "forward" else 1.0 / 3.0)
    p = net.params
    g = np.empty(p.size, dtype=np.float64) if out is None else out

    def cost() -> float:
        net.forward(X, training=training)
        return net.loss_total(loss, y) / X.shape[0]

    base = cost() if method == "forward" else 0.0
    for i in range(p.size):
        old = p[i]
        p[i] = old + eps
        plus = cost()
        if method == "forward":
            p[i] = old
            g[i] = (plus - base) / eps
        else:
            p[i] = old - eps
            minus = cost()
            p[i] = old
            g[i] = (plus - minus) / (2.0 * eps)
    return g


@dataclass
class GradCheckResult:
    """Backprop vs finite differences: the worst relative error and where it is."""

    max_rel_error: float
    max_abs_error: float
    worst_param: str
    backprop: np.ndarray
    numerical: np.ndarray

    def passed(self, tol: float = 1e-6) -> bool:
        return self.max_rel_error < tol


def check_gradients(net: Network, X: np.ndarray, y: np.ndarray, loss: Loss, method: str = "central",
                    eps: float | None = None, training: bool = False) -> GradCheckResult:
    """Compare backprop's gradient with finite differences on (X, y).

    Uses evaluation mode (no dropout, RReLU at its mean slope, BatchNorm on its running
    statistics) so that both see the same deterministic function; ``training`` checks
    the training-mode function instead (BatchNorm on the batch's statistics), for
    networks without dropout or RReLU. Relative error per parameter is
    |b - n| / max(|b| + |n|, 1e-8).
    """
    if training and net.stochastic:
        raise ValueError("a training-mode gradient check needs a network that draws no random numbers")
    net.gradient(X, y, loss, training=training)
    bp = net.grads.astype(np.float64)
    num = numerical_gradient(net, X, y, loss, method=method, eps=eps, training=training)
    diff = np.abs(bp - num)
    rel = diff / np.maximum(np.abs(bp) + np.abs(num), 1e-8)
    worst = int(np.argmax(rel)) if rel.size else 0
    name = next((f"{label}[{worst - s.start}]" for label, s in net.slices if s.start <= worst < s.stop), "?")
    return GradCheckResult(float(rel.max(initial=0.0)), float(diff.max(initial=0.0)), name, bp, num)
