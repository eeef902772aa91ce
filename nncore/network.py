"""Feed-forward dense networks on one flat parameter buffer.

Layout: for every layer its weights ``W`` (fan_in, units, row-major), then its bias
``b`` (units,), then one (units,) vector per learnable activation parameter, all
views into ``Network.params``; their gradients are the same views into
``Network.grads``. An optimiser therefore updates every parameter of the network in
a few whole-buffer operations, and a data-parallel reducer sums one buffer.

Activations and deltas live in C-contiguous buffers preallocated per batch size, and
the matrix products go through ``np.dot(..., out=)`` (straight to BLAS, less
per-call overhead than ``matmul``), so a training step allocates nothing but a few
scalars. For small layers the cost of a step is the number of NumPy calls, which is
why the loops below are spelled out rather than composed from smaller helpers.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .activations import ACTIVATIONS, Activation
from .initializers import Initializer, get_initializer
from .losses import Loss
from .registry import check_number

DTYPES = {"float32": np.float32, "float64": np.float64}
_MAX_CACHED_BATCH_SIZES = 4


def resolve_dtype(dtype: Any) -> np.dtype:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return np.dtype(DTYPES[name])


class Dense:
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

    def __init__(self, units: int, activation: Any = "identity", dropout: float = 0.0,
                 init: Any = None) -> None:
        self.units = check_number("units", units, low=1, integer=True)
        self.activation: Activation = ACTIVATIONS.resolve(activation)
        self.dropout = check_number("dropout", dropout, low=0, high=1, high_open=True)
        self.init: Initializer | None = None if init is None else get_initializer(init)
        self.in_dim = 0
        self.W = self.b = None  # views of the network's flat buffers, set by Network
        self.gW = self.gb = None

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"units": self.units, "activation": self.activation.get_config()}
        if self.dropout:
            cfg["dropout"] = self.dropout
        if self.init is not None:
            cfg["init"] = self.init.get_config()
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Dense:
        return cls(**config)

    def __repr__(self) -> str:
        return f"Dense({self.units}, {self.activation!r}, dropout={self.dropout})"


class _Buffers:
    """Per-batch-size work arrays: z, activations, dC/da, dropout masks."""

    def __init__(self, net: Network, n: int) -> None:
        dt = net.dtype
        units = [layer.units for layer in net.layers]
        self.Z = [np.empty((n, u), dtype=dt) for u in units]
        self.act = [np.empty((n, u), dtype=dt) for u in units]
        self.G = [np.empty((n, u), dtype=dt) for u in units]
        self.mask = [np.empty((n, la.units), dtype=dt) if la.dropout else None for la in net.layers]
        self.pre = [np.empty((n, la.units), dtype=dt) if la.dropout else None for la in net.layers]
        self.X = np.empty((n, net.input_dim), dtype=dt)  # inputs that needed a cast or a copy
        self.ones = np.ones(n, dtype=dt)  # ones @ delta is the bias gradient, one BLAS call
        # Everything each layer's forward and backward touches, looked up once here
        # rather than attribute by attribute on every step.
        layers = net.layers
        self.fplan = [(la.W, la.b, self.Z[i], self.act[i], la.activation.forward, la.dropout, i)
                      for i, la in enumerate(layers)]
        self.bplan = []
        for i in range(len(layers) - 1, -1, -1):
            la = layers[i]
            if i == 0:
                self.bplan.append((None, la.gW, la.gb, None, None, None, None, None, None, None))
            else:
                below = layers[i - 1]
                self.bplan.append((self.act[i - 1], la.gW, la.gb, la.W.T, self.G[i - 1], below.activation.backward,
                                   self.Z[i - 1], self.act[i - 1], self.mask[i - 1], self.pre[i - 1]))


class Network:
    """A feed-forward stack of Dense layers with flat parameter and gradient buffers.

    Parameters
    ----------
    input_dim : int
        Number of input features.
    layers : sequence of Dense or dict
        Dense layers (or their configs ``{"units": 10, "activation": "softmax"}``).
    init : str or dict
        Default weight initialiser (biases start at zero).
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initialisation; the same seed gives the same parameters.
    """

    def __init__(self, input_dim: int, layers: Sequence[Dense | dict], init: Any = "glorot_uniform",
                 dtype: Any = "float32", seed: int = 0) -> None:
        self.input_dim = check_number("input_dim", input_dim, low=1, integer=True)
        self.layers = [layer if isinstance(layer, Dense) else Dense.from_config(layer) for layer in layers]
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        if self.layers[-1].dropout:
            raise ValueError("dropout on the output layer would randomise predictions; put it on hidden layers")
        self.init = get_initializer(init)
        self.dtype = resolve_dtype(dtype)
        self.seed = int(seed)
        self._layout()
        self.reset_parameters(self.seed)
        self._buffers: dict[int, _Buffers] = {}
        self._in: np.ndarray | None = None
        self._n = 0

    # -- construction --------------------------------------------------------------
    def _layout(self) -> None:
        sizes = []
        fan_in = self.input_dim
        for layer in self.layers:
            sizes.append((fan_in + 1) * layer.units + len(layer.activation.params) * layer.units)
            fan_in = layer.units
        self.params = np.zeros(sum(sizes), dtype=self.dtype)
        self.grads = np.zeros_like(self.params)
        offset, fan_in = 0, self.input_dim
        self.slices: list[tuple[str, slice]] = []

        def take(label: str, size: int) -> tuple[np.ndarray, np.ndarray]:
            nonlocal offset
            region = slice(offset, offset + size)
            self.slices.append((label, region))
            offset += size
            return self.params[region], self.grads[region]

        for i, layer in enumerate(self.layers):
            layer.in_dim = fan_in
            w, gw = take(f"layer{i}.W", fan_in * layer.units)
            layer.W, layer.gW = w.reshape(fan_in, layer.units), gw.reshape(fan_in, layer.units)
            layer.b, layer.gb = take(f"layer{i}.b", layer.units)
            pv, gv = {}, {}
            for name in layer.activation.params:
                pv[name], gv[name] = take(f"layer{i}.{layer.activation.name}.{name}", layer.units)
            layer.activation.bind(pv, gv)
            fan_in = layer.units

    def reset_parameters(self, seed: int) -> None:
        """(Re)initialise all parameters from ``seed``: weights by the initialisers,
        biases to zero, learnable activation parameters to their initial values."""
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            w = np.empty((layer.in_dim, layer.units), dtype=np.float64)
            (layer.init or self.init).fill(w, rng)
            layer.W[...] = w
            layer.b[...] = 0.0
            for name, value in layer.activation.initial_values().items():
                layer.activation.p[name][...] = value

    @property
    def n_params(self) -> int:
        return int(self.params.size)

    @property
    def output_dim(self) -> int:
        return self.layers[-1].units

    @property
    def output_activation(self) -> Activation:
        return self.layers[-1].activation

    @property
    def stochastic(self) -> bool:
        """True when training draws random numbers (dropout, RReLU)."""
        return any(layer.dropout or layer.activation.stochastic for layer in self.layers)

    def get_config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "init": self.init.get_config(), "dtype": self.dtype.name,
                "layers": [layer.get_config() for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any], seed: int = 0) -> Network:
        return cls(seed=seed, **config)

    def __repr__(self) -> str:
        dims = "-".join(str(d) for d in [self.input_dim] + [la.units for la in self.layers])
        return f"Network({dims}, {self.n_params} params, {self.dtype.name})"

    # -- forward / backward ----------------------------------------------------------
    def buffers(self, n: int) -> _Buffers:
        buf = self._buffers.get(n)
        if buf is None:
            if len(self._buffers) >= _MAX_CACHED_BATCH_SIZES:
                self._buffers.pop(next(iter(self._buffers)))
            buf = self._buffers[n] = _Buffers(self, n)
        return buf

    def forward(self, X: np.ndarray, training: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
        """Output activations for X of shape (n_samples, input_dim).

        The result is an internal buffer, overwritten by the next call: copy it to
        keep it. ``rng`` is required in training when the network has dropout or RReLU.
        """
        n = X.shape[0]
        buf = self._buffers.get(n) or self.buffers(n)
        if X.dtype != self.dtype or not X.flags.c_contiguous or X.ndim != 2 or X.shape[1] != self.input_dim:
            if X.ndim != 2 or X.shape[1] != self.input_dim:
                raise ValueError(f"expected input of shape (n_samples, {self.input_dim}), got {X.shape}")
            np.copyto(buf.X, X, casting="same_kind")
            X = buf.X
        self._in, self._n, self._training = X, n, training
        a = X
        for W, b, z, out, forward, dropout, i in buf.fplan:
            np.dot(a, W, out=z)
            np.add(z, b, out=z)
            if dropout and training:
                pre, mask = buf.pre[i], buf.mask[i]
                forward(z, pre, training, rng)
                # inverted dropout: keep with probability 1-p, scale survivors by 1/(1-p)
                np.greater_equal(rng.random(mask.shape, dtype=mask.dtype), dropout, out=mask)
                mask *= 1.0 / (1.0 - dropout)
                np.multiply(pre, mask, out=out)
            else:
                forward(z, out, training, rng)
            a = out
        return a

    def backward(self, delta: np.ndarray) -> None:
        """Backpropagate dC/dz of the output layer (shape (n, output_dim)) into ``grads``."""
        buf = self._buffers[self._n]
        ones = buf.ones
        for a_in, gW, gb, WT, g, backward, z_below, a_below, mask, pre_below in buf.bplan:
            np.dot(a_in.T if a_in is not None else self._in.T, delta, out=gW)
            np.dot(ones, delta, out=gb)
            if g is None:
                break
            np.dot(delta, WT, out=g)
            if mask is not None and self._training:
                np.multiply(g, mask, out=g)
                delta = backward(z_below, pre_below, g)
            else:
                delta = backward(z_below, a_below, g)

    def output_delta(self, loss: Loss, y: np.ndarray, scale: float) -> np.ndarray:
        """dC/dz of the output layer for the last forward pass, ``scale`` times the
        per-sample gradients (scale = 1/n_global gives the batch mean)."""
        buf = self._buffers[self._n]
        act = self.layers[-1].activation
        a, out = buf.act[-1], buf.G[-1]
        if act.name in loss.fused_with:
            # sigmoid+BCE, softmax+CE, identity+MSE: dC/dz = a - y exactly
            return loss.fused_grad(a, y, scale, out=out)
        return act.backward(buf.Z[-1], a, loss.grad(a, y, scale, out=out))

    def loss_total(self, loss: Loss, y: np.ndarray) -> float:
        """sum over the last forward's samples of the per-sample cost."""
        buf = self._buffers[self._n]
        return loss.total_from_logits(buf.Z[-1], buf.act[-1], y)

    def gradient(self, X: np.ndarray, y: np.ndarray, loss: Loss, training: bool = False,
                 rng: np.random.Generator | None = None) -> float:
        """Fill ``grads`` with dC/dparams of the mean loss over (X, y); return the loss."""
        self.forward(X, training=training, rng=rng)
        n = X.shape[0]
        value = self.loss_total(loss, y) / n
        self.backward(self.output_delta(loss, y, 1.0 / n))
        return value

    def predict(self, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Outputs for X (evaluation mode: no dropout, RReLU at its mean slope)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"expected input of shape (n_samples, {self.input_dim}), got {X.shape}")
        out = np.empty((X.shape[0], self.output_dim), dtype=self.dtype)
        for start in range(0, X.shape[0], batch_size):
            stop = min(start + batch_size, X.shape[0])
            out[start:stop] = self.forward(X[start:stop])
        return out
