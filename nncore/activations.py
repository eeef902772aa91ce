"""Activation functions (section 7 of the notes), each with its derivative.

Every activation is one small class registered by name in :data:`ACTIVATIONS`.
``forward`` writes f(z) into a caller-owned buffer; ``backward`` is the
vector-Jacobian product dC/dz = J_f(z)^T dC/da, so row-wise functions (softmax)
are exact, not elementwise approximations. Elementwise functions derive from
:class:`Elementwise`, which owns ``backward``: each writes f' once, in place.
Learnable parameters (PReLU's alpha, PELU's a and b, SoftExponential's alpha) are
vectors of shape (units,) living in the network's flat parameter buffer; ``backward``
writes their gradients, summed over the batch, into the matching views of the flat
gradient buffer.

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
        True when f acts on each element independently (an :class:`Elementwise`),
        so :meth:`derivative` exists.
    """

    params: ClassVar[tuple[str, ...]] = ()
    elementwise: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False

    def __init__(self) -> None:
        self.p: dict[str, np.ndarray] = {}
        self.g: dict[str, np.ndarray] = {}

    # -- learnable parameters -------------------------------------------------
    def initial_values(self) -> dict[str, float]:
        """Initial value of each learnable parameter (broadcast over units): the
        hyperparameter of the same name."""
        return {k: getattr(self, k) for k in self.params}

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
        raise NotImplementedError

    def derivative(self, z: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
        """Elementwise f'(z) (``a`` = f(z) may be passed to save work)."""
        raise NotImplementedError(f"{self.name} has no elementwise derivative")

    def __call__(self, z: np.ndarray, training: bool = False,
                 rng: np.random.Generator | None = None) -> np.ndarray:
        return self.forward(z, np.empty_like(z), training=training, rng=rng)


class Elementwise(Activation):
    """f acts on each element alone, so J_f is diagonal and dC/dz = f'(z) dC/da.

    A subclass writes f' once, in place: ``_derivative(z, a, out)`` writes f'(z) into
    ``out`` (z's shape, dtype ``derivative_dtype`` or z's) and returns it. In
    :meth:`backward` ``a`` is the forward's output and ``out`` a work array reused
    across calls (no allocation per step); :meth:`derivative` evaluates ``a`` = f(z)
    when it is not given only for classes with ``needs_output`` (else ``a`` may be None).
    Classes with learnable parameters extend :meth:`backward` with their gradients.
    """

    elementwise: ClassVar[bool] = True
    needs_output: ClassVar[bool] = False
    # None: z's dtype. ReLU's 0/1 derivative is a bool mask, 4x smaller than a float one
    derivative_dtype: ClassVar[Any] = None
    _tmp: np.ndarray | None = None

    def backward(self, z, a, grad):
        np.multiply(grad, self._derivative(z, a, self._scratch(z)), out=grad)
        return grad

    def derivative(self, z, a=None):
        if a is None and self.needs_output:
            a = self(z)
        d = self._derivative(z, a, np.empty(z.shape, dtype=self.derivative_dtype or z.dtype))
        return d if d.dtype == z.dtype else d.astype(z.dtype)

    def _derivative(self, z: np.ndarray, a: np.ndarray | None, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _scratch(self, like: np.ndarray) -> np.ndarray:
        """The f' work array for ``like``, reused across calls (no allocation per step)."""
        dtype = self.derivative_dtype or like.dtype
        t = self._tmp
        if t is None or t.shape != like.shape or t.dtype != dtype:
            t = self._tmp = np.empty(like.shape, dtype=dtype)
        return t


def _out(z: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    return np.empty_like(z) if out is None else out


# 0-d arrays of each float dtype: NumPy converts a Python float operand on every
# call (~0.4 us), which is a third of the cost of an op on a small batch.
_CONST = {np.dtype(dt): {v: np.asarray(v, dtype=dt) for v in (0.0, 0.5, 1.0)} for dt in (np.float32, np.float64)}


def _k(a: np.ndarray) -> dict[float, np.ndarray]:
    try:
        return _CONST[a.dtype]
    except KeyError:
        return {v: np.asarray(v, dtype=a.dtype) for v in (0.0, 0.5, 1.0)}


@ACTIVATIONS.register
class Identity(Elementwise):
    """f(z) = z, for regression outputs. Identity + MSE uses the fused gradient a - y."""

    name = "identity"

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.copyto(out, z)
        return out

    def backward(self, z, a, grad):
        return grad  # f' = 1: nothing to multiply

    def _derivative(self, z, a, out):
        out.fill(1.0)
        return out


@ACTIVATIONS.register
class Sigmoid(Elementwise):
    r"""Logistic sigmoid.

    .. math:: \sigma(z) = 1 / (1 + e^{-z}),\quad \sigma'(z) = \sigma(z)(1-\sigma(z))

    Computed as 0.5 + 0.5 tanh(z/2), which never overflows.
    """

    name = "sigmoid"
    needs_output = True

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        half = _k(z)[0.5]
        np.multiply(z, half, out=out)
        np.tanh(out, out=out)
        np.multiply(out, half, out=out)
        np.add(out, half, out=out)
        return out

    def _derivative(self, z, a, out):
        np.subtract(_k(a)[1.0], a, out=out)
        np.multiply(out, a, out=out)
        return out


@ACTIVATIONS.register
class Tanh(Elementwise):
    r"""Hyperbolic tangent, :math:`\tanh'(z) = 1 - \tanh^2(z)`."""

    name = "tanh"
    needs_output = True

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.tanh(z, out=out)
        return out

    def _derivative(self, z, a, out):
        np.multiply(a, a, out=out)
        np.subtract(_k(a)[1.0], out, out=out)
        return out


@ACTIVATIONS.register
class ReLU(Elementwise):
    r"""max(0, z); derivative 1 for z > 0 and 0 otherwise (0 at the kink)."""

    name = "relu"
    derivative_dtype = bool

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.maximum(z, _k(z)[0.0], out=out)
        return out

    def _derivative(self, z, a, out):
        return np.greater(z, _k(z)[0.0], out=out)


@ACTIVATIONS.register
class Softmax(Activation):
    r"""Row-wise softmax, stable (the row max is subtracted first).

    Its Jacobian is full, so ``backward`` is the exact vector-Jacobian product

    .. math:: \partial C/\partial z = a \odot (g - \textstyle\sum_j g_j a_j).

    Softmax + categorical cross-entropy uses the fused gradient a - y instead.
    """

    name = "softmax"

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


# Piecewise functions below are blended arithmetically (0/1 factors, max/min) rather
# than with ``where=`` / ``np.where`` / ``copyto(where=)``: NumPy's masked loops are
# 10-20x slower than plain ones on random masks.

def _eps(z: np.ndarray) -> float:
    """Machine epsilon of z's floating dtype."""
    return float(np.finfo(z.dtype).eps)


# -- ReLU family ------------------------------------------------------------------------

@ACTIVATIONS.register
class LeakyReLU(Elementwise):
    r"""ReLU with a small fixed slope for negative inputs (Maas et al. 2013).

    .. math:: f(z) = \begin{cases} z & z > 0 \\ \alpha z & z \le 0 \end{cases},\quad
              f'(z) = \begin{cases} 1 & z > 0 \\ \alpha & z \le 0 \end{cases}

    ``slope`` is the negative slope the maths use: alpha here, drawn per element by
    :class:`RReLU` in training.

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
        self.slope: np.ndarray | float = self.alpha

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        # every slope is in [0, 1), so f(z) = max(z, slope z): two calls, no mask
        np.multiply(z, self.slope, out=out)
        np.maximum(out, z, out=out)
        return out

    def _derivative(self, z, a, out):
        # slopes in [0, 1): f' = max([z > 0], slope)
        np.greater(z, 0.0, out=out)
        np.maximum(out, self.slope, out=out)
        return out


@ACTIVATIONS.register
class PReLU(Elementwise):
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

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        # max(z, 0) + alpha min(z, 0): a learnt alpha may leave [0, 1), so no
        # max(z, alpha z) shortcut; one term is always 0, so this is exact
        neg = np.minimum(z, 0.0)
        np.multiply(neg, self.p["alpha"], out=neg)
        np.maximum(z, 0.0, out=out)
        out += neg
        return out

    def backward(self, z, a, grad):
        neg = np.minimum(z, 0.0)
        np.multiply(neg, grad, out=neg)
        neg.sum(axis=0, out=self.g["alpha"])
        return super().backward(z, a, grad)

    def _derivative(self, z, a, out):
        # 1 for z > 0 else alpha, of any sign: [z > 0] (1 - alpha) + alpha
        alpha = self.p["alpha"]
        np.greater(z, 0.0, out=out)
        np.multiply(out, 1.0 - alpha, out=out)
        out += alpha
        return out


@ACTIVATIONS.register
class RReLU(LeakyReLU):
    r"""Randomized leaky ReLU (Xu et al. 2015): a leaky ReLU whose slope is random.

    .. math:: f(z) = \begin{cases} z & z > 0 \\ s z & z \le 0 \end{cases},\qquad
              s \sim U(\text{lower}, \text{upper})\ \text{(training)},\quad
              s = \tfrac{\text{lower} + \text{upper}}{2}\ \text{(evaluation)}

    In training every element draws its own slope from the ``rng`` given to
    :meth:`forward`; the slopes are kept in ``self.slope`` (a buffer reused by the
    next training forward) so :meth:`backward` and :meth:`derivative` use exactly the
    same ones (the mean slope, ``alpha``, before any and in evaluation).

    Parameters
    ----------
    lower, upper : float, default 1/8 and 1/3
        Range of the slopes, 0 <= lower <= upper < 1.
    """

    name = "rrelu"
    stochastic = True
    config_keys = ("lower", "upper")

    def __init__(self, lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0) -> None:
        self.lower = check_number("lower", lower, low=0.0, high=1.0, high_open=True)
        self.upper = check_number("upper", upper, low=0.0, high=1.0, high_open=True)
        check(self.lower <= self.upper,
              f"`lower` must be <= `upper`, got lower={lower!r}, upper={upper!r}", field="lower")
        super().__init__(0.5 * (self.lower + self.upper))
        self._noise: np.ndarray | None = None

    def forward(self, z, out=None, training=False, rng=None):
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
            self.slope = self.alpha
        return super().forward(z, out)


# -- exponential linear units -----------------------------------------------------------

@ACTIVATIONS.register
class ELU(Elementwise):
    r"""Exponential linear unit (Clevert et al. 2016).

    .. math:: f(z) = \begin{cases} z & z > 0 \\ \alpha (e^z - 1) & z \le 0 \end{cases},\quad
              f'(z) = \begin{cases} 1 & z > 0 \\ f(z) + \alpha & z \le 0 \end{cases}

    ``scale`` (1 here) multiplies both branches; :class:`SELU` fixes it and alpha.

    Parameters
    ----------
    alpha : float, default 1.0
        Saturation value -alpha for z -> -inf, alpha >= 0.
    """

    name = "elu"
    config_keys = ("alpha",)
    needs_output = True
    scale: ClassVar[float] = 1.0

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = check_number("alpha", alpha, low=0.0)

    def forward(self, z, out=None, training=False, rng=None):
        # scale (max(z, 0) + alpha expm1(min(z, 0))): exp only sees z <= 0, so no overflow
        out = _out(z, out)
        pos = np.maximum(z, 0.0)
        np.minimum(z, 0.0, out=out)
        np.expm1(out, out=out)
        out *= self.alpha
        out += pos
        if self.scale != 1.0:
            out *= self.scale
        return out

    def _derivative(self, z, a, out):
        # z <= 0: f' = scale alpha e^z = a + scale alpha, no second exp; z > 0: f' = scale
        np.add(a, self.scale * self.alpha - self.scale, out=out)
        out *= z <= 0
        out += self.scale
        return out


@ACTIVATIONS.register
class SELU(ELU):
    r"""Scaled ELU (Klambauer et al. 2017), self-normalising with these constants.

    .. math:: f(z) = \lambda \begin{cases} z & z > 0 \\ \alpha (e^z - 1) & z \le 0 \end{cases},
              \quad \alpha = 1.6732632423543772\ldots,\ \lambda = 1.0507009873554804\ldots
    """

    name = "selu"
    config_keys = ()
    ALPHA: ClassVar[float] = 1.6732632423543772848170429916717
    SCALE: ClassVar[float] = 1.0507009873554804934193349852946
    scale = SCALE

    def __init__(self) -> None:
        super().__init__(alpha=self.ALPHA)


@ACTIVATIONS.register
class PELU(Elementwise):
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

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        pb = self.p["b"]
        # a (max(z, 0)/b + expm1(min(z, 0)/b)): exp never sees z > 0, so no overflow
        neg = np.minimum(z, 0.0)
        np.divide(neg, pb, out=neg)
        np.expm1(neg, out=neg)
        np.maximum(z, 0.0, out=out)
        np.divide(out, pb, out=out)
        out += neg
        np.multiply(out, self.p["a"], out=out)
        return out

    def _dz(self, z: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(df/dz written into ``out``, g(z/b) as a new array)."""
        pa, pb = self.p["a"], self.p["b"]
        d = np.minimum(z, 0.0, out=out)
        np.divide(d, pb, out=d)
        # exp, not expm1 (~2.5x slower): e^u - 1 loses only absolute eps, harmless in a gradient
        np.exp(d, out=d)                      # e^{min(u, 0)}
        gu = np.maximum(z, 0.0)
        np.divide(gu, pb, out=gu)
        gu += d
        gu -= 1.0                             # g(u) on both branches
        np.multiply(d, pa / pb, out=d)
        return d, gu

    def backward(self, z, a, grad):
        d, gu = self._dz(z, self._scratch(z))
        np.multiply(gu, grad, out=gu)
        gu.sum(axis=0, out=self.g["a"])
        np.multiply(grad, d, out=grad)        # dC/dz
        np.multiply(grad, z, out=d)
        gb = self.g["b"]
        d.sum(axis=0, out=gb)
        np.divide(gb, self.p["b"], out=gb)
        np.negative(gb, out=gb)
        return grad

    def _derivative(self, z, a, out):
        return self._dz(z, out)[0]


@ACTIVATIONS.register
class ISRLU(Elementwise):
    r"""Inverse square root linear unit (Carlile et al. 2017).

    .. math:: f(z) = \begin{cases} z & z \ge 0 \\ z / \sqrt{1 + \alpha z^2} & z < 0 \end{cases},
              \quad f'(z) = \begin{cases} 1 & z \ge 0 \\ (1 + \alpha z^2)^{-3/2} & z < 0 \end{cases}

    The negative branch uses t = max(z, -c), c = 1/(eps sqrt(alpha)) with eps the
    dtype's epsilon: beyond c, f = -1/sqrt(alpha) to the last bit, and alpha t^2 <=
    1/eps^2 stays finite, so nothing overflows (np.hypot would not either, but it is
    ~8x slower than multiply-add-sqrt).

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

    def _clamp(self, z: np.ndarray) -> float:
        info = np.finfo(z.dtype)
        return min(1.0 / (float(info.eps) * math.sqrt(self.alpha)), float(info.max))

    def _sqrt_denominator(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        """sqrt(1 + alpha t^2), t = clip(z, -c, 0), into ``out``: 1 on the linear branch."""
        s = np.clip(z, -self._clamp(z), 0.0, out=out)
        s *= math.sqrt(self.alpha)            # before squaring: t^2 alone may overflow
        np.multiply(s, s, out=s)
        s += 1.0
        np.sqrt(s, out=s)
        return s

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        s = self._sqrt_denominator(z, np.empty_like(z))
        np.clip(z, -self._clamp(z), 0.0, out=out)
        out /= s
        # t / s is 0 for z >= 0 and in [z, 0) for z < 0, so max with z picks the branch
        np.maximum(out, z, out=out)
        return out

    def _derivative(self, z, a, out):
        # (1/s)^3, not 1/s^3: s^3 could overflow, 1/s is in (eps, 1]
        d = self._sqrt_denominator(z, out)
        np.reciprocal(d, out=d)
        r = np.multiply(d, d)
        d *= r
        return d


# -- smooth activations -------------------------------------------------------------------

@ACTIVATIONS.register
class Swish(Elementwise):
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
    needs_output = True

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

    def _derivative(self, z, a, out):
        # with w = 1 - tanh(beta z / 2) = 2 (1 - sigma): f' = 1 + w (beta a - 1) / 2
        w = np.multiply(z, 0.5 * self.beta, out=out)
        np.tanh(w, out=w)
        np.subtract(1.0, w, out=w)
        u = np.multiply(a, 0.5 * self.beta)
        u -= 0.5
        np.multiply(w, u, out=w)
        w += 1.0
        return w


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
class Softplus(Elementwise):
    r"""Smooth ReLU.

    .. math:: f(z) = \ln(1 + e^z),\quad f'(z) = \sigma(z) = e^{z - f(z)}

    Computed as logaddexp(0, z), which never overflows.
    """

    name = "softplus"
    needs_output = True

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.logaddexp(0.0, z, out=out)
        return out

    def _derivative(self, z, a, out):
        # sigma(z) = e^z / (1 + e^z) = exp(z - f(z)); z - f(z) <= 0 cannot overflow
        d = np.subtract(z, a, out=out)
        np.exp(d, out=d)
        return d


@ACTIVATIONS.register
class Arctan(Elementwise):
    r"""Inverse tangent, a bounded sigmoid-shaped function with range (-pi/2, pi/2).

    .. math:: f(z) = \arctan z,\quad f'(z) = \frac{1}{1 + z^2}
    """

    name = "arctan"

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.arctan(z, out=out)
        return out

    def _derivative(self, z, a, out):
        d = np.multiply(z, z, out=out)
        d += 1.0
        np.reciprocal(d, out=d)
        return d


@ACTIVATIONS.register
class GELU(Elementwise):
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
        check(isinstance(approximate, bool), f"`approximate` must be a bool, got {approximate!r}",
              field="approximate")
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

    def _derivative(self, z, a, out):
        if self.approximate:
            # f = z h, h = (1 + tanh u)/2, u' = K (1 + 3 C z^2); with w = 1 - h:
            # f' = h + z u' 2 h w = (1 - w)(1 + 2 z u' w)
            t = np.multiply(z, z, out=out)
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
        d = np.multiply(z, math.sqrt(0.5), out=out)
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


@ACTIVATIONS.register
class BipolarSigmoid(Elementwise):
    r"""Sigmoid rescaled to (-1, 1).

    .. math:: f(z) = \frac{1 - e^{-z}}{1 + e^{-z}} = \tanh(z/2),\quad f'(z) = \tfrac12 (1 - f^2)

    Computed as tanh(z/2), which never overflows.
    """

    name = "bipolar_sigmoid"
    needs_output = True

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        np.multiply(z, 0.5, out=out)
        np.tanh(out, out=out)
        return out

    def _derivative(self, z, a, out):
        d = np.multiply(a, a, out=out)
        np.multiply(d, -0.5, out=d)
        d += 0.5
        return d


@ACTIVATIONS.register
class SoftExponential(Elementwise):
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

    def _vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-unit max(alpha, 0), min(alpha, 0), 1/alpha (1 where alpha = 0) and
        [alpha = 0]. Each branch's formula is exactly 0 on the other branches' units
        (expm1(0 z) = 0, log1p(-0 z - 0) = 0), so the branches are simply added up:
        masked (``where=``) ufunc loops would be several times slower."""
        al = self.p["alpha"]
        zero = al == 0
        inv = np.reciprocal(np.where(zero, 1.0, al))
        return np.maximum(al, 0.0), np.minimum(al, 0.0), inv, zero.astype(al.dtype)

    def forward(self, z, out=None, training=False, rng=None):
        out = _out(z, out)
        ap, an, inv, zero = self._vectors()
        if zero.all():  # the usual start of training
            np.copyto(out, z)
            return out
        if ap.any():
            # alpha > 0: expm1(alpha z)/alpha + alpha
            np.multiply(z, ap, out=out)
            np.expm1(out, out=out)
            np.multiply(out, inv, out=out)
            out += ap
        else:
            out[...] = 0.0
        t = np.empty_like(out)
        if an.any():
            # alpha < 0: log1p(v)/-alpha, v = L - 1 = -alpha z - alpha^2 clipped to L >= eps
            np.multiply(z, -an, out=t)
            np.subtract(t, an * an, out=t)
            np.maximum(t, _eps(z) - 1.0, out=t)
            np.log1p(t, out=t)
            np.multiply(t, inv, out=t)
            out -= t
        if zero.any():
            np.multiply(z, zero, out=t)
            out += t
        return out

    def _grads(self, z: np.ndarray, a: np.ndarray | None, out: np.ndarray, need_alpha: bool
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """(df/dz written into ``out``, df/dalpha as a new array or None); a = f(z) is
        needed for df/dalpha."""
        ap, an, inv, zero = self._vectors()
        if zero.all():
            d = out
            d.fill(1.0)
            h = None
            if need_alpha:
                h = np.multiply(z, z)
                h *= 0.5
                h += 1.0
            return d, h
        # E = exp(max(alpha, 0) z): e^{alpha z} on alpha > 0 units, 1 elsewhere
        d = out
        if ap.any():
            np.multiply(z, ap, out=d)
            np.exp(d, out=d)
        else:
            d.fill(1.0)
        # R = 1/L on alpha < 0 units (0 where the forward clipped L), 1 elsewhere
        r = None
        if an.any():
            r = np.multiply(z, -an)
            r += 1.0 - an * an
            eps = _eps(z)
            kept = r >= eps
            np.maximum(r, eps, out=r)
            np.divide(kept, r, out=r)
            d *= r                            # df/dz = E R
        if not need_alpha:
            return d, None
        # alpha != 0: df/dalpha = (z E R - f)/alpha + 2R (R = 1 on alpha > 0 units);
        # alpha = 0 gives 2 here and is corrected to z^2/2 + 1 below
        h = np.multiply(z, d)
        h -= a
        np.multiply(h, inv, out=h)
        if r is None:
            h += 2.0
        else:
            r *= 2.0
            h += r
        if zero.any():
            r = np.multiply(z, z, out=r)
            np.multiply(r, 0.5 * zero, out=r)
            np.subtract(r, zero, out=r)
            h += r
        return d, h

    def backward(self, z, a, grad):
        d, h = self._grads(z, a, self._scratch(z), need_alpha=True)
        np.multiply(h, grad, out=h)
        h.sum(axis=0, out=self.g["alpha"])
        np.multiply(grad, d, out=grad)
        return grad

    def _derivative(self, z, a, out):
        return self._grads(z, a, out, need_alpha=False)[0]


@ACTIVATIONS.register
class BinaryStep(Elementwise):
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
        grad[...] = 0.0  # f' = 0: exactly 0, even where grad is inf (0 * inf would be nan)
        return grad

    def _derivative(self, z, a, out):
        out.fill(0.0)
        return out

