"""Cost functions (section 5 of the notes) and their gradients.

A loss is an average over per-sample costs C_x, C = (1/n) sum_x C_x, where C_x sums
over the output units j as the notes write it. ``grad`` returns ``scale * dC_x/da``
row by row; the trainer passes ``scale = 1/n_global`` so that summing rows across
data-parallel ranks gives exactly the global mean gradient.

Domain safety: probabilities are clipped to [eps, 1 - eps] and positive quantities
to [eps, inf) with eps = the dtype's machine epsilon before any log, division or
square root, so no loss ever returns NaN for finite inputs.
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from .registry import Configurable, Registry, check_number

LOSSES: Registry[Loss] = Registry("loss")


def eps_of(a: np.ndarray) -> float:
    """Machine epsilon of a's floating dtype (float32 -> 1.19e-7, float64 -> 2.2e-16)."""
    return float(np.finfo(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64).eps)


class Loss(Configurable):
    """Base class.

    Attributes
    ----------
    fused_with : frozenset of str
        Output activations for which dC/dz simplifies to ``scale * (a - y)``; the
        network then skips the activation's backward.
    decomposable : bool
        True when C is a mean of per-sample costs (every loss but RMSE).
    """

    fused_with: ClassVar[frozenset[str]] = frozenset()
    decomposable: ClassVar[bool] = True

    def per_sample(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """C_x for each row: a, y of shape (n_samples, n_outputs) -> (n_samples,)."""
        raise NotImplementedError

    def total(self, a: np.ndarray, y: np.ndarray) -> float:
        """sum_x C_x (what data-parallel ranks add up)."""
        return float(self.per_sample(a, y).sum())

    def __call__(self, a: np.ndarray, y: np.ndarray) -> float:
        """The mean cost C over the rows of a."""
        return self.total(a, y) / a.shape[0]

    def grad(self, a: np.ndarray, y: np.ndarray, scale: float | None = None,
             out: np.ndarray | None = None) -> np.ndarray:
        """``scale * dC_x/da`` for every row (scale defaults to 1/n: the gradient of C)."""
        raise NotImplementedError

    def fused_grad(self, a: np.ndarray, y: np.ndarray, scale: float,
                   out: np.ndarray | None = None) -> np.ndarray:
        """dC/dz for a fused output activation: ``scale * (a - y)``."""
        out = np.subtract(a, y, out=out)
        np.multiply(out, scale, out=out)
        return out

    def total_from_logits(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> float:
        """sum_x C_x given the output layer's z as well; fused losses override this
        with a form that is exact where a saturates."""
        return self.total(a, y)


_ZEROS = {np.dtype(np.float32): np.zeros((), np.float32), np.dtype(np.float64): np.zeros((), np.float64)}


def _zero(a: np.ndarray) -> np.ndarray:
    # a 0-d zero of a's dtype: a Python 0.0 operand is converted on every call
    return _ZEROS.get(a.dtype, 0.0)


def _scale(a: np.ndarray, scale: float | None) -> float:
    return 1.0 / a.shape[0] if scale is None else scale


@LOSSES.register
class MeanSquaredError(Loss):
    r"""Quadratic cost with the notes' one-half factor.

    .. math:: C_x = \tfrac12 \sum_j (a_j - y_j)^2, \qquad \nabla_a C_x = a - y

    Identity + MSE is fused: dC/dz = a - y.
    """

    name = "mse"
    fused_with = frozenset({"identity"})

    def per_sample(self, a, y):
        d = a - y
        return 0.5 * np.einsum("ij,ij->i", d, d)

    def total(self, a, y):
        d = (a - y).ravel()
        return 0.5 * float(np.dot(d, d))

    def grad(self, a, y, scale=None, out=None):
        return self.fused_grad(a, y, _scale(a, scale), out)


@LOSSES.register
class BinaryCrossEntropy(Loss):
    r"""Cross-entropy (Bernoulli negative log-likelihood) over independent outputs.

    .. math:: C_x = -\sum_j [y_j \ln a_j + (1-y_j)\ln(1-a_j)], \qquad
              \nabla_a C_x = \frac{a - y}{a(1-a)}

    a is clipped to [eps, 1-eps]. Sigmoid + BCE is fused (dC/dz = a - y) and its
    value is computed from the logits as sum(logaddexp(0, z) - y z), exact even
    where the sigmoid saturates.
    """

    name = "binary_cross_entropy"
    fused_with = frozenset({"sigmoid"})

    def per_sample(self, a, y):
        e = eps_of(a)
        a = np.clip(a, e, 1.0 - e)
        return -(y * np.log(a) + (1.0 - y) * np.log1p(-a)).sum(axis=1)

    def grad(self, a, y, scale=None, out=None):
        e = eps_of(a)
        ac = np.clip(a, e, 1.0 - e)
        out = np.subtract(ac, y, out=out)
        out /= ac * (1.0 - ac)
        out *= _scale(a, scale)
        return out

    def total_from_logits(self, z, a, y):
        return float(np.logaddexp(_zero(z), z).sum() - np.dot(y.ravel(), z.ravel()))


@LOSSES.register
class CategoricalCrossEntropy(Loss):
    r"""Categorical cross-entropy for one-hot (or probability) targets.

    .. math:: C_x = -\sum_j y_j \ln a_j, \qquad \nabla_a C_x = -y / a

    a is clipped to [eps, 1], so a confidently wrong sample costs at most -ln(eps)
    (15.9 in float32). Softmax + categorical CE is fused: dC/dz = a - y, and its
    value is computed from the logits as sum(sum_j y_j * logsumexp(z) - y . z),
    exact even where the softmax saturates.
    """

    name = "categorical_cross_entropy"
    fused_with = frozenset({"softmax"})

    def per_sample(self, a, y):
        return -(y * np.log(np.clip(a, eps_of(a), 1.0))).sum(axis=1)

    def total(self, a, y):
        return -float(np.dot(y.ravel(), np.log(np.clip(a, eps_of(a), 1.0)).ravel()))

    def grad(self, a, y, scale=None, out=None):
        out = np.divide(y, np.clip(a, eps_of(a), 1.0), out=out)
        np.multiply(out, -_scale(a, scale), out=out)
        return out

    def total_from_logits(self, z, a, y):
        # -ln softmax(z)_j = logsumexp(z) - z_j, exact where a saturates (a_j = 0
        # would otherwise be clipped to eps and cap the cost at -ln eps).
        m = z.max(axis=1)
        lse = np.log(np.exp(z - m[:, None]).sum(axis=1)) + m
        return float(np.dot(y.sum(axis=1), lse) - np.dot(y.ravel(), z.ravel()))


def _positive(x: np.ndarray, eps: float) -> np.ndarray:
    """x clipped to [eps, inf): a new array, safe for log, division and sqrt."""
    return np.maximum(x, eps)


def _xlogx(y: np.ndarray) -> np.ndarray:
    """Elementwise y ln y with 0 ln 0 = 0; y is expected to be >= 0."""
    out = np.zeros_like(y)
    # log only where y > 0: evaluating log(0) and masking afterwards would warn
    np.log(y, out=out, where=y > 0)
    out *= y
    return out


@LOSSES.register
class Exponential(Loss):
    r"""Exponential cost.

    .. math:: C_x = \tau \exp\Bigl(\tfrac{1}{\tau} \sum_j (a_j - y_j)^2\Bigr), \qquad
              \nabla_a C_x = \tfrac{2}{\tau} (a - y)\, C_x

    Parameters
    ----------
    tau : float, default 1.0
        Temperature, > 0. Small tau punishes large errors very steeply.

    Notes
    -----
    The exponent is capped at half the log of the dtype's largest float (44.4 in
    float32, 354.9 in float64), so C_x <= tau * sqrt(max float) stays finite and
    the gradient, the formula above evaluated at the capped C_x, stays finite while
    |a - y| < sqrt(max float) / 2 (the same range as the sum of squares itself).
    """

    name = "exponential"
    config_keys = ("tau",)

    def __init__(self, tau: float = 1.0) -> None:
        self.tau = check_number("tau", tau, low=0.0, low_open=True)

    def _exponent(self, d: np.ndarray) -> np.ndarray:
        """min(sum_j d_j^2 / tau, cap) per row, as a new array."""
        t = np.einsum("ij,ij->i", d, d)
        big = float(np.finfo(t.dtype).max)
        # Cap before dividing so a tiny tau cannot overflow the division either;
        # the bound itself must be representable in t's dtype.
        np.minimum(t, min(self.tau * 0.5 * math.log(big), big), out=t)
        t /= self.tau
        return t

    def per_sample(self, a, y):
        t = self._exponent(a - y)
        np.exp(t, out=t)
        t *= self.tau
        return t

    def grad(self, a, y, scale=None, out=None):
        out = np.subtract(a, y, out=out)
        f = self._exponent(out)
        # (2/tau) * C_x = 2 exp(t): tau cancels, one multiply saved per row
        np.exp(f, out=f)
        f *= 2.0 * _scale(a, scale)
        out *= f[:, None]
        return out


@LOSSES.register
class Hellinger(Loss):
    r"""Hellinger distance between a and y (both read as non-negative measures).

    .. math:: C_x = \tfrac{1}{\sqrt 2} \sum_j \bigl(\sqrt{a_j} - \sqrt{y_j}\bigr)^2,
              \qquad \nabla_a C_x = \frac{\sqrt a - \sqrt y}{\sqrt 2 \sqrt a}

    a is clipped to [eps, inf) (the gradient divides by sqrt a) and y to [0, inf).
    """

    name = "hellinger"

    def _diff(self, a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sa = np.sqrt(_positive(a, eps_of(a)))
        return sa, sa - np.sqrt(np.maximum(y, 0.0))

    def per_sample(self, a, y):
        _, d = self._diff(a, y)
        return np.einsum("ij,ij->i", d, d) / math.sqrt(2.0)

    def grad(self, a, y, scale=None, out=None):
        sa, d = self._diff(a, y)
        out = np.divide(d, sa, out=out)
        out *= _scale(a, scale) / math.sqrt(2.0)
        return out


@LOSSES.register
class KLDivergence(Loss):
    r"""Kullback-Leibler divergence of a from the target distribution y.

    .. math:: C_x = \sum_j y_j \ln \frac{y_j}{a_j}, \qquad \nabla_a C_x = -\frac{y}{a}

    Terms with y_j = 0 contribute 0 (the convention 0 ln 0 = 0). a is clipped to
    [eps, inf) and y to [0, inf). For one-hot y this equals categorical
    cross-entropy; in general it is CE minus the (constant) entropy of y.
    """

    name = "kl_divergence"

    def per_sample(self, a, y):
        yc = np.maximum(y, 0.0)
        c = _xlogx(yc)
        c -= yc * np.log(_positive(a, eps_of(a)))
        return c.sum(axis=1)

    def grad(self, a, y, scale=None, out=None):
        out = np.divide(np.maximum(y, 0.0), _positive(a, eps_of(a)), out=out)
        out *= -_scale(a, scale)
        return out


@LOSSES.register
class GeneralizedKLDivergence(Loss):
    r"""Generalized Kullback-Leibler (I-) divergence for unnormalised non-negative data.

    .. math:: C_x = \sum_j \Bigl[y_j \ln \frac{y_j}{a_j} - y_j + a_j\Bigr], \qquad
              \nabla_a C_x = 1 - \frac{y}{a}

    0 ln 0 = 0; a is clipped to [eps, inf) and y to [0, inf). C_x >= 0 with
    equality iff a = y, even when neither sums to 1.
    """

    name = "generalized_kl"

    def per_sample(self, a, y):
        yc = np.maximum(y, 0.0)
        ac = _positive(a, eps_of(a))
        c = _xlogx(yc)
        c -= yc * np.log(ac)
        c -= yc
        c += ac
        return c.sum(axis=1)

    def grad(self, a, y, scale=None, out=None):
        out = np.divide(np.maximum(y, 0.0), _positive(a, eps_of(a)), out=out)
        np.subtract(1.0, out, out=out)
        out *= _scale(a, scale)
        return out


@LOSSES.register
class ItakuraSaito(Loss):
    r"""Itakura-Saito divergence (scale-invariant, for positive spectra and variances).

    .. math:: C_x = \sum_j \Bigl[\frac{y_j}{a_j} - \ln \frac{y_j}{a_j} - 1\Bigr],
              \qquad \nabla_a C_x = \frac{a - y}{a^2}

    Both a and y are clipped to [eps, inf): unlike KL, y = 0 has no finite limit.
    """

    name = "itakura_saito"

    def _ratio(self, a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = eps_of(a)
        ac = _positive(a, e)
        return ac, _positive(y, e) / ac

    def per_sample(self, a, y):
        _, r = self._ratio(a, y)
        c = r - np.log(r)
        c -= 1.0
        return c.sum(axis=1)

    def grad(self, a, y, scale=None, out=None):
        ac, r = self._ratio(a, y)
        # (a - y)/a^2 = (1 - y/a)/a: never forms a^2, which underflows in float32
        out = np.subtract(1.0, r, out=out)
        out /= ac
        out *= _scale(a, scale)
        return out


@LOSSES.register
class MeanAbsoluteError(Loss):
    r"""Mean absolute error; C_x averages over the m outputs so C is the usual MAE.

    .. math:: C_x = \frac1m \sum_j |a_j - y_j|, \qquad
              \nabla_a C_x = \frac{\operatorname{sign}(a - y)}{m}

    The subgradient 0 is used where a == y.
    """

    name = "mae"

    def per_sample(self, a, y):
        d = np.subtract(a, y)
        np.abs(d, out=d)
        return d.sum(axis=1) / a.shape[1]

    def grad(self, a, y, scale=None, out=None):
        out = np.subtract(a, y, out=out)
        np.sign(out, out=out)
        out *= _scale(a, scale) / a.shape[1]
        return out


@LOSSES.register
class RootMeanSquaredError(Loss):
    r"""Root mean squared error over all n * m entries of the batch.

    .. math:: C = \sqrt{\frac{1}{nm} \sum_{x,j} (a_{xj} - y_{xj})^2}, \qquad
              \frac{\partial C}{\partial a} = \frac{a - y}{n m C}

    C is not a mean of per-sample costs (``decomposable = False``), so:

    * ``per_sample`` raises NotImplementedError: no C_x exists whose mean is C;
    * ``total`` returns n * C, so that ``__call__`` (= total / n) is C, but totals
      of different batches do **not** add up to the total of their union;
    * ``grad(a, y, scale)`` returns ``scale * n * dC/da``, so the default
      scale = 1/n gives exactly dC/da (what the network passes for one batch).
      Summing rows computed on data-parallel shards does not give the global
      gradient; shards must share their sums of squares instead.

    Where C == 0 the gradient is taken as 0 (C is not differentiable there).
    Squares are formed after dividing by max |a - y|, so C and its gradient are
    finite for every finite a - y.
    """

    name = "rmse"
    decomposable = False

    def _scaled(self, a: np.ndarray, y: np.ndarray, out: np.ndarray | None = None
                ) -> tuple[np.ndarray, float, float]:
        """(u, r, q): u = (a - y) / r with r = max |a - y| (1 if 0), q = sum u^2."""
        u = np.subtract(a, y, out=out)
        r = float(np.max(np.abs(u))) if u.size else 0.0
        if r == 0.0:
            return u, 0.0, 0.0
        # dividing first keeps the sum of squares in [1, n m]: no overflow or underflow
        u /= r
        flat = u.ravel()
        return u, r, float(np.dot(flat, flat))

    def per_sample(self, a, y):
        raise NotImplementedError(
            "rmse is not a mean of per-sample costs (decomposable = False); "
            "use total() or __call__() on the whole batch"
        )

    def __call__(self, a, y):
        _, r, q = self._scaled(a, y)
        return r * math.sqrt(q / a.size) if q else 0.0

    def total(self, a, y):
        return a.shape[0] * self(a, y)

    def grad(self, a, y, scale=None, out=None):
        u, _, q = self._scaled(a, y, out)
        if q == 0.0:
            u[...] = 0.0
            return u
        # dC/da = (a - y) / (n m C) = u / sqrt(q n m) with u = (a - y) / r
        f = 1.0 / math.sqrt(q * a.size)
        if scale is not None:
            f *= scale * a.shape[0]
        u *= f
        return u
