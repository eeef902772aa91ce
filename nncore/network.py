"""Feed-forward dense networks on one flat parameter buffer.

Layout: for every layer, its weights and bias form one (fan_in + 1, units) block
``Wb`` whose last row is the bias, followed by one (units,) vector per learnable
activation parameter. ``W``, ``b`` and the activation parameters are views into
``Network.params``; their gradients are the same views into ``Network.grads``.

Each layer's input is kept with an extra column of ones, so a layer is one matmul
``z = [a, 1] @ Wb`` and its gradient one matmul ``[a, 1]^T @ delta`` (bias gradient
included). Activations and deltas live in buffers preallocated per batch size, so a
training step allocates nothing but a few scalars.
"""
from __future__ import annotations

from typing import Any, Sequence

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
    """A fully connected layer: a = f([x, 1] @ Wb), with optional inverted dropout on a.

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
        self.Wb = self.W = self.b = None  # views, set by Network
        self.gWb = self.gW = self.gb = None

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"units": self.units, "activation": self.activation.get_config()}
        if self.dropout:
            cfg["dropout"] = self.dropout
        if self.init is not None:
            cfg["init"] = self.init.get_config()
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Dense":
        return cls(**config)

    def __repr__(self) -> str:
        return f"Dense({self.units}, {self.activation!r}, dropout={self.dropout})"


class _Buffers:
    """Per-batch-size work arrays: inputs with a ones column, z, dC/da, dropout masks."""

    def __init__(self, net: "Network", n: int) -> None:
        dt = net.dtype
        dims = [net.input_dim] + [layer.units for layer in net.layers]
        last = len(net.layers)
        self.A: list[np.ndarray] = []
        for i, d in enumerate(dims):
            if i == last:
                self.A.append(np.empty((n, d), dtype=dt))
            else:
                a = np.empty((n, d + 1), dtype=dt)
                a[:, d] = 1.0
                self.A.append(a)
        self.Z = [np.empty((n, d), dtype=dt) for d in dims[1:]]
        self.G = [np.empty((n, d), dtype=dt) for d in dims[1:]]
        self.mask = [np.empty((n, layer.units), dtype=dt) if layer.dropout else None
                     for layer in net.layers]
        self.pre = [np.empty((n, layer.units), dtype=dt) if layer.dropout else None
                    for layer in net.layers]
        # views of the activations without the ones column
        self.act = [self.A[i + 1][:, : dims[i + 1]] for i in range(last)]


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
        for i, layer in enumerate(self.layers):
            n_wb = (fan_in + 1) * layer.units
            layer.in_dim = fan_in
            layer.Wb = self.params[offset: offset + n_wb].reshape(fan_in + 1, layer.units)
            layer.gWb = self.grads[offset: offset + n_wb].reshape(fan_in + 1, layer.units)
            layer.W, layer.b = layer.Wb[:fan_in], layer.Wb[fan_in]
            layer.gW, layer.gb = layer.gWb[:fan_in], layer.gWb[fan_in]
            self.slices.append((f"layer{i}.W", slice(offset, offset + fan_in * layer.units)))
            self.slices.append((f"layer{i}.b", slice(offset + fan_in * layer.units, offset + n_wb)))
            offset += n_wb
            pv, gv = {}, {}
            for name in layer.activation.params:
                pv[name] = self.params[offset: offset + layer.units]
                gv[name] = self.grads[offset: offset + layer.units]
                self.slices.append((f"layer{i}.{layer.activation.name}.{name}", slice(offset, offset + layer.units)))
                offset += layer.units
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
    def from_config(cls, config: dict[str, Any], seed: int = 0) -> "Network":
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

    def forward(self, X: np.ndarray, training: bool = False, rng: np.random.Generator | None = None,
                augmented: bool = False) -> np.ndarray:
        """Output activations for X of shape (n_samples, input_dim).

        With ``augmented=True`` X already carries a trailing column of ones (shape
        (n_samples, input_dim + 1)) and is used without a copy. The result is an
        internal buffer, overwritten by the next call: copy it to keep it.
        ``rng`` is required in training when the network has dropout or RReLU.
        """
        n = X.shape[0]
        buf = self.buffers(n)
        if augmented:
            inp = X
        else:
            if X.ndim != 2 or X.shape[1] != self.input_dim:
                raise ValueError(f"expected input of shape (n_samples, {self.input_dim}), got {X.shape}")
            inp = buf.A[0]
            np.copyto(inp[:, : self.input_dim], X, casting="same_kind")
        self._in, self._n, self._training = inp, n, training
        A, Z = buf.A, buf.Z
        a = inp
        for i, layer in enumerate(self.layers):
            z = Z[i]
            np.matmul(a, layer.Wb, out=z)
            out = buf.act[i]
            if layer.dropout and training:
                pre = buf.pre[i]
                layer.activation.forward(z, pre, training, rng)
                mask = buf.mask[i]
                # inverted dropout: keep with probability 1-p, scale survivors by 1/(1-p)
                np.greater_equal(rng.random(mask.shape, dtype=mask.dtype), layer.dropout, out=mask)
                mask *= 1.0 / (1.0 - layer.dropout)
                np.multiply(pre, mask, out=out)
            else:
                layer.activation.forward(z, out, training, rng)
            a = A[i + 1]
        return A[-1]

    def backward(self, delta: np.ndarray) -> None:
        """Backpropagate dC/dz of the output layer (shape (n, output_dim)) into ``grads``."""
        buf = self._buffers[self._n]
        layers = self.layers
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            np.matmul((buf.A[i] if i else self._in).T, delta, out=layer.gWb)
            if i == 0:
                break
            below = layers[i - 1]
            g = buf.G[i - 1]
            np.matmul(delta, layer.W.T, out=g)
            if below.dropout and self._training:
                np.multiply(g, buf.mask[i - 1], out=g)
                a = buf.pre[i - 1]
            else:
                a = buf.act[i - 1]
            delta = below.activation.backward(buf.Z[i - 1], a, g)

    def output_delta(self, loss: Loss, y: np.ndarray, scale: float) -> np.ndarray:
        """dC/dz of the output layer for the last forward pass, ``scale`` times the
        per-sample gradients (scale = 1/n_global gives the batch mean)."""
        buf = self._buffers[self._n]
        act = self.layers[-1].activation
        a, out = buf.A[-1], buf.G[-1]
        if act.name in loss.fused_with:
            # sigmoid+BCE, softmax+CE, identity+MSE: dC/dz = a - y exactly
            return loss.fused_grad(a, y, scale, out=out)
        return act.backward(buf.Z[-1], a, loss.grad(a, y, scale, out=out))

    def loss_total(self, loss: Loss, y: np.ndarray) -> float:
        """sum over the last forward's samples of the per-sample cost."""
        buf = self._buffers[self._n]
        return loss.total_from_logits(buf.Z[-1], buf.A[-1], y)

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
