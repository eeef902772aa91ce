"""nncore.onnx_export: every activation, the input standardisation and every layer type
exported to ONNX, checked by onnx.checker and run by onnxruntime against Model.predict.

Parity: onnxruntime's float32 output equals Model.predict within rtol = atol = 1e-5
(``np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)``, i.e. each
|got - expected| <= 1e-5 + 1e-5 |expected|), on inputs that are exactly float32 numbers
(so both sides see the same x) from N(0, 1), N(0, 10), U(-40, 40) and exact zeros.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from nncore.activations import ACTIVATIONS
from nncore.data import Standardizer
from nncore.job import Job, Model
from nncore.network import Network
from nncore.onnx_export import INSTALL_HINT, OnnxUnavailable, to_onnx

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install '.[onnx]')")

RTOL = ATOL = 1e-5
N_FEATURES = 3
# Non-default hyperparameters: each changes the exported formula (a constant or a branch)
HYPER: list[tuple[str, dict]] = [
    ("leaky_relu", {"alpha": 0.2}),
    ("elu", {"alpha": 0.7}),
    ("elu", {"alpha": 0.0}),
    ("swish", {"beta": 1.7}),
    ("swish", {"beta": -0.6}),
    ("rrelu", {"lower": 0.05, "upper": 0.4}),
    ("gelu", {"approximate": True}),
    ("isrlu", {"alpha": 0.3}),
    ("binary_step", {"threshold": 0.5}),
    ("binary_step", {"threshold": -1.25}),
]
LAYERS_AVAILABLE = importlib.util.find_spec("nncore.layers") is not None
NEEDS_LAYERS = pytest.mark.skipif(not LAYERS_AVAILABLE, reason="nncore/layers.py (BatchNorm, LayerNorm, Dropout "
                                                               "layers) is not in this tree yet")


def inputs(seed: int = 0, n_features: int = N_FEATURES) -> np.ndarray:
    """Rows small, large and negative, and a row of zeros (the kinks), exactly float32."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(40, n_features)), rng.normal(scale=10, size=(40, n_features)),
                        rng.uniform(-40, 40, size=(20, n_features)), np.zeros((1, n_features))])
    return X.astype(np.float32).astype(np.float64)


def randomise(net: Network, seed: int) -> None:
    """Random biases and random per-unit learnable activation parameters: PReLU slopes of
    either sign, PELU's a and b, SoftExponential's alpha of both signs and 0 across units."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if getattr(layer, "kind", "dense") != "dense":
            continue
        layer.b[...] = rng.normal(0.0, 0.5, layer.units)
        act, u = layer.activation, layer.units
        if act.name == "prelu":
            act.p["alpha"][...] = rng.uniform(-0.5, 1.5, u)
        elif act.name == "pelu":
            act.p["a"][...] = rng.uniform(0.3, 2.0, u)
            act.p["b"][...] = rng.uniform(0.3, 2.0, u)
        elif act.name == "soft_exponential":
            alpha = rng.uniform(0.01, 0.5, u) * np.resize([1.0, -1.0, 1.0, -1.0, 0.0], u)
            act.p["alpha"][...] = alpha
        else:
            for name in act.params:  # an activation added later with parameters of its own
                act.p[name][...] = rng.uniform(0.5, 1.5, u)


def run(data: bytes, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = session.run(["output"], {"input": X.astype(np.float32)})
    return got


def check_parity(model: Model, X: np.ndarray, **kwargs) -> float:
    """Export, check, run; the largest absolute error against Model.predict."""
    data = model.to_onnx(**kwargs)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == model.net.input_dim  # any batch size
    got = run(data, X)
    expected = model.predict(X)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    return float(np.abs(got - expected).max())


def activation_cases() -> list:
    cases = [pytest.param({"name": n}, id=n) for n in ACTIVATIONS.names()]
    cases += [pytest.param({"name": n, **kw}, id=f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}")
              for n, kw in HYPER]
    return cases


def scaler(seed: int = 7, n: int = N_FEATURES) -> Standardizer:
    rng = np.random.default_rng(seed)
    return Standardizer(rng.normal(0.0, 3.0, n), rng.uniform(0.5, 3.0, n))


# -- every activation ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("place", ["hidden", "output"])
@pytest.mark.parametrize("activation", activation_cases())
def test_every_activation_exports_and_runs_as_predict(activation, place, dtype):
    if place == "hidden":  # the activation's outputs mixed by a dense layer after it
        layers = [{"units": 7, "activation": activation}, {"units": 3, "activation": "identity"}]
    else:  # the activation's outputs themselves
        layers = [{"units": 5, "activation": activation}]
    net = Network(N_FEATURES, layers, dtype=dtype, seed=11)
    randomise(net, seed=12)
    check_parity(Model(net, scaler(), "regression", {}), inputs())


def test_soft_exponential_units_of_both_signs_and_zero_each_keep_their_formula():
    # tiny alphas: (e^{alpha z} - 1)/alpha and ln(1 + v)/alpha need expm1 and log1p, which
    # ONNX lacks; Exp(.) - 1 or Log(1 + .) would be off by ~eps/alpha = 1e-4 here
    net = Network(1, [{"units": 7, "activation": "soft_exponential"}], seed=0)
    net.layers[0].W[...] = 1.0
    alpha = np.array([0.4, -0.4, 0.0, 0.05, -0.05, 1e-3, -1e-3])
    net.layers[0].activation.p["alpha"][...] = alpha
    z = np.linspace(-2.0, 3.0, 51, dtype=np.float32).astype(np.float64)[:, None]
    got = run(Model(net, None, "regression", {}).to_onnx(), z)
    # the three formulas by hand: log branch, identity, exp branch (L > 0 on this range)
    a, safe = alpha[None, :], np.where(alpha == 0, 1.0, alpha)[None, :]
    with np.errstate(invalid="ignore"):  # np.where evaluates the log branch on every unit
        by_hand = np.where(a > 0, np.expm1(a * z) / safe + a, np.where(a < 0, -np.log1p(-a * (z + a)) / safe, z))
    np.testing.assert_allclose(got, by_hand, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("threshold", [0.0, 0.5, -1.25])
def test_binary_step_is_1_from_its_threshold_on(threshold):
    net = Network(1, [{"units": 1, "activation": {"name": "binary_step", "threshold": threshold}}], seed=0)
    net.layers[0].W[...] = 1.0
    z = np.array([[threshold], [np.nextafter(np.float32(threshold), np.float32(-np.inf))], [threshold + 1.0]])
    model = Model(net, None, "binary", {})
    assert run(model.to_onnx(), z).ravel().tolist() == model.predict(z).ravel().tolist() == [1.0, 0.0, 1.0]


def test_rrelu_exports_its_mean_slope_and_dropout_is_the_identity():
    net = Network(N_FEATURES, [{"units": 6, "activation": {"name": "rrelu", "lower": 0.1, "upper": 0.3},
                                "dropout": 0.5}, {"units": 2}], seed=3)
    model = Model(net, None, "regression", {})
    check_parity(model, inputs())
    proto = onnx.load_from_string(model.to_onnx())
    (leaky,) = [n for n in proto.graph.node if n.op_type == "LeakyRelu"]
    assert leaky.attribute[0].f == pytest.approx(0.2)
    assert not [n for n in proto.graph.node if n.op_type in ("Dropout", "RandomUniformLike")]


# -- the input standardisation -------------------------------------------------------------

def test_the_standardisation_is_in_the_graph():
    net = Network(N_FEATURES, [{"units": 4, "activation": "tanh"}, {"units": 2}], seed=5)
    randomise(net, 6)
    X = inputs(1)
    with_scaler, without = Model(net, scaler(), "regression", {}), Model(net, None, "regression", {})
    check_parity(with_scaler, X)
    check_parity(without, X)
    a, b = run(with_scaler.to_onnx(), X), run(without.to_onnx(), X)
    assert np.abs(a - b).max() > 0.1  # the scaler matters, so parity above proves it is applied
    ops = [n.op_type for n in onnx.load_from_string(with_scaler.to_onnx()).graph.node]
    assert ops[:4] == ["Cast", "Sub", "Div", "Cast"]  # in float64, as Standardizer.transform computes it
    assert [n.op_type for n in onnx.load_from_string(without.to_onnx()).graph.node][0] == "MatMul"


# -- a trained classifier: softmax output, from its checkpoint --------------------------------

def test_a_trained_softmax_classifier_from_its_checkpoint(tmp_path):
    spec = {"name": "iris", "model": {"layers": [{"units": 8, "activation": "relu"},
                                                 {"units": 3, "activation": "softmax"}]},
            "loss": "categorical_cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
            "data": {"dataset": "iris", "validation_split": 0.2}, "batch_size": 16, "epochs": 20, "seed": 1,
            "checkpoint_every": 20}
    job = Job(spec, out_dir=tmp_path)
    job.run()
    model = Model.load(job.checkpointer.latest)
    assert model.scaler is not None and model.net.output_activation.name == "softmax"
    X = inputs(2, 4) + 4.0  # raw rows near iris (its features are 0.1..7.9 cm) and far from it
    check_parity(model, X)
    got = run(model.to_onnx(), X)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    from nncore.datasets import load_dataset

    iris = load_dataset("iris").X.astype(np.float32).astype(np.float64)
    check_parity(model, iris)
    assert (run(model.to_onnx(), iris).argmax(axis=1) == model.predict_labels(iris)).all()


# -- layer types (the layer protocol) ------------------------------------------------------

@NEEDS_LAYERS
@pytest.mark.parametrize("opset", [13, 17])
def test_batchnorm_layernorm_and_dropout_layers(opset):
    layers = [{"units": 6, "activation": "elu"}, {"type": "batchnorm", "eps": 1e-3},
              {"type": "dropout", "rate": 0.4}, {"units": 5, "activation": "gelu"},
              {"type": "layernorm", "eps": 1e-4}, {"units": 3, "activation": "softmax"}]
    net = Network(N_FEATURES, layers, seed=8)
    randomise(net, 9)
    rng = np.random.default_rng(10)
    kinds = [la.kind for la in net.layers]
    assert kinds == ["dense", "batchnorm", "dropout", "dense", "layernorm", "dense"]
    for la in net.layers:
        if la.kind in ("batchnorm", "layernorm"):
            la.gamma[...] = rng.uniform(0.5, 2.0, la.gamma.shape)
            la.beta[...] = rng.normal(0.0, 1.0, la.beta.shape)
        if la.kind == "batchnorm":  # as after training: not the initial 0 and 1
            la.running_mean[...] = rng.normal(0.0, 1.0, la.running_mean.shape)
            la.running_var[...] = rng.uniform(0.2, 3.0, la.running_var.shape)
    model = Model(net, scaler(), "multiclass", {})
    check_parity(model, inputs(3), opset=opset)
    ops = {n.op_type for n in onnx.load_from_string(model.to_onnx(opset=opset)).graph.node}
    assert ("LayerNormalization" in ops) == (opset >= 17)


@NEEDS_LAYERS
def test_a_network_trained_with_batchnorm_from_its_checkpoint(tmp_path):
    spec = {"model": {"layers": [{"units": 8, "activation": "tanh"}, {"type": "batchnorm"},
                                 {"type": "dropout", "rate": 0.2}, {"units": 1, "activation": "sigmoid"}]},
            "loss": "binary_cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
            "data": {"dataset": "moons", "n_samples": 200, "validation_split": 0.0}, "batch_size": 32, "epochs": 5,
            "seed": 2, "checkpoint_every": 5}
    job = Job(spec, out_dir=tmp_path)
    job.run()
    model = Model.load(job.checkpointer.latest)
    bn = next(la for la in model.net.layers if la.kind == "batchnorm")
    assert not np.allclose(bn.running_var, 1.0)  # trained statistics were restored and are exported
    check_parity(model, inputs(4, 2))


# -- the file, the opset, refusals ------------------------------------------------------------

def test_to_onnx_writes_the_file_it_returns(tmp_path):
    model = Model(Network(2, [{"units": 1, "activation": "sigmoid"}]), None, "binary", {})
    data = model.to_onnx(tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == data == to_onnx(model)
    props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert props["task"] == "binary" and props["n_features"] == "2" and props["n_outputs"] == "1"


def test_a_bad_opset_and_an_unknown_activation_are_refused():
    model = Model(Network(2, [{"units": 1, "activation": "tanh"}]), None, "regression", {})
    with pytest.raises(ValueError, match="opset must be between 13"):
        to_onnx(model, opset=12)
    model.net.layers[0].activation.name = "made_up"
    with pytest.raises(NotImplementedError, match="'made_up' has no ONNX export"):
        to_onnx(model)


def test_without_onnx_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    model = Model(Network(2, [{"units": 1}]), None, "regression", {})
    with pytest.raises(OnnxUnavailable) as caught:
        model.to_onnx()
    assert isinstance(caught.value, ImportError)
    assert str(caught.value) == INSTALL_HINT == ("ONNX export needs the optional packages onnx and onnxruntime: "
                                                 "pip install 'trainyard[onnx]'")


def test_nncore_imports_nothing_outside_nncore():
    source = (Path(__file__).parents[2] / "nncore/onnx_export.py").read_text()
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert all(m.startswith((".", "__future__", "math", "collections", "typing", "numpy")) for m in imports), imports
    assert "import onnx" in source and not [m for m in imports if m.startswith("onnx")]  # only inside the function
