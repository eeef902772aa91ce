r"""Rosenblatt's perceptron (section 1 of the notes): a single linear unit with a step.

.. math:: \hat y = \operatorname{step}(x \cdot w + b), \qquad
          \operatorname{step}(z) = 1 \text{ if } z \ge 0 \text{ else } 0

Training is the classic online rule, one sample at a time:

.. math:: w \leftarrow w + \eta (y - \hat y) x, \qquad b \leftarrow b + \eta (y - \hat y)

It only changes the weights on a mistake. On linearly separable data it reaches an
epoch without mistakes after finitely many updates (Novikoff's theorem); on anything
else, XOR being the textbook case, no epoch is ever error-free, so training stops after
``max_epochs``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .activations import ACTIVATIONS
from .registry import check, check_number


@dataclass
class PerceptronResult:
    """Outcome of :meth:`Perceptron.fit`.

    Attributes
    ----------
    converged : bool
        True when an epoch went by without a single misclassification.
    epochs : int
        Epochs run, including that last error-free one.
    errors : list of int
        Misclassifications (= weight updates) in each epoch, length ``epochs``.
    message : str
        One line for a person to read.
    """

    converged: bool
    epochs: int
    errors: list[int] = field(default_factory=list)
    message: str = ""


class Perceptron:
    r"""Single-layer perceptron for binary (0/1) classification.

    Parameters
    ----------
    n_inputs : int
        Number of features.
    lr : float, default 1.0
        Learning rate :math:`\eta` (> 0). With zero initial weights it only scales w
        and b, so it changes neither the predictions nor the number of epochs.
    max_epochs : int, default 100
        Epochs to try before giving up on non-separable data.
    seed : int, default 0
        Seeds the order in which samples are visited each epoch.
    shuffle : bool, default True
        Visit the samples in a new random order every epoch; False keeps the given order.

    Attributes
    ----------
    w : ndarray of shape (n_inputs,)
        Weights, zeros before training.
    b : float
        Bias, 0 before training.
    activation : Activation
        The registered ``binary_step`` with threshold 0.
    """

    def __init__(self, n_inputs: int, lr: float = 1.0, max_epochs: int = 100, seed: int = 0,
                 shuffle: bool = True) -> None:
        self.n_inputs = check_number("n_inputs", n_inputs, low=1, integer=True)
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.max_epochs = check_number("max_epochs", max_epochs, low=1, integer=True)
        self.seed = check_number("seed", seed, low=0, integer=True)
        check(isinstance(shuffle, (bool, np.bool_)), f"`shuffle` must be True or False, got {shuffle!r}")
        self.shuffle = bool(shuffle)
        self.w = np.zeros(self.n_inputs)
        self.b = 0.0
        # Threshold pinned to 0 because the rule depends on step(0) = 1: with zero
        # initial weights every first prediction is step(0).
        self.activation = ACTIVATIONS.resolve({"name": "binary_step", "threshold": 0.0})

    def __repr__(self) -> str:
        return (f"Perceptron(n_inputs={self.n_inputs}, lr={self.lr!r}, max_epochs={self.max_epochs}, "
                f"seed={self.seed}, shuffle={self.shuffle})")

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """x·w + b for each row of X of shape (n_samples, n_inputs) -> (n_samples,)."""
        return self._check_X(X) @ self.w + self.b

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class 1 where x·w + b >= 0, else 0: X (n_samples, n_inputs) -> int64 (n_samples,)."""
        z = self.decision_function(X)[:, None]
        return self.activation(z)[:, 0].astype(np.int64)

    def fit(self, X: np.ndarray, y: np.ndarray) -> PerceptronResult:
        """Train from zero weights with the perceptron rule.

        Every call starts afresh (w = 0, b = 0, the generator re-seeded), so the result
        depends only on the data and the constructor's arguments.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_inputs)
        y : ndarray of shape (n_samples,) or (n_samples, 1)
            Labels 0 or 1 (bools accepted).

        Returns
        -------
        PerceptronResult
        """
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        rng = np.random.default_rng(self.seed)
        w = np.zeros(self.n_inputs)
        b = 0.0
        errors: list[int] = []
        order = np.arange(X.shape[0])
        z, a = np.empty((1, 1)), np.empty((1, 1))  # reused by every per-sample step
        converged = False
        for _ in range(self.max_epochs):
            if self.shuffle:
                order = rng.permutation(X.shape[0])
            mistakes = 0
            # Online: each prediction sees the weights updated by the previous sample,
            # which is what makes this Rosenblatt's rule and not batch gradient descent.
            for i in order:
                z[0, 0] = X[i] @ w + b
                delta = y[i] - int(self.activation.forward(z, a)[0, 0])
                if delta:
                    w += (self.lr * delta) * X[i]
                    b += self.lr * delta
                    mistakes += 1
            errors.append(mistakes)
            if mistakes == 0:
                converged = True
                break
        self.w, self.b = w, float(b)
        epochs = len(errors)
        if converged:
            message = (f"converged after {epochs} epoch{'s' if epochs != 1 else ''}: "
                       "every sample classified correctly")
        else:
            message = (f"did not converge in {epochs} epoch{'s' if epochs != 1 else ''} "
                       f"({errors[-1]} misclassified in the last); the data may not be "
                       "linearly separable")
        return PerceptronResult(converged=converged, epochs=epochs, errors=errors, message=message)

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        check(X.ndim == 2 and X.shape[1] == self.n_inputs and X.shape[0] > 0,
              f"`X` must have shape (n_samples, {self.n_inputs}) with n_samples >= 1, "
              f"got {X.shape}")
        check(X.dtype.kind in "biuf", f"`X` must be numeric, got dtype {X.dtype}")
        X = X.astype(np.float64, copy=False)
        check(bool(np.isfinite(X).all()), "`X` must be finite, got NaN or infinite values")
        return X

    @staticmethod
    def _check_y(y: np.ndarray, n: int) -> np.ndarray:
        y = np.asarray(y)
        if y.shape == (n, 1):  # a target column, as Dataset.targets(1) gives
            y = y[:, 0]
        check(y.shape == (n,), f"`y` must have shape ({n},) to match X, got {y.shape}")
        check(y.dtype.kind in "biuf", f"`y` must hold 0/1 labels, got dtype {y.dtype}")
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(f"`y` must hold only 0 and 1, got {y[bad][0].item()!r}")
        return y.astype(np.int64)
