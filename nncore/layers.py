"""Layer types, their registry and the one layout function the parameter count comes from.

The subclass contract (:class:`Layer`): a layer names its parameter parts and its state
parts for an input width (``param_parts`` / ``state_parts``, each ``(name, size)``, in
buffer order); the network carves those out of its flat ``params``, ``grads`` and
``state`` buffers and hands the views to :meth:`Layer.bind`. ``forward`` and
``backward`` are the general path; :class:`~nncore.network.Network` runs a network of
dense layers only through its own preallocated plans instead, so ``Dense.forward`` /
``Dense.backward`` here serve mixed networks.

Work arrays: :meth:`Layer.workspace` returns a dict of the arrays a layer's forward
writes for one batch size (its output and saved intermediates such as BatchNorm's xhat
and 1/std, dropout masks); the backward's (dC/dx) join it on first use. The network
keeps one per layer and training batch size and passes it as ``out=``, so a training
step allocates nothing after the first at a size. Called without ``out`` a layer makes
a fresh workspace, and computes exactly the same numbers, operation for operation.

A spec's layer is ``{"type": ..., **fields}`` with ``"type"`` defaulting to
``"dense"``; a dense layer's config carries no ``type`` key, so every config and
checkpoint written before layer types existed still loads as it is.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .activations import ACTIVATIONS, Activation
from .initializers import Initializer, get_initializer
from .registry import Registry, check_number

LAYERS: Registry[Layer] = Registry("layer type")


class Layer:
    """Base class: what every layer type provides.

    Attributes
    ----------
    kind : str
        Registry name, also the ``"type"`` of its config.
    fields : tuple of str
        The config fields besides ``type`` (the spec validator lists them).
    in_dim : int
        Input width, set by :meth:`bind`.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""  # the Registry's key; always equal to ``kind``
    fields: ClassVar[tuple[str, ...]] = ()
    in_dim = 0

    def output_dim(self, in_dim: int) -> int:
        return in_dim

    def param_parts(self, in_dim: int) -> list[tuple[str, int]]:
        """(name, size) of each trainable part, in buffer order."""
        return []

    def state_parts(self, in_dim: int) -> list[tuple[str, int]]:
        """(name, size) of each non-trainable part (running statistics), in buffer order."""
        return []

    def bind(self, in_dim: int, params: dict[str, tuple[np.ndarray, np.ndarray]],
             state: dict[str, np.ndarray]) -> None:
        """Attach ``(value, gradient)`` views of the flat buffers per part, and state views."""
        self.in_dim = in_dim

    def reset(self, rng: np.random.Generator, init: Initializer) -> None:
        """Initialise parameters and state (only Dense draws from ``rng``, so adding other
        layers leaves the dense weights of a seed as they were)."""

    @property
    def stochastic(self) -> bool:
        return False

    def workspace(self, n: int, dtype: Any) -> dict[str, np.ndarray]:
        """The arrays forward writes for a batch of ``n`` rows, by name; those only the
        backward writes (dC/dx among them) join it on first use (:meth:`_scratch`)."""
        return {}

    def forward(self, x: np.ndarray, training: bool, rng: np.random.Generator | None,
                reducer: Any = None, out: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Output of shape (n_samples, output_dim) for x of shape (n_samples, in_dim).

        ``reducer`` (the trainer's, or None on one process) is for layers whose training
        forward depends on the whole global batch (BatchNorm). ``out`` is a
        :meth:`workspace` for x's batch size (None: allocate one); the result may be one
        of its arrays (or x itself), valid until the next forward with that workspace.
        """
        raise NotImplementedError

    def backward(self, dy: np.ndarray, reducer: Any = None,
                 out: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """dC/dx given dC/dy of the last forward; writes this rank's share of the
        parameter gradients (the trainer sums them over ranks). ``out`` is the
        workspace of that forward (None: the one it used). May overwrite ``dy`` (as
        :meth:`Activation.backward` may): the network passes its own work arrays."""
        raise NotImplementedError

    def _scratch(self, ws: dict[str, np.ndarray], name: str, like: np.ndarray) -> np.ndarray:
        """``ws[name]``, made like ``like`` on first use: the arrays only a backward
        needs, so an evaluation forward's workspace holds no more than its outputs."""
        a = ws.get(name)
        if a is None:
            a = ws[name] = np.empty_like(like)
        return a

    def _workspace(self, x: np.ndarray, out: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """``out``, or a fresh workspace for x (a forward called without one, or on an x
        that is not C-contiguous: only a network's input can be one)."""
        if out is None or not x.flags.c_contiguous:
            out = self.workspace(x.shape[0], x.dtype)
            if not x.flags.c_contiguous:
                # x's layout for the arrays of x's shape, as ``x - mean`` or
                # ``np.empty_like(x)`` gave them: the sums over them run in memory order
                for k, v in out.items():
                    if v.shape == x.shape:
                        out[k] = np.empty_like(x)
        self._ws = out
        return out

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"type": self.kind}
        cfg.update({k: getattr(self, k) for k in self.fields})
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**{k: v for k, v in config.items() if k != "type"})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.fields)
        return f"{type(self).__name__}({args})"


def draw_dropout_mask(rng: np.random.Generator | None, mask: np.ndarray, rate: float) -> None:
    """Fill ``mask`` (n_samples, width) for inverted dropout: 1/(1-rate) with probability
    1-rate, else 0.

    Dense's ``dropout`` option (on either path) and the Dropout layer all draw through
    here, so one (rng, shape) gives one mask whichever way the network spells it.
    """
    if rng is None:
        raise ValueError("dropout needs `rng` when training=True")
    if isinstance(rng, np.random.Generator) and mask.flags.c_contiguous:
        rng.random(dtype=mask.dtype, out=mask)  # the same stream as rng.random(mask.shape)
        np.greater_equal(mask, rate, out=mask)
    else:  # ShardedNoise and other stand-ins: their random() allocates
        np.greater_equal(rng.random(mask.shape, dtype=mask.dtype), rate, out=mask)
    mask *= 1.0 / (1.0 - rate)


@LAYERS.register
class Dense(Layer):
    """A fully connected layer: a = f(x W + b), with optional inverted dropout on a.

    Parameters
    ----------
    units : int
        Number of neurons.
    activation : str, dict or Activation
        Resolved through the activation registry.
    dropout : float in [0, 1)
        Probability of zeroing each output in training; the survivors are scaled by
        1/(1-p) so evaluation needs no rescaling.
    init : str or dict, optional
        Weight initialiser for this layer (default: the network's).
    """

    kind = name = "dense"
    fields = ("units", "activation", "dropout", "init")

    def __init__(self, units: int, activation: Any = "identity", dropout: float = 0.0,
                 init: Any = None) -> None:
        self.units = check_number("units", units, low=1, integer=True)
        self.activation: Activation = ACTIVATIONS.resolve(activation)
        self.dropout = check_number("dropout", dropout, low=0, high=1, high_open=True)
        self.init: Initializer | None = None if init is None else get_initializer(init)
        self.in_dim = 0
        self.W = self.b = None  # views of the network's flat buffers, set by bind
        self.gW = self.gb = None

    def output_dim(self, in_dim: int) -> int:
        return self.units

    def param_parts(self, in_dim: int) -> list[tuple[str, int]]:
        u = self.units
        return [("W", in_dim * u), ("b", u)] + [(f"{self.activation.name}.{p}", u) for p in self.activation.params]

    def bind(self, in_dim, params, state):
        self.in_dim = in_dim
        w, gw = params["W"]
        self.W, self.gW = w.reshape(in_dim, self.units), gw.reshape(in_dim, self.units)
        self.b, self.gb = params["b"]
        prefix = self.activation.name + "."
        self.activation.bind({p: params[prefix + p][0] for p in self.activation.params},
                             {p: params[prefix + p][1] for p in self.activation.params})

    def reset(self, rng, init):
        w = np.empty((self.in_dim, self.units), dtype=np.float64)
        (self.init or init).fill(w, rng)
        self.W[...] = w
        self.b[...] = 0.0
        for name, value in self.activation.initial_values().items():
            self.activation.p[name][...] = value

    @property
    def stochastic(self) -> bool:
        return bool(self.dropout) or self.activation.stochastic

    def get_config(self) -> dict[str, Any]:
        # no "type": a dense config is exactly what it was before layer types existed
        cfg: dict[str, Any] = {"units": self.units, "activation": self.activation.get_config()}
        if self.dropout:
            cfg["dropout"] = self.dropout
        if self.init is not None:
            cfg["init"] = self.init.get_config()
        return cfg

    def __repr__(self) -> str:
        return f"Dense({self.units}, {self.activation!r}, dropout={self.dropout})"

    # -- the general path (mixed networks); dense-only networks use Network's plans ----
    def workspace(self, n, dtype):
        # z, a = f(z); with dropout the mask and y = a * mask; the backward's dC/dx
        # ("dx") is made on first use (the network's first layer never needs one)
        u = self.units
        ws = {"z": np.empty((n, u), dtype=dtype), "a": np.empty((n, u), dtype=dtype)}
        if self.dropout:
            for k in ("mask", "y"):
                ws[k] = np.empty((n, u), dtype=dtype)
        return ws

    def _workspace(self, x, out):
        if out is None:  # a standalone call: x W computes in their common dtype
            out = self.workspace(x.shape[0], np.result_type(x, self.W))
        self._ws = out
        return out

    def forward(self, x, training, rng, reducer=None, out=None):
        ws = self._workspace(x, out)
        self._x = x
        z = self._z = np.dot(x, self.W, out=ws["z"])
        np.add(z, self.b, out=z)
        a = self._pre = ws["a"]  # backward's f'(z) may need f(z) before the mask
        self.activation.forward(z, a, training, rng)
        self._mask = None
        if self.dropout and training:
            mask = self._mask = ws["mask"]
            draw_dropout_mask(rng, mask, self.dropout)
            return np.multiply(a, mask, out=ws["y"])
        return a

    def delta(self, dy: np.ndarray) -> np.ndarray:
        """dC/dz from dC/dy (through the dropout mask and the activation); may overwrite dy."""
        if self._mask is not None:
            dy = np.multiply(dy, self._mask, out=dy)
        return self.activation.backward(self._z, self._pre, dy)

    def backward(self, dy, reducer=None, out=None):
        return self.backward_z(self.delta(dy))

    def backward_z(self, delta: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Parameter gradients and dC/dx from dC/dz (the output layer starts here: the
        loss hands it dC/dz, fused with the activation where it can be)."""
        np.dot(self._x.T, delta, out=self.gW)
        np.sum(delta, axis=0, out=self.gb)
        if not need_dx:
            return None
        dx = self._ws.get("dx")
        if dx is None:
            dx = self._ws["dx"] = np.empty((delta.shape[0], self.in_dim), dtype=delta.dtype)
        return np.dot(delta, self.W.T, out=dx)


class _Affine(Layer):
    """gamma * xhat + beta over the features, gamma and beta trainable (BatchNorm, LayerNorm)."""

    def __init__(self, eps: float = 1e-5) -> None:
        self.eps = check_number("eps", eps, low=0, low_open=True)
        self.gamma = self.beta = self.ggamma = self.gbeta = None

    def _scale(self, xc: np.ndarray, inv: np.ndarray, ws: dict[str, np.ndarray]) -> np.ndarray:
        # in place: inv (holding var + eps) becomes 1/std, xc (centred) becomes xhat;
        # returns gamma xhat + beta in the workspace's output
        np.sqrt(inv, out=inv)
        np.divide(1.0, inv, out=inv)
        self._inv = inv
        self._xhat = np.multiply(xc, inv, out=xc)
        y = np.multiply(self._xhat, self.gamma, out=ws["y"])
        return np.add(y, self.beta, out=y)

    def param_parts(self, in_dim):
        return [("gamma", in_dim), ("beta", in_dim)]

    def bind(self, in_dim, params, state):
        self.in_dim = in_dim
        self.gamma, self.ggamma = params["gamma"]
        self.beta, self.gbeta = params["beta"]

    def reset(self, rng, init):
        self.gamma[...] = 1.0
        self.beta[...] = 0.0


@LAYERS.register
class BatchNorm(_Affine):
    r"""Batch normalisation per feature over the (global) batch (Ioffe & Szegedy 2015).

    .. math:: y = \gamma \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta

    Training uses the batch's mean and biased variance; evaluation the running ones,
    updated at every training forward as ``torch.nn.BatchNorm1d`` does:
    running = (1 - momentum) running + momentum batch, the variance with the unbiased
    (n / (n - 1)) batch variance (the biased one for a batch of one sample).

    Under data parallelism each rank holds a slice of the batch; the statistics and the
    backward's sums are all-reduced through the trainer's reducer, so N ranks compute
    exactly what one process does on the whole batch.

    Parameters
    ----------
    momentum : float in [0, 1]
    eps : float > 0

    Attributes
    ----------
    gamma, beta : ndarray of shape (features,)
        Views of the network's parameters.
    running_mean, running_var : ndarray of shape (features,)
        Views of the network's ``state`` buffer.
    """

    kind = name = "batchnorm"
    fields = ("momentum", "eps")

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__(eps)
        self.momentum = check_number("momentum", momentum, low=0, high=1)
        self.running_mean = self.running_var = None

    def state_parts(self, in_dim):
        return [("running_mean", in_dim), ("running_var", in_dim)]

    def bind(self, in_dim, params, state):
        super().bind(in_dim, params, state)
        self.running_mean, self.running_var = state["running_mean"], state["running_var"]

    def reset(self, rng, init):
        super().reset(rng, init)
        self.running_mean[...] = 0.0
        self.running_var[...] = 1.0

    def workspace(self, n, dtype):
        # s: the forward's (sum, rows); mean, sq (centred squares), var, tmp (a
        # running-statistics term), inv = 1/std, gi = gamma/std; xhat (xc, centred,
        # until scaled in place), y; sb: the backward's (sum dy, sum dy xhat); its dx
        # is made on first use
        f = self.in_dim
        ws = {k: np.empty((n, f), dtype=dtype) for k in ("xhat", "y")}
        ws.update({k: np.empty(f, dtype=dtype) for k in ("mean", "sq", "var", "tmp", "inv", "gi")})
        ws["s"] = np.empty(f + 1, dtype=dtype)
        ws["sb"] = np.empty(2 * f, dtype=dtype)
        return ws

    def forward(self, x, training, rng, reducer=None, out=None):
        ws = self._workspace(x, out)
        self._training = training
        xc = ws["xhat"]
        if training:
            f = x.shape[1]
            # sum and row count in one all-reduce; then centred squares (two passes,
            # not E[x^2] - E[x]^2, which cancels badly when |mean| >> std)
            s = ws["s"]
            np.sum(x, axis=0, out=s[:f])
            s[f] = x.shape[0]
            if reducer is not None:
                reducer.allreduce_sum(s)
            n = float(s[f])
            mean = np.divide(s[:f], n, out=ws["mean"])
            np.subtract(x, mean, out=xc)
            sq = np.einsum("ij,ij->j", xc, xc, out=ws["sq"])
            if reducer is not None:
                reducer.allreduce_sum(sq)
            var = np.divide(sq, n, out=ws["var"])
            m, tmp = self.momentum, ws["tmp"]
            self.running_mean *= 1.0 - m
            self.running_mean += np.multiply(m, mean, out=tmp)
            self.running_var *= 1.0 - m
            self.running_var += np.multiply(m * n / max(n - 1.0, 1.0), var, out=tmp)
            self._n = n
        else:
            np.subtract(x, self.running_mean, out=xc)
            var = self.running_var
        return self._scale(xc, np.add(var, self.eps, out=ws["inv"]), ws)

    def backward(self, dy, reducer=None, out=None):
        ws = out or self._ws
        f = dy.shape[1]
        s = ws["sb"]
        np.sum(dy, axis=0, out=s[:f])
        np.einsum("ij,ij->j", dy, self._xhat, out=s[f:])
        # this rank's sums are its share of dbeta and dgamma: the trainer all-reduces them
        self.gbeta[...] = s[:f]
        self.ggamma[...] = s[f:]
        gi = np.multiply(self.gamma, self._inv, out=ws["gi"])
        dx = self._scratch(ws, "dx", dy)
        if not self._training:
            return np.multiply(dy, gi, out=dx)
        # dy already carries the loss's 1/n_global, so the global sums (not means over
        # this rank's rows) give dx = gamma/std (dy - mean(dy) - xhat mean(dy xhat)).
        if reducer is not None:
            reducer.allreduce_sum(s)
        s /= self._n
        np.subtract(dy, s[:f], out=dx)
        np.subtract(dx, np.multiply(self._xhat, s[f:], out=dy), out=dx)  # dy is spent: reuse it
        return np.multiply(dx, gi, out=dx)


@LAYERS.register
class LayerNorm(_Affine):
    r"""Layer normalisation per sample over its features (Ba et al. 2016).

    .. math:: y = \gamma \frac{x - \mu(x)}{\sqrt{\sigma^2(x) + \epsilon}} + \beta

    with mean and biased variance over each row; identical in training and evaluation,
    no state, nothing shared across ranks (a row lives on one rank).

    Parameters
    ----------
    eps : float > 0

    Attributes
    ----------
    gamma, beta : ndarray of shape (features,)
    """

    kind = name = "layernorm"
    fields = ("eps",)

    def workspace(self, n, dtype):
        # per-row columns (n, 1): mean, inv = 1/std, the backward's row mean of g and
        # its row sums of g xhat (each also kept as an (n,) view for einsum's out=);
        # xhat (xc until scaled in place), y; the backward's dx is made on first use
        f = self.in_dim
        ws = {k: np.empty((n, f), dtype=dtype) for k in ("xhat", "y")}
        for k in ("mean", "inv", "gm", "e"):
            ws[k] = np.empty((n, 1), dtype=dtype)
            ws[k + "1"] = ws[k][:, 0]
        return ws

    def forward(self, x, training, rng, reducer=None, out=None):
        ws = self._workspace(x, out)
        xc = np.subtract(x, x.mean(axis=1, keepdims=True, out=ws["mean"]), out=ws["xhat"])
        inv = ws["inv"]
        np.einsum("ij,ij->i", xc, xc, out=ws["inv1"])
        np.divide(inv, x.shape[1], out=inv)
        return self._scale(xc, np.add(inv, self.eps, out=inv), ws)

    def backward(self, dy, reducer=None, out=None):
        ws = out or self._ws
        xhat = self._xhat
        np.sum(dy, axis=0, out=self.gbeta)
        np.einsum("ij,ij->j", dy, xhat, out=self.ggamma)
        g = np.multiply(dy, self.gamma, out=dy)  # dy is spent: g overwrites it
        dx = np.subtract(g, g.mean(axis=1, keepdims=True, out=ws["gm"]), out=self._scratch(ws, "dx", dy))
        np.einsum("ij,ij->i", g, xhat, out=ws["e1"])
        t = np.multiply(xhat, ws["e"], out=g)  # g is spent: reuse it
        np.divide(t, dy.shape[1], out=t)  # (xhat * sum(g xhat)) / f, in that order
        np.subtract(dx, t, out=dx)
        return np.multiply(dx, self._inv, out=dx)


@LAYERS.register
class Dropout(Layer):
    """Inverted dropout as a layer: in training zero each input with probability
    ``rate`` and scale the rest by 1/(1-rate); the identity in evaluation.

    The mask is drawn exactly as Dense's ``dropout`` option draws it, from the ``rng``
    the trainer passes (one stream per (seed, epoch)), so ``Dense(8, dropout=p)`` and
    ``Dense(8), Dropout(p)`` train identically.

    Parameters
    ----------
    rate : float in [0, 1)
    """

    kind = name = "dropout"
    fields = ("rate",)

    def __init__(self, rate: float = 0.5) -> None:
        self.rate = check_number("rate", rate, low=0, high=1, high_open=True)

    @property
    def stochastic(self) -> bool:
        return bool(self.rate)

    def workspace(self, n, dtype):
        return {k: np.empty((n, self.in_dim), dtype=dtype) for k in ("mask", "y")}  # dx on first use

    def forward(self, x, training, rng, reducer=None, out=None):
        if not (training and self.rate):
            self._mask = None
            return x
        ws = self._workspace(x, out)
        mask = self._mask = ws["mask"]
        draw_dropout_mask(rng, mask, self.rate)
        return np.multiply(x, mask, out=ws["y"])

    def backward(self, dy, reducer=None, out=None):
        return dy if self._mask is None else np.multiply(dy, self._mask, out=self._scratch(out or self._ws, "dx", dy))


def build_layer(layer: Layer | dict[str, Any]) -> Layer:
    """A layer from its config (``type`` defaults to ``"dense"``) or a layer itself."""
    if isinstance(layer, Layer):
        return layer
    if not isinstance(layer, dict):
        raise ValueError(f"a layer must be a Layer or a config object, got {type(layer).__name__}")
    return LAYERS.get(layer.get("type", "dense")).from_config(layer)


@dataclass(frozen=True)
class LayerLayout:
    """One layer's place in a network: its widths and its share of the flat buffers."""

    kind: str
    in_dim: int
    out_dim: int
    n_params: int
    n_state: int


def layout(input_dim: int, layers: Iterable[Layer | dict[str, Any]]) -> list[LayerLayout]:
    """Widths and buffer sizes of each layer of a model: the one source of the
    parameter count (``Network``, ``spec.count_params`` and ``budget`` all use it)."""
    out, width = [], input_dim
    for layer in layers:
        la = build_layer(layer)
        nxt = la.output_dim(width)
        out.append(LayerLayout(la.kind, width, nxt, sum(s for _, s in la.param_parts(width)),
                               sum(s for _, s in la.state_parts(width))))
        width = nxt
    return out
