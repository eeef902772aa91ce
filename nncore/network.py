"""Feed-forward networks on one flat parameter buffer.

Layout: for every dense layer its weights ``W`` (fan_in, units, row-major), then its
bias ``b`` (units,), then one (units,) vector per learnable activation parameter; for
a batchnorm or layernorm layer its ``gamma`` then ``beta`` (width,); all views into
``Network.params``, their gradients the same views into ``Network.grads``, and
BatchNorm's running statistics views into ``Network.state``. An optimiser therefore
updates every parameter of the network in a few whole-buffer operations, and a
data-parallel reducer sums one buffer. The layer types and the one function that
computes this layout from a config are in :mod:`nncore.layers`.

A network of dense layers only runs the plans below: activations and deltas live in
C-contiguous buffers preallocated per batch size, and the matrix products go through
``np.dot(..., out=)`` (straight to BLAS, less per-call overhead than ``matmul``), so a
training step allocates nothing but a few scalars. For small layers the cost of a step
is the number of NumPy calls, which is why the loops below are spelled out rather than
composed from smaller helpers. A network with other layer types takes the general
path (each layer's ``forward``/``backward``), which writes into per-batch-size
workspaces (:class:`_LayerBuffers`, cached by the same rule), so it too allocates
nothing per step after the first at a batch size.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .activations import Activation
from .initializers import get_initializer
from .layers import Dense, Layer, build_layer, draw_dropout_mask
from .losses import Loss
from .registry import check_number

__all__ = ["DTYPES", "Dense", "Network", "resolve_dtype"]

DTYPES = {"float32": np.float32, "float64": np.float64}
_MAX_CACHED_BATCH_SIZES = 4


def resolve_dtype(dtype: Any) -> np.dtype:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return np.dtype(DTYPES[name])


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


class _LayerBuffers:
    """The general path's per-batch-size work arrays for training: one workspace per
    layer (:meth:`Layer.workspace`: its output and saved intermediates; the arrays of
    its backward, dC/dx among them, join it on the first backward), the output layer's
    dC/dz, and the cast of an input of another dtype.

    An evaluation forward uses none of them: it allocates its arrays per call, as it
    always has, so a training output held across it stays intact and an evaluation
    chunk (up to ``predict``'s 4096 rows) costs no cached memory.
    """

    def __init__(self, net: Network, n: int) -> None:
        self.train = [la.workspace(n, net.dtype) for la in net.layers]
        self.delta = np.empty((n, net.output_dim), dtype=net.dtype)
        self.X: np.ndarray | None = None


class Network:
    """A feed-forward stack of layers with flat parameter, gradient and state buffers.

    Parameters
    ----------
    input_dim : int
        Number of input features.
    layers : sequence of Layer or dict
        Layers (or their configs: ``{"units": 10, "activation": "softmax"}`` is dense,
        ``{"type": "batchnorm"}`` etc. name another type of :data:`nncore.layers.LAYERS`).
        The last one is dense: it is the output the loss sees.
    init : str or dict
        Default weight initialiser (biases start at zero).
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initialisation; the same seed gives the same parameters.

    Attributes
    ----------
    params, grads : ndarray of shape (n_params,)
    state : ndarray of shape (n_state,)
        Non-trainable values (BatchNorm's running statistics), in the network's dtype so
        evaluation computes in one dtype; checkpointed with the parameters.
    reducer : Reducer or None
        Set by the trainer: BatchNorm all-reduces its batch statistics through it.
    """

    def __init__(self, input_dim: int, layers: Sequence[Layer | dict], init: Any = "glorot_uniform",
                 dtype: Any = "float32", seed: int = 0) -> None:
        self.input_dim = check_number("input_dim", input_dim, low=1, integer=True)
        self.layers: list[Any] = [build_layer(layer) for layer in layers]
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        if self.layers[-1].kind != "dense":
            raise ValueError(f"the output (last) layer must be dense, got {self.layers[-1].kind!r}")
        if self.layers[-1].dropout:
            raise ValueError("dropout on the output layer would randomise predictions; put it on hidden layers")
        # dense-only networks keep the preallocated plans (_Buffers); others take the
        # general per-layer path
        self._general = any(layer.kind != "dense" for layer in self.layers)
        self.init = get_initializer(init)
        self.dtype = resolve_dtype(dtype)
        self.seed = int(seed)
        self.reducer: Any = None
        self._layout()
        self.reset_parameters(self.seed)
        self._buffers: dict[int, Any] = {}  # _Buffers, or _LayerBuffers on the general path
        self._ws: list[Any] = []  # the general path's workspaces of the last forward (None: the layer's own)
        self._in: np.ndarray | None = None
        self._n = 0

    # -- construction --------------------------------------------------------------
    def _layout(self) -> None:
        parts, fan_in = [], self.input_dim
        for layer in self.layers:
            parts.append((fan_in, layer.param_parts(fan_in), layer.state_parts(fan_in)))
            fan_in = layer.output_dim(fan_in)
        self.params = np.zeros(sum(s for _, pp, _ in parts for _, s in pp), dtype=self.dtype)
        self.grads = np.zeros_like(self.params)
        self.state = np.zeros(sum(s for _, _, sp in parts for _, s in sp), dtype=self.dtype)
        self.slices: list[tuple[str, slice]] = []
        self.state_slices: list[tuple[str, slice]] = []
        offset = state_offset = 0
        for i, (layer, (fan_in, pp, sp)) in enumerate(zip(self.layers, parts, strict=True)):
            views, state = {}, {}
            for name, size in pp:
                region = slice(offset, offset + size)
                self.slices.append((f"layer{i}.{name}", region))
                views[name] = (self.params[region], self.grads[region])
                offset += size
            for name, size in sp:
                region = slice(state_offset, state_offset + size)
                self.state_slices.append((f"layer{i}.{name}", region))
                state[name] = self.state[region]
                state_offset += size
            layer.bind(fan_in, views, state)

    def reset_parameters(self, seed: int) -> None:
        """(Re)initialise all parameters from ``seed``: weights by the initialisers,
        biases to zero, learnable activation parameters to their initial values,
        normalisation scales to one and shifts to zero, running statistics to (0, 1)."""
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.reset(rng, self.init)

    @property
    def n_params(self) -> int:
        return int(self.params.size)

    @property
    def output_dim(self) -> int:
        return self.layers[-1].units  # the last layer is dense (checked in __init__)

    @property
    def output_activation(self) -> Activation:
        return self.layers[-1].activation

    @property
    def stochastic(self) -> bool:
        """True when training draws random numbers (dropout, RReLU)."""
        return any(layer.stochastic for layer in self.layers)

    def get_config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "init": self.init.get_config(), "dtype": self.dtype.name,
                "layers": [layer.get_config() for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any], seed: int = 0) -> Network:
        return cls(seed=seed, **config)

    def __repr__(self) -> str:
        dims = "-".join([str(self.input_dim)] + [str(la.units) if la.kind == "dense" else la.kind
                                                 for la in self.layers])
        return f"Network({dims}, {self.n_params} params, {self.dtype.name})"

    # -- forward / backward ----------------------------------------------------------
    def buffers(self, n: int) -> Any:
        """The work arrays for batch size n (:class:`_Buffers`, or :class:`_LayerBuffers`
        for a mixed network), kept for the last few batch sizes."""
        buf = self._buffers.get(n)
        if buf is None:
            if len(self._buffers) >= _MAX_CACHED_BATCH_SIZES:
                self._buffers.pop(next(iter(self._buffers)))
            buf = self._buffers[n] = (_LayerBuffers if self._general else _Buffers)(self, n)
        return buf

    def forward(self, X: np.ndarray, training: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
        """Output activations for X of shape (n_samples, input_dim).

        The result is an internal buffer, overwritten by the next call: copy it to
        keep it. ``rng`` is required in training when the network has dropout or RReLU.
        """
        if self._general:
            return self._forward_general(X, training, rng)
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
                draw_dropout_mask(rng, mask, dropout)
                np.multiply(pre, mask, out=out)
            else:
                forward(z, out, training, rng)
            a = out
        return a

    def backward(self, delta: np.ndarray) -> None:
        """Backpropagate dC/dz of the output layer (shape (n, output_dim)) into ``grads``."""
        if self._general:
            self._backward_general(delta)
            return
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
        act = self.layers[-1].activation
        if self._general:
            last = self.layers[-1]
            z, a = last._z, last._pre
            out = self._buffers[self._n].delta if self._training else np.empty_like(z)
        else:
            buf = self._buffers[self._n]
            z, a, out = buf.Z[-1], buf.act[-1], buf.G[-1]
        if act.name in loss.fused_with:
            # sigmoid+BCE, softmax+CE, identity+MSE: dC/dz = a - y exactly
            return loss.fused_grad(a, y, scale, out=out)
        return act.backward(z, a, loss.grad(a, y, scale, out=out))

    def loss_total(self, loss: Loss, y: np.ndarray) -> float:
        """sum over the last forward's samples of the per-sample cost."""
        if self._general:
            return loss.total_from_logits(self.layers[-1]._z, self.layers[-1]._pre, y)
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

    def _forward_general(self, X: np.ndarray, training: bool, rng: np.random.Generator | None) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"expected input of shape (n_samples, {self.input_dim}), got {X.shape}")
        n = X.shape[0]
        self._n, self._training = n, training
        if not training:  # evaluation: each layer makes fresh arrays (see _LayerBuffers)
            self._ws = wss = [None] * len(self.layers)
            a = X if X.dtype == self.dtype else X.astype(self.dtype)
        else:
            buf = self._buffers.get(n) or self.buffers(n)
            self._ws = wss = buf.train
            a = X
            if X.dtype != self.dtype and not X.flags.c_contiguous:
                a = X.astype(self.dtype)  # keeps X's layout, which a normalising first layer's sums see
            elif X.dtype != self.dtype:
                if buf.X is None:
                    buf.X = np.empty((n, self.input_dim), dtype=self.dtype)
                a = buf.X
                np.copyto(a, X, casting="unsafe")  # what X.astype(dtype) computes
        reducer = self.reducer
        for layer, ws in zip(self.layers, wss, strict=True):
            a = layer.forward(a, training, rng, reducer, ws)
        return a

    def _backward_general(self, delta: np.ndarray) -> None:
        layers, wss = self.layers, self._ws
        g = layers[-1].backward_z(delta, need_dx=len(layers) > 1)
        for i in range(len(layers) - 2, -1, -1):
            layer = layers[i]
            if i == 0 and layer.kind == "dense":
                # the input needs no gradient: skip the first layer's dC/dx product
                layer.backward_z(layer.delta(g), need_dx=False)
            else:
                g = layer.backward(g, self.reducer, wss[i])

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
