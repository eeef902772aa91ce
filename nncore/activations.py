"""Activation functions (section 7 of the notes), each with its derivative.

Every activation is one small class registered by name in :data:`ACTIVATIONS`.
``forward`` writes f(z) into a caller-owned buffer; ``backward`` is the
vector-Jacobian product dC/dz = J_f(z)^T dC/da, so row-wise functions (softmax)
are exact, not elementwise approximations. Learnable parameters (PReLU's alpha,
PELU's a and b, SoftExponential's alpha) are vectors of shape (units,) living in
the network's flat parameter buffer; ``backward`` writes their gradients, summed
over the batch, into the matching views of the flat gradient buffer.

All in-place work is done with ``out=`` so the training loop allocates nothing.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .registry import Configurable, Registry, check, check_number
from .special import erf

ACTIVATIONS: Registry[Activation] = Registry("activation")


class Activation(Configurable):
    """Base class.

    Attributes
    ----------
    params : tuple of str
        Names of learnable parameters; each is an array of shape (units,).
    elementwise : bool
        True when f acts on each element independently, so :meth:`derivative` exists.
    """

    params: ClassVar[tuple[str, ...]] = ()
    elementwise: ClassVar[bool] = True
    stochastic: ClassVar[bool] = False

    def __init__(self) -> None:
        self.p: dict[str, np.ndarray] = {}
        self.g: dict[str, np.ndarray] = {}

    # -- learnable parameters -------------------------------------------------
    def initial_values(self) -> dict[str, float]:
        """Initial value of each learnable parameter (broadcast over units)."""
        return {}

    def bind(self, values: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Attach views of the flat parameter and gradient buffers, each shape (units,)."""
        self.p, self.g = values, grads

    def build(self, units: int, dtype: Any = np.float64) -> Activation:
        """Give a standalone activation its own parameter arrays (tests, notebooks)."""
        init = self.initial_values()
        self.bind({k: np.full(units, init[k], dtype=dtype) for k in self.params},
                  {k: np.zeros(units, dtype=dtype) for k in self.params})
        return self

    # -- maths ------------------------------------------------------------------
    def forward(self, z: np.ndarray, out: np.ndarray | None = None, training: bool = False,
                rng: np.random.Generator | None = None) -> np.ndarray:
        """f(z) for z of shape (n_samples, units), written into ``out`` and returned.

        ``out`` may be a strided view; it never aliases ``z``.
        """
        raise NotImplementedError

    def backward(self, z: np.ndarray, a: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """dC/dz given dC/da (``grad``), z and a = f(z) from the last forward.

        May overwrite ``grad`` and return it. Writes learnable-parameter gradients
        (summed over samples) into ``self.g``.
        """
        np.multiply(grad, self.derivative(z, a), out=grad)
        return grad

    def derivative(self, z: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
        """Elementwise f'(z) (``a`` = f(z) may be passed to save work)."""
        raise NotImplementedError(f"{self.name} has no elementwise derivative")

    def __call__(self, z: np.ndarray, training: bool = False,
                 rng: np.random.Generator | None = None) -> np.ndarray:
        return self.forward(z, np.empty_like(z), training=training, rng=rng)


def _out(z: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    return np.empty_like(z) if out is None else out


@ACTIVATIONS.register
class Identity(Activation):
    """f(z) = z, for regression outputs. Identity + MSE uses the fused gradient a - y."""

    name = "identity"

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.copyto(out, z)
        return out

    def backward(self, z, a, grad):
        return grad

    def derivative(self, z, a=None):
        return np.ones_like(z)


@ACTIVATIONS.register
class Sigmoid(Activation):
    r"""Logistic sigmoid.

    .. math:: \sigma(z) = 1 / (1 + e^{-z}),\quad \sigma'(z) = \sigma(z)(1-\sigma(z))

    Computed as 0.5 + 0.5 tanh(z/2), which never overflows.
    """

    name = "sigmoid"

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.multiply(z, 0.5, out=out)
        np.tanh(out, out=out)
        np.multiply(out, 0.5, out=out)
        np.add(out, 0.5, out=out)
        return out

    def backward(self, z, a, grad):
        # grad * a * (1 - a), two temporaries avoided by working in grad
        np.multiply(grad, a, out=grad)
        tmp = np.subtract(1.0, a)
        np.multiply(grad, tmp, out=grad)
        return grad

    def derivative(self, z, a=None):
        if a is None:
            a = self(z)
        return a * (1.0 - a)


@ACTIVATIONS.register
class Tanh(Activation):
    r"""Hyperbolic tangent, :math:`\tanh'(z) = 1 - \tanh^2(z)`."""

    name = "tanh"

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.tanh(z, out=out)
        return out

    def derivative(self, z, a=None):
        if a is None:
            a = np.tanh(z)
        return 1.0 - a * a


@ACTIVATIONS.register
class ReLU(Activation):
    r"""max(0, z); derivative 1 for z > 0 and 0 otherwise (0 at the kink)."""

    name = "relu"

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.maximum(z, 0.0, out=out)
        return out

    def backward(self, z, a, grad):
        np.multiply(grad, z > 0, out=grad)
        return grad

    def derivative(self, z, a=None):
        return (z > 0).astype(z.dtype)


@ACTIVATIONS.register
class Softmax(Activation):
    r"""Row-wise softmax, stable (the row max is subtracted first).

    Its Jacobian is full, so ``backward`` is the exact vector-Jacobian product

    .. math:: \partial C/\partial z = a \odot (g - \textstyle\sum_j g_j a_j).

    Softmax + categorical cross-entropy uses the fused gradient a - y instead.
    """

    name = "softmax"
    elementwise = False

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.subtract(z, z.max(axis=1, keepdims=True), out=out)
        np.exp(out, out=out)
        np.divide(out, out.sum(axis=1, keepdims=True), out=out)
        return out

    def backward(self, z, a, grad):
        s = np.einsum("ij,ij->i", grad, a)[:, None]
        np.subtract(grad, s, out=grad)
        np.multiply(grad, a, out=grad)
        return grad


# -- helpers shared by the activations below ------------------------------------------

def _eps(z: np.ndarray) -> float:
    """Machine epsilon of z's floating dtype."""
    return float(np.finfo(z.dtype).eps)


def _piecewise_derivative(z: np.ndarray, slope: Any, at_positive: float = 1.0) -> np.ndarray:
    """``at_positive`` where z > 0, ``slope`` (scalar or broadcastable array) elsewhere."""
    d = np.empty_like(z)
    d[...] = slope
    np.copyto(d, at_positive, where=z > 0)
    return d


def _elu_forward(z: np.ndarray, out: np.ndarray, alpha: float, scale: float) -> np.ndarray:
    # exp only ever sees min(z, 0), so large positive z cannot overflow
    np.minimum(z, 0.0, out=out)
    np.expm1(out, out=out)
    np.multiply(out, alpha * scale, out=out)
    np.multiply(z, scale, out=out, where=z > 0)
    return out


def _elu_derivative(z: np.ndarray, a: np.ndarray, alpha: float, scale: float) -> np.ndarray:
    # on z <= 0, f' = scale alpha e^z = a + scale alpha: no second exp
    d = np.add(a, alpha * scale)
    np.copyto(d, scale, where=z > 0)
    return d


def _column_mask(mask: np.ndarray) -> np.ndarray | bool | None:
    """A per-unit mask as a ``where=`` argument: None if no unit, True if every unit."""
    if not mask.any():
        return None
    return True if mask.all() else mask


# -- ReLU family ------------------------------------------------------------------------

@ACTIVATIONS.register
class LeakyReLU(Activation):
    r"""ReLU with a small fixed slope for negative inputs (Maas et al. 2013).

    .. math:: f(z) = \begin{cases} z & z > 0 \\ \alpha z & z \le 0 \end{cases},\quad
              f'(z) = \begin{cases} 1 & z > 0 \\ \alpha & z \le 0 \end{cases}

    Parameters
    ----------
    alpha : float, default 0.01
        Negative slope, 0 <= alpha < 1.
    """

    name = "leaky_relu"
    config_keys = ("alpha",)

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = check_number("alpha", alpha, low=0.0, high=1.0, high_open=True)

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        # alpha < 1 makes f(z) = max(z, alpha z): two calls, no mask
        np.multiply(z, self.alpha, out=out)
        np.maximum(out, z, out=out)
        return out

    def backward(self, z, a, grad):
        np.multiply(grad, self.alpha, out=grad, where=z <= 0)
        return grad

    def derivative(self, z, a=None):
        return _piecewise_derivative(z, self.alpha)


@ACTIVATIONS.register
class PReLU(Activation):
    r"""Parametric ReLU (He et al. 2015): a learnable negative slope per unit.

    .. math:: f(z) = \begin{cases} z & z > 0 \\ \alpha z & z \le 0 \end{cases},\quad
              \frac{\partial f}{\partial \alpha} = \min(z, 0)

    Parameters
    ----------
    alpha : float, default 0.25
        Initial slope of every unit.
    """

    name = "prelu"
    params = ("alpha",)
    config_keys = ("alpha",)

    def __init__(self, alpha: float = 0.25) -> None:
        super().__init__()
        self.alpha = check_number("alpha", alpha)

    def initial_values(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        # a learnt alpha may leave [0, 1), so no max(z, alpha z) shortcut
        np.multiply(z, self.p["alpha"], out=out)
        np.copyto(out, z, where=z > 0)
        return out

    def backward(self, z, a, grad):
        neg = np.minimum(z, 0.0)
        np.multiply(neg, grad, out=neg)
        neg.sum(axis=0, out=self.g["alpha"])
        np.multiply(grad, self.p["alpha"], out=grad, where=z <= 0)
        return grad

    def derivative(self, z, a=None):
        return _piecewise_derivative(z, self.p["alpha"])


@ACTIVATIONS.register
class RReLU(Activation):
    r"""Randomized leaky ReLU (Xu et al. 2015).

    .. math:: f(z) = \begin{cases} z & z > 0 \\ s z & z \le 0 \end{cases},\qquad
              s \sim U(\text{lower}, \text{upper})\ \text{(training)},\quad
              s = \tfrac{\text{lower} + \text{upper}}{2}\ \text{(evaluation)}

    In training every element draws its own slope from the ``rng`` given to
    :meth:`forward`; the slopes are kept in ``self.slope`` (a buffer reused by the
    next training forward) so :meth:`backward` uses exactly the same ones.

    Parameters
    ----------
    lower, upper : float, default 1/8 and 1/3
        Range of the slopes, 0 <= lower <= upper < 1.
    """

    name = "rrelu"
    stochastic = True
    config_keys = ("lower", "upper")

    def __init__(self, lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0) -> None:
        super().__init__()
        self.lower = check_number("lower", lower, low=0.0, high=1.0, high_open=True)
        self.upper = check_number("upper", upper, low=0.0, high=1.0, high_open=True)
        check(self.lower <= self.upper,
              f"`lower` must be <= `upper`, got lower={lower!r}, upper={upper!r}")
        self.slope: np.ndarray | float = 0.5 * (self.lower + self.upper)
        self._noise: np.ndarray | None = None

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        if training:
            if rng is None:
                raise ValueError("rrelu needs `rng` when training=True")
            # Generator.random fills float32/float64 in place: no allocation per step
            dtype = z.dtype if z.dtype in (np.float32, np.float64) else np.dtype(np.float64)
            s = self._noise
            if s is None or s.shape != z.shape or s.dtype != dtype:
                s = self._noise = np.empty(z.shape, dtype=dtype)
            rng.random(out=s, dtype=dtype)
            s *= self.upper - self.lower
            s += self.lower
            self.slope = s
        else:
            self.slope = 0.5 * (self.lower + self.upper)
        # every slope is in [0, 1), so f(z) = max(z, s z)
        np.multiply(z, self.slope, out=out)
        np.maximum(out, z, out=out)
        return out

    def backward(self, z, a, grad):
        np.multiply(grad, self.slope, out=grad, where=z <= 0)
        return grad

    def derivative(self, z, a=None):
        """f'(z) with the slopes of the last forward (the mean slope before any)."""
        return _piecewise_derivative(z, self.slope)


# -- exponential linear units -----------------------------------------------------------

@ACTIVATIONS.register
class ELU(Activation):
    r"""Exponential linear unit (Clevert et al. 2016).

    .. math:: f(z) = \begin{cases} z & z > 0 \\ \alpha (e^z - 1) & z \le 0 \end{cases},\quad
              f'(z) = \begin{cases} 1 & z > 0 \\ f(z) + \alpha & z \le 0 \end{cases}

    Parameters
    ----------
    alpha : float, default 1.0
        Saturation value -alpha for z -> -inf, alpha >= 0.
    """

    name = "elu"
    config_keys = ("alpha",)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = check_number("alpha", alpha, low=0.0)

    def forward(self, z, out=None, training=False, rng=None):
        return _elu_forward(z, _out(z, out), self.alpha, 1.0)

    def backward(self, z, a, grad):
        np.multiply(grad, np.add(a, self.alpha), out=grad, where=z <= 0)
        return grad

    def derivative(self, z, a=None):
        if a is None:
            a = self(z)
        return _elu_derivative(z, a, self.alpha, 1.0)


@ACTIVATIONS.register
class SELU(Activation):
    r"""Scaled ELU (Klambauer et al. 2017), self-normalising with these constants.

    .. math:: f(z) = \lambda \begin{cases} z & z > 0 \\ \alpha (e^z - 1) & z \le 0 \end{cases},
              \quad \alpha = 1.6732632423543772\ldots,\ \lambda = 1.0507009873554804\ldots
    """

    name = "selu"
    ALPHA: ClassVar[float] = 1.6732632423543772848170429916717
    SCALE: ClassVar[float] = 1.0507009873554804934193349852946

    def forward(self, z, out=None, training=False, rng=None):
        return _elu_forward(z, _out(z, out), self.ALPHA, self.SCALE)

    def backward(self, z, a, grad):
        np.multiply(grad, _elu_derivative(z, a, self.ALPHA, self.SCALE), out=grad)
        return grad

    def derivative(self, z, a=None):
        if a is None:
            a = self(z)
        return _elu_derivative(z, a, self.ALPHA, self.SCALE)


@ACTIVATIONS.register
class PELU(Activation):
    r"""Parametric ELU (Trottier et al. 2017): learnable a, b > 0 per unit.

    .. math:: f(z) = \begin{cases} \frac{a}{b} z & z \ge 0 \\
                                   a (e^{z/b} - 1) & z < 0 \end{cases}

    With u = z/b, g(u) = u (u >= 0) or e^u - 1 (u < 0), f = a g(u) and

    .. math:: \frac{\partial f}{\partial z} = \frac{a}{b} e^{\min(u, 0)},\quad
              \frac{\partial f}{\partial a} = g(u),\quad
              \frac{\partial f}{\partial b} = -\frac{z}{b} \frac{\partial f}{\partial z}

    The branch is chosen by the sign of z, as in the paper. Keeping a and b
    positive during training (the paper clips them) is the optimiser's job.

    Parameters
    ----------
    a, b : float, default 1.0
        Initial values of every unit's a and b, both > 0.
    """

    name = "pelu"
    params = ("a", "b")
    config_keys = ("a", "b")

    def __init__(self, a: float = 1.0, b: float = 1.0) -> None:
        super().__init__()
        self.a = check_number("a", a, low=0.0, low_open=True)
        self.b = check_number("b", b, low=0.0, low_open=True)

    def initial_values(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b}

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.divide(z, self.p["b"], out=out)
        # expm1 only where z < 0: accurate near 0 and never overflows
        np.expm1(out, out=out, where=z < 0)
        np.multiply(out, self.p["a"], out=out)
        return out

    def _dz(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(df/dz, g(z/b)) as two new arrays."""
        pa, pb = self.p["a"], self.p["b"]
        d = np.minimum(z, 0.0)
        np.divide(d, pb, out=d)
        np.expm1(d, out=d)                    # e^{min(u,0)} - 1: g(u) on z < 0, 0 on z >= 0
        gu = np.maximum(z, 0.0)
        np.divide(gu, pb, out=gu)
        np.add(gu, d, out=gu)                 # g(u) on both branches
        d += 1.0
        np.multiply(d, pa / pb, out=d)
        return d, gu

    def backward(self, z, a, grad):
        d, gu = self._dz(z)
        np.multiply(gu, grad, out=gu)
        gu.sum(axis=0, out=self.g["a"])
        np.multiply(grad, d, out=grad)        # dC/dz
        np.multiply(grad, z, out=d)
        gb = self.g["b"]
        d.sum(axis=0, out=gb)
        np.divide(gb, self.p["b"], out=gb)
        np.negative(gb, out=gb)
        return grad

    def derivative(self, z, a=None):
        return self._dz(z)[0]


@ACTIVATIONS.register
class ISRLU(Activation):
    r"""Inverse square root linear unit (Carlile et al. 2017).

    .. math:: f(z) = \begin{cases} z & z \ge 0 \\ z / \sqrt{1 + \alpha z^2} & z < 0 \end{cases},
              \quad f'(z) = \begin{cases} 1 & z \ge 0 \\ (1 + \alpha z^2)^{-3/2} & z < 0 \end{cases}

    sqrt(1 + alpha z^2) is computed as hypot(1, sqrt(alpha) z), which cannot overflow.

    Parameters
    ----------
    alpha : float, default 1.0
        The negative branch saturates at -1/sqrt(alpha); alpha > 0.
    """

    name = "isrlu"
    config_keys = ("alpha",)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = check_number("alpha", alpha, low=0.0, low_open=True)

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.multiply(z, math.sqrt(self.alpha), out=out)
        np.hypot(out, 1.0, out=out)
        np.divide(z, out, out=out)
        # z / sqrt(1 + alpha z^2) is <= z for z >= 0 and > z for z < 0
        np.maximum(out, z, out=out)
        return out

    def _inv_sqrt_denominator(self, z: np.ndarray) -> np.ndarray:
        """sqrt(1 + alpha min(z, 0)^2): 1 on the linear branch."""
        s = np.minimum(z, 0.0)
        np.multiply(s, math.sqrt(self.alpha), out=s)
        np.hypot(s, 1.0, out=s)
        return s

    def backward(self, z, a, grad):
        s = self._inv_sqrt_denominator(z)
        # three divides rather than s**3, which overflows for huge |z|
        np.divide(grad, s, out=grad)
        np.divide(grad, s, out=grad)
        np.divide(grad, s, out=grad)
        return grad

    def derivative(self, z, a=None):
        s = self._inv_sqrt_denominator(z)
        d = np.power(s, -3.0, out=s)
        return d


# -- smooth activations -------------------------------------------------------------------

@ACTIVATIONS.register
class Swish(Activation):
    r"""Swish (Ramachandran et al. 2017) with a fixed beta.

    .. math:: f(z) = z \sigma(\beta z),\quad
              f'(z) = \sigma(\beta z) + \beta f(z) (1 - \sigma(\beta z))

    sigma is evaluated as 0.5 + 0.5 tanh(beta z / 2), which never overflows.

    Parameters
    ----------
    beta : float, default 1.0
        Fixed (not learnt) sharpness; beta = 1 is swish1/SiLU, beta -> inf tends to ReLU.
    """

    name = "swish"
    config_keys = ("beta",)

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = check_number("beta", beta)

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        # z sigma(beta z) = 0.5 z (1 + tanh(beta z / 2))
        np.multiply(z, 0.5 * self.beta, out=out)
        np.tanh(out, out=out)
        out += 1.0
        np.multiply(out, z, out=out)
        out *= 0.5
        return out

    def derivative(self, z, a=None):
        if a is None:
            a = self(z)
        # with w = 1 - tanh(beta z / 2) = 2 (1 - sigma): f' = 1 + w (beta a - 1) / 2
        w = np.multiply(z, 0.5 * self.beta)
        np.tanh(w, out=w)
        np.subtract(1.0, w, out=w)
        u = np.multiply(a, 0.5 * self.beta)
        u -= 0.5
        np.multiply(w, u, out=w)
        w += 1.0
        return w

    def backward(self, z, a, grad):
        np.multiply(grad, self.derivative(z, a), out=grad)
        return grad


@ACTIVATIONS.register
class Swish1(Swish):
    r"""Swish with beta = 1, also called SiLU (sigmoid-weighted linear unit).

    .. math:: f(z) = z \sigma(z),\quad f'(z) = \sigma(z) + f(z)(1 - \sigma(z))
    """

    name = "swish1"
    config_keys = ()

    def __init__(self) -> None:
        super().__init__(beta=1.0)


@ACTIVATIONS.register
class Softplus(Activation):
    r"""Smooth ReLU.

    .. math:: f(z) = \ln(1 + e^z),\quad f'(z) = \sigma(z) = e^{z - f(z)}

    Computed as logaddexp(0, z), which never overflows.
    """

    name = "softplus"

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.logaddexp(0.0, z, out=out)
        return out

    def derivative(self, z, a=None):
        if a is None:
            a = self(z)
        # sigma(z) = e^z / (1 + e^z) = exp(z - f(z)); z - f(z) <= 0 cannot overflow
        d = np.subtract(z, a)
        np.exp(d, out=d)
        return d

    def backward(self, z, a, grad):
        np.multiply(grad, self.derivative(z, a), out=grad)
        return grad


@ACTIVATIONS.register
class Arctan(Activation):
    r"""Inverse tangent, a bounded sigmoid-shaped function with range (-pi/2, pi/2).

    .. math:: f(z) = \arctan z,\quad f'(z) = \frac{1}{1 + z^2}
    """

    name = "arctan"

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.arctan(z, out=out)
        return out

    def backward(self, z, a, grad):
        t = np.multiply(z, z)
        t += 1.0
        np.divide(grad, t, out=grad)
        return grad

    def derivative(self, z, a=None):
        d = np.multiply(z, z)
        d += 1.0
        np.reciprocal(d, out=d)
        return d


@ACTIVATIONS.register
class GELU(Activation):
    r"""Gaussian error linear unit (Hendrycks & Gimpel 2016).

    .. math:: f(z) = z \Phi(z) = \tfrac12 z (1 + \operatorname{erf}(z/\sqrt2)),\quad
              f'(z) = \Phi(z) + z \varphi(z)

    With ``approximate=True`` the tanh approximation
    :math:`\tfrac12 z (1 + \tanh(\sqrt{2/\pi}(z + 0.044715 z^3)))` is used, and
    :meth:`derivative` is the exact derivative of that formula.

    Parameters
    ----------
    approximate : bool, default False
        Use the tanh approximation instead of erf.
    """

    name = "gelu"
    config_keys = ("approximate",)
    _C: ClassVar[float] = 0.044715
    _K: ClassVar[float] = math.sqrt(2.0 / math.pi)

    def __init__(self, approximate: bool = False) -> None:
        super().__init__()
        check(isinstance(approximate, bool), f"`approximate` must be a bool, got {approximate!r}")
        self.approximate = approximate

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        if self.approximate:
            # u = K (z + C z^3) = z (K + C K z^2)
            np.multiply(z, z, out=out)
            np.multiply(out, self._C * self._K, out=out)
            out += self._K
            np.multiply(out, z, out=out)
            np.tanh(out, out=out)
        else:
            np.multiply(z, math.sqrt(0.5), out=out)
            erf(out, out=out)
        out += 1.0
        np.multiply(out, z, out=out)
        out *= 0.5
        return out

    def derivative(self, z, a=None):
        if self.approximate:
            # f = z h, h = (1 + tanh u)/2, u' = K (1 + 3 C z^2); with w = 1 - h:
            # f' = h + z u' 2 h w = (1 - w)(1 + 2 z u' w)
            t = np.multiply(z, z)
            w = np.multiply(t, self._C * self._K)
            w += self._K
            np.multiply(w, z, out=w)
            np.tanh(w, out=w)
            np.multiply(w, -0.5, out=w)
            w += 0.5
            np.multiply(t, 6.0 * self._C * self._K, out=t)
            t += 2.0 * self._K
            np.multiply(t, z, out=t)
            np.multiply(t, w, out=t)
            t += 1.0
            np.subtract(1.0, w, out=w)
            np.multiply(t, w, out=t)
            return t
        # Phi(z) + z phi(z), phi(z) = exp(-z^2/2) / sqrt(2 pi)
        d = np.multiply(z, math.sqrt(0.5))
        erf(d, out=d)
        np.multiply(d, 0.5, out=d)
        d += 0.5
        p = np.multiply(z, z)
        np.multiply(p, -0.5, out=p)
        np.exp(p, out=p)
        np.multiply(p, z, out=p)
        np.multiply(p, 1.0 / math.sqrt(2.0 * math.pi), out=p)
        d += p
        return d

    def backward(self, z, a, grad):
        np.multiply(grad, self.derivative(z, a), out=grad)
        return grad


@ACTIVATIONS.register
class BipolarSigmoid(Activation):
    r"""Sigmoid rescaled to (-1, 1).

    .. math:: f(z) = \frac{1 - e^{-z}}{1 + e^{-z}} = \tanh(z/2),\quad f'(z) = \tfrac12 (1 - f^2)

    Computed as tanh(z/2), which never overflows.
    """

    name = "bipolar_sigmoid"

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.multiply(z, 0.5, out=out)
        np.tanh(out, out=out)
        return out

    def derivative(self, z, a=None):
        if a is None:
            a = self(z)
        d = np.multiply(a, a)
        np.multiply(d, -0.5, out=d)
        d += 0.5
        return d

    def backward(self, z, a, grad):
        np.multiply(grad, self.derivative(z, a), out=grad)
        return grad


@ACTIVATIONS.register
class SoftExponential(Activation):
    r"""Soft exponential (Godfrey & Gashler 2015), interpolating log, identity and exp
    with a learnable alpha per unit; each unit's branch follows the sign of its alpha.

    .. math:: f(\alpha, z) = \begin{cases}
                -\ln(1 - \alpha (z + \alpha)) / \alpha & \alpha < 0 \\
                z & \alpha = 0 \\
                (e^{\alpha z} - 1) / \alpha + \alpha & \alpha > 0 \end{cases}

    Derivatives, with L = 1 - alpha (z + alpha) and E = e^{alpha z}:

    .. math:: \frac{\partial f}{\partial z} = \begin{cases} 1/L \\ 1 \\ E \end{cases},\quad
              \frac{\partial f}{\partial \alpha} = \begin{cases}
                ((z + 2\alpha)/L - f) / \alpha & \alpha < 0 \\
                z^2/2 + 1 & \alpha = 0 \\
                (z E - f) / \alpha + 2 & \alpha > 0 \end{cases}

    The alpha = 0 row is the limit of both others (f = z + alpha (z^2/2 + 1) + O(alpha^2)
    on either side), so the gradient is continuous where a unit's alpha changes sign.

    The log branch is only defined for L > 0 (z > 1/alpha - alpha); L is clipped to
    >= eps of the dtype, so there f is the constant -ln(eps)/alpha and the derivatives
    are those of that constant (0 for z, ln(eps)/alpha^2 for alpha). The exp branch
    is not clipped and, like exp, overflows for alpha z >~ 709 (88 in float32).

    Parameters
    ----------
    alpha : float, default 0.0
        Initial alpha of every unit (0 starts as the identity).
    """

    name = "soft_exponential"
    params = ("alpha",)
    config_keys = ("alpha",)

    def __init__(self, alpha: float = 0.0) -> None:
        super().__init__()
        self.alpha = check_number("alpha", alpha)

    def initial_values(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    def _branches(self):
        al = self.p["alpha"]
        pos, neg = al > 0, al < 0
        return al, _column_mask(neg), _column_mask(~(pos | neg)), _column_mask(pos)

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        al, neg, zero, pos = self._branches()
        if zero is not None:
            np.copyto(out, z, where=zero)
        if pos is not None:
            np.multiply(z, al, out=out, where=pos)
            np.expm1(out, out=out, where=pos)
            np.divide(out, al, out=out, where=pos)
            np.add(out, al, out=out, where=pos)
        if neg is not None:
            # v = L - 1 = -alpha z - alpha^2, clipped so that L >= eps; f = log1p(v) / -alpha
            np.multiply(z, -al, out=out, where=neg)
            np.subtract(out, al * al, out=out, where=neg)
            np.maximum(out, _eps(z) - 1.0, out=out, where=neg)
            np.log1p(out, out=out, where=neg)
            np.divide(out, -al, out=out, where=neg)
        return out

    def _grads(self, z: np.ndarray, a: np.ndarray, need_alpha: bool
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """(df/dz, df/dalpha or None) as new arrays; a = f(z)."""
        al, neg, zero, pos = self._branches()
        d = np.ones_like(z)
        h = np.empty_like(z) if need_alpha else None
        if neg is not None:
            # d = L, then 1/L where L >= eps and 0 where the forward clipped it
            np.multiply(z, al, out=d, where=neg)
            np.subtract(1.0 - al * al, d, out=d, where=neg)
            eps = _eps(z)
            clipped = d < eps  # other units still hold 1 here
            np.maximum(d, eps, out=d, where=neg)
            np.reciprocal(d, out=d, where=neg)
            np.copyto(d, 0.0, where=clipped)
            if h is not None:
                np.add(z, 2.0 * al, out=h, where=neg)
                np.multiply(h, d, out=h, where=neg)
                np.subtract(h, a, out=h, where=neg)
                np.divide(h, al, out=h, where=neg)
        if pos is not None:
            np.multiply(z, al, out=d, where=pos)
            np.exp(d, out=d, where=pos)
            if h is not None:
                np.multiply(z, d, out=h, where=pos)
                np.subtract(h, a, out=h, where=pos)
                np.divide(h, al, out=h, where=pos)
                np.add(h, 2.0, out=h, where=pos)
        if zero is not None and h is not None:
            np.multiply(z, z, out=h, where=zero)
            np.multiply(h, 0.5, out=h, where=zero)
            np.add(h, 1.0, out=h, where=zero)
        return d, h

    def backward(self, z, a, grad):
        d, h = self._grads(z, a, need_alpha=True)
        np.multiply(h, grad, out=h)
        h.sum(axis=0, out=self.g["alpha"])
        np.multiply(grad, d, out=grad)
        return grad

    def derivative(self, z, a=None):
        return self._grads(z, a, need_alpha=False)[0]


@ACTIVATIONS.register
class BinaryStep(Activation):
    r"""Heaviside step, as in the perceptron.

    .. math:: f(z) = \begin{cases} 1 & z \ge \theta \\ 0 & z < \theta \end{cases},\quad
              f'(z) = 0

    The derivative is 0 everywhere it exists (undefined at the threshold), so a
    network using it learns nothing by backpropagation below this layer; it is
    trained with the perceptron rule instead.

    Parameters
    ----------
    threshold : float, default 0.0
        theta, the input at which the output switches to 1.
    """

    name = "binary_step"
    config_keys = ("threshold",)

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        self.threshold = check_number("threshold", threshold)

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.greater_equal(z, self.threshold, out=out)
        return out

    def backward(self, z, a, grad):
        grad[...] = 0.0
        return grad

    def derivative(self, z, a=None):
        return np.zeros_like(z)

