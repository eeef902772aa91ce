"""A trained :class:`~nncore.job.Model` as an ONNX graph, for runtimes other than nncore.

The graph takes ``input`` (float32, shape [N, n_features], any N) of raw features and
gives ``output`` (float32, [N, n_outputs]) equal to :meth:`Model.predict`: the input
standardisation ``(x - mean) / std`` first, then every layer in evaluation mode (no
dropout, RReLU at its mean slope, BatchNorm on its running statistics), the output
layer's activation included. Weights and learnable per-unit activation parameters are
float32 initializers; the standardisation alone is computed in float64 (as
``Standardizer.transform`` does) and rounded once. A float64 network is exported as a
float32 graph: it agrees with the float64 model to float32 precision times the
function's conditioning (large for SoftExponential near its log branch's pole or for
e^{alpha z} with large alpha z).

Activations ONNX has as operators (Relu, LeakyRelu, PRelu, Elu, Selu, Tanh, Softmax,
Atan, Erf) are used as such; the others are compositions of standard operators that
follow nncore's own formulas (see the ``_act_*`` functions). ``onnx`` is imported only
here, when an export is asked for: it is an optional dependency
(``pip install 'trainyard[onnx]'``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .job import Model

__all__ = ["MIN_OPSET", "OnnxUnavailable", "to_onnx"]

#: Softmax over one axis (not "coerced to 2-D") and Clip with min/max inputs need opset 13
MIN_OPSET = 13
INSTALL_HINT = "ONNX export needs the optional packages onnx and onnxruntime: pip install 'trainyard[onnx]'"


class OnnxUnavailable(ImportError):
    """The optional ``onnx`` package is not installed."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:  # also sys.modules["onnx"] = None
        raise OnnxUnavailable() from None
    return onnx


class _Graph:
    """Nodes and float32 initializers, with fresh names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, value: Any, stem: str = "c", dtype: Any = np.float32) -> str:
        """An initializer (a scalar or an array), by name."""
        name = self.name(stem)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, stem: str | None = None, **attrs: Any) -> str:
        out = self.name(stem or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


# -- activations: (graph, z, activation, network dtype) -> output name ---------------------

def _act_identity(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    return g.op("Identity", z)


def _act_sigmoid(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    return g.op("Sigmoid", z)


def _act_tanh(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    return g.op("Tanh", z)


def _act_relu(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    return g.op("Relu", z)


def _act_softmax(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    return g.op("Softmax", z, axis=-1)


def _act_leaky_relu(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    # RReLU in evaluation is this with its mean slope (lower + upper)/2, its ``alpha``
    return g.op("LeakyRelu", z, alpha=float(act.alpha))


def _act_prelu(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    # one learnt slope per unit, broadcast over the last axis
    return g.op("PRelu", z, g.const(act.p["alpha"], "prelu_alpha"))


def _act_elu(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    return g.op("Elu", z, alpha=float(act.alpha))


def _act_selu(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    return g.op("Selu", z, alpha=float(act.ALPHA), gamma=float(act.SCALE))


def _expm1(g: _Graph, x: str) -> str:
    """e^x - 1 without the cancellation of Exp(x) - 1 near 0 (ONNX has no Expm1):
    Kahan's (u - 1) x / ln u with u = e^x for |x| < 1/2 (x where u rounds to 1), else u - 1."""
    u = g.op("Exp", x)
    um1 = g.op("Sub", u, g.const(1.0))
    kahan = g.op("Div", g.op("Mul", um1, x), g.op("Log", u))
    small = g.op("Where", g.op("Equal", u, g.const(1.0)), x, kahan)
    return g.op("Where", g.op("Less", g.op("Abs", x), g.const(0.5)), small, um1, stem="expm1")


def _log1p(g: _Graph, t: str, floor: float) -> str:
    """ln(max(1 + t, floor)) without the cancellation of Log(1 + t) near 0 (ONNX has no
    Log1p): Kahan's ln(u) t / (u - 1) with u = 1 + t for |t| < 1/2 (t where u rounds
    to 1), else ln u."""
    u = g.op("Max", g.op("Add", t, g.const(1.0)), g.const(floor))
    lg = g.op("Log", u)
    kahan = g.op("Div", g.op("Mul", lg, t), g.op("Sub", u, g.const(1.0)))
    small = g.op("Where", g.op("Equal", u, g.const(1.0)), t, kahan)
    return g.op("Where", g.op("Less", g.op("Abs", t), g.const(0.5)), small, lg, stem="log1p")


def _act_pelu(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    # a (max(z, 0)/b + expm1(min(z, 0)/b)), per-unit a and b: nncore's formula, which is
    # also right for a b the optimiser pushed below 0 (Elu(z/b) would not be)
    b = g.const(act.p["b"], "pelu_b")
    pos = g.op("Div", g.op("Max", z, g.const(0.0)), b)
    neg = _expm1(g, g.op("Div", g.op("Min", z, g.const(0.0)), b))
    return g.op("Mul", g.op("Add", pos, neg), g.const(act.p["a"], "pelu_a"), stem="pelu")


def _act_isrlu(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    # max(t / sqrt(1 + (sqrt(alpha) t)^2), z), t = clip(z, -c, 0), c = 1/(eps sqrt(alpha)):
    # beyond c the negative branch is -1/sqrt(alpha) to the last bit of float32
    eps = float(np.finfo(np.float32).eps)
    c = min(1.0 / (eps * math.sqrt(act.alpha)), float(np.finfo(np.float32).max))
    t = g.op("Clip", z, g.const(-c), g.const(0.0))
    s = g.op("Mul", t, g.const(math.sqrt(act.alpha)))
    s = g.op("Sqrt", g.op("Add", g.op("Mul", s, s), g.const(1.0)))
    return g.op("Max", g.op("Div", t, s), z, stem="isrlu")


def _swish(g: _Graph, z: str, beta: float) -> str:
    # z sigma(beta z) = 0.5 z (1 + tanh(beta z / 2)), as nncore computes it
    h = g.op("Add", g.op("Tanh", g.op("Mul", z, g.const(0.5 * beta))), g.const(1.0))
    return g.op("Mul", g.op("Mul", h, z), g.const(0.5), stem="swish")


def _act_swish(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    return _swish(g, z, float(act.beta))


def _act_softplus(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    # logaddexp(0, z) = max(z, 0) + ln(1 + e^{-|z|}): e^ only sees z <= 0, no overflow
    e = g.op("Exp", g.op("Neg", g.op("Abs", z)))
    return g.op("Add", g.op("Max", z, g.const(0.0)), _log1p(g, e, 0.0), stem="softplus")


def _act_arctan(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    return g.op("Atan", z)


def _act_gelu(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    if act.approximate:
        # 0.5 z (1 + tanh(z (K + C K z^2))), K = sqrt(2/pi), C = 0.044715
        k, c = act._K, act._C
        u = g.op("Add", g.op("Mul", g.op("Mul", z, z), g.const(c * k)), g.const(k))
        inner = g.op("Tanh", g.op("Mul", u, z))
    else:
        # 0.5 z (1 + erf(z / sqrt 2))
        inner = g.op("Erf", g.op("Mul", z, g.const(math.sqrt(0.5))))
    return g.op("Mul", g.op("Mul", g.op("Add", inner, g.const(1.0)), z), g.const(0.5), stem="gelu")


def _act_bipolar_sigmoid(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    # (1 - e^{-z}) / (1 + e^{-z}) = tanh(z / 2)
    return g.op("Tanh", g.op("Mul", z, g.const(0.5)), stem="bipolar_sigmoid")


def _act_soft_exponential(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    # Each unit's formula follows the sign of its alpha; with per-unit vectors
    # ap = max(alpha, 0), an = min(alpha, 0), inv = 1/alpha (1 where alpha = 0) and
    # zero = [alpha = 0], each branch is exactly 0 on the other branches' units, so
    #   f = expm1(ap z) inv + ap  -  log1p(max(-an z - an^2, eps - 1)) inv  +  zero z
    # (nncore's clip of L = 1 - alpha (z + alpha) at the network dtype's eps kept).
    al = np.asarray(act.p["alpha"], dtype=np.float64)
    ap, an = np.maximum(al, 0.0), np.minimum(al, 0.0)
    inv = 1.0 / np.where(al == 0, 1.0, al)
    zero = (al == 0).astype(np.float64)
    inv_c = g.const(inv, "softexp_inv")
    out = None
    if ap.any():
        e = _expm1(g, g.op("Mul", z, g.const(ap, "softexp_pos")))
        out = g.op("Add", g.op("Mul", e, inv_c), g.const(ap, "softexp_pos"))
    if an.any():
        t = g.op("Sub", g.op("Mul", z, g.const(-an, "softexp_neg")), g.const(an * an, "softexp_neg2"))
        lg = g.op("Mul", _log1p(g, t, float(np.finfo(dtype).eps)), inv_c)
        out = g.op("Neg", lg) if out is None else g.op("Sub", out, lg)
    if zero.any():
        lin = g.op("Mul", z, g.const(zero, "softexp_zero"))
        out = lin if out is None else g.op("Add", out, lin)
    return g.op("Identity", out if out is not None else z, stem="soft_exponential")


def _act_binary_step(g: _Graph, z: str, act: Any, dtype: np.dtype) -> str:
    step = g.op("GreaterOrEqual", z, g.const(float(act.threshold)))
    return g.op("Cast", step, to=g.onnx.TensorProto.FLOAT, stem="binary_step")


ACTIVATION_EXPORTERS: dict[str, Callable[[_Graph, str, Any, np.dtype], str]] = {
    "identity": _act_identity, "sigmoid": _act_sigmoid, "tanh": _act_tanh, "relu": _act_relu,
    "softmax": _act_softmax, "leaky_relu": _act_leaky_relu, "rrelu": _act_leaky_relu, "prelu": _act_prelu,
    "elu": _act_elu, "selu": _act_selu, "pelu": _act_pelu, "isrlu": _act_isrlu, "swish": _act_swish,
    "swish1": _act_swish, "softplus": _act_softplus, "arctan": _act_arctan, "gelu": _act_gelu,
    "bipolar_sigmoid": _act_bipolar_sigmoid, "soft_exponential": _act_soft_exponential,
    "binary_step": _act_binary_step,
}


def _activation(g: _Graph, x: str, act: Any, dtype: np.dtype) -> str:
    try:
        export = ACTIVATION_EXPORTERS[act.name]
    except KeyError:
        raise NotImplementedError(f"the activation {act.name!r} has no ONNX export yet") from None
    return export(g, x, act, dtype)


# -- layers ---------------------------------------------------------------------------------

def _dense(g: _Graph, x: str, layer: Any, i: int, dtype: np.dtype, opset: int) -> str:
    z = g.op("MatMul", x, g.const(layer.W, f"layer{i}_W"))
    z = g.op("Add", z, g.const(layer.b, f"layer{i}_b"))
    return z  # dropout is the identity in evaluation; the activation follows


def _batchnorm(g: _Graph, x: str, layer: Any, i: int, dtype: np.dtype, opset: int) -> str:
    # inference: (x - running_mean) / sqrt(running_var + eps) * gamma + beta
    std = np.sqrt(np.asarray(layer.running_var, dtype=np.float64) + float(layer.eps))
    y = g.op("Div", g.op("Sub", x, g.const(layer.running_mean, f"layer{i}_mean")), g.const(std, f"layer{i}_std"))
    return g.op("Add", g.op("Mul", y, g.const(layer.gamma, f"layer{i}_gamma")), g.const(layer.beta, f"layer{i}_beta"))


def _layernorm(g: _Graph, x: str, layer: Any, i: int, dtype: np.dtype, opset: int) -> str:
    gamma, beta = g.const(layer.gamma, f"layer{i}_gamma"), g.const(layer.beta, f"layer{i}_beta")
    if opset >= 17:
        return g.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=float(layer.eps))
    # before opset 17: the same from its parts (ReduceMean takes axes as an attribute up to 17)
    d = g.op("Sub", x, g.op("ReduceMean", x, axes=[-1], keepdims=1))
    var = g.op("ReduceMean", g.op("Mul", d, d), axes=[-1], keepdims=1)
    y = g.op("Div", d, g.op("Sqrt", g.op("Add", var, g.const(float(layer.eps)))))
    return g.op("Add", g.op("Mul", y, gamma), beta)


def _dropout(g: _Graph, x: str, layer: Any, i: int, dtype: np.dtype, opset: int) -> str:
    return g.op("Identity", x, stem=f"layer{i}_dropout")  # evaluation mode


LAYER_EXPORTERS: dict[str, Callable[[_Graph, str, Any, int, np.dtype, int], str]] = {
    "dense": _dense, "batchnorm": _batchnorm, "layernorm": _layernorm, "dropout": _dropout,
}


def to_onnx(model: Model, *, opset: int = 17) -> bytes:
    """The serialised ONNX ModelProto of ``model`` (see the module's docstring).

    ``opset``: the ai.onnx operator set, at least 13. :class:`OnnxUnavailable` (an
    ImportError) when the ``onnx`` package is not installed; NotImplementedError for a
    layer or activation this exporter does not know.
    """
    onnx = _import_onnx()
    helper, TensorProto = onnx.helper, onnx.TensorProto
    highest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= highest:
        raise ValueError(f"opset must be between {MIN_OPSET} and {highest} (the installed onnx's newest), got {opset}")
    net = model.net
    dtype = np.dtype(net.dtype)
    g = _Graph(onnx)
    x = "input"
    if model.scaler is not None:
        # in float64, as Standardizer.transform computes it, then rounded once to float32
        x = g.op("Cast", x, to=onnx.TensorProto.DOUBLE)
        x = g.op("Sub", x, g.const(model.scaler.mean, "scaler_mean", np.float64), stem="centred")
        x = g.op("Div", x, g.const(model.scaler.std, "scaler_std", np.float64), stem="standardized")
        x = g.op("Cast", x, to=onnx.TensorProto.FLOAT)
    for i, layer in enumerate(net.layers):
        kind = getattr(layer, "kind", "dense")
        try:
            export = LAYER_EXPORTERS[kind]
        except KeyError:
            raise NotImplementedError(f"layer {i} is a {kind!r} layer, which has no ONNX export yet") from None
        x = export(g, x, layer, i, dtype, opset)
        act = getattr(layer, "activation", None)
        if act is not None:
            x = _activation(g, x, act, dtype)
    g.nodes.append(helper.make_node("Identity", [x], ["output"]))
    graph = helper.make_graph(
        g.nodes, "trainyard",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", net.input_dim])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", net.output_dim])],
        initializer=g.inits,
        doc_string=f"{net!r}: raw features in, Model.predict's outputs out (task {model.task})")
    proto = helper.make_model(graph, producer_name="trainyard", opset_imports=[helper.make_opsetid("", opset)])
    # the IR version of the opset, not the installed onnx's newest: older runtimes load it
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import))
    helper.set_model_props(proto, {"task": str(model.task), "n_features": str(net.input_dim),
                                   "n_outputs": str(net.output_dim), "network": repr(net)})
    onnx.checker.check_model(proto)
    return proto.SerializeToString()

