"""Tests for nncore.activations and nncore.special: gradients, hand-worked values,
RReLU's randomness, configs, buffers, dtypes and overflow."""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from nncore.activations import ACTIVATIONS, Activation, SoftExponential
from nncore.special import erf

NAMES = ACTIVATIONS.names()
EXPECTED_NAMES = {
    "identity", "sigmoid", "tanh", "relu", "softmax",
    "leaky_relu", "elu", "swish", "swish1", "prelu", "rrelu", "pelu", "softplus",
    "arctan", "gelu", "isrlu", "selu", "soft_exponential", "bipolar_sigmoid", "binary_step",
}
# Non-default hyperparameters, so gradients and the config round trip see them.
NON_DEFAULT: list[tuple[str, dict]] = [
    ("leaky_relu", {"alpha": 0.2}),
    ("elu", {"alpha": 0.7}),
    ("elu", {"alpha": 2.5}),
    ("swish", {"beta": 1.7}),
    ("swish", {"beta": -0.6}),
    ("prelu", {"alpha": 0.1}),
    ("rrelu", {"lower": 0.05, "upper": 0.4}),
    ("pelu", {"a": 1.3, "b": 0.6}),
    ("gelu", {"approximate": True}),
    ("isrlu", {"alpha": 0.3}),
    ("soft_exponential", {"alpha": 0.3}),
    ("soft_exponential", {"alpha": -0.4}),
    ("binary_step", {"threshold": 0.5}),
]
N, UNITS = 6, 8
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _configs() -> list:
    params = [pytest.param({"name": n}, id=n) for n in NAMES]
    params += [pytest.param({"name": n, **kw}, id=f"{n}-{kw}") for n, kw in NON_DEFAULT]
    return params


def _make(config: dict, units: int = UNITS, dtype=np.float64) -> Activation:
    act = ACTIVATIONS.resolve(config)
    if act.params:
        act.build(units, dtype)
    return act


def _kink(act: Activation) -> float:
    return float(getattr(act, "threshold", 0.0))


def _inputs(act: Activation, rng: np.random.Generator, n: int = N, units: int = UNITS) -> np.ndarray:
    """Uniform in (-3, 3), every unit with points 1e-3 and 0.05 either side of the
    kink, and nothing closer than 1e-3 to it (so no step h = 1e-6 crosses it)."""
    kink = _kink(act)
    z = rng.uniform(-3.0, 3.0, (n, units))
    close = np.abs(z - kink) < 1e-3
    z[close] = kink + np.copysign(0.5, z[close] - kink)
    z[:4] = kink + np.array([-1e-3, 1e-3, -0.05, 0.05])[:, None]
    if isinstance(act, SoftExponential):
        # keep the log branch's argument L = 1 - alpha (z + alpha) >= 0.05, away from the clip
        al = act.p["alpha"]
        with np.errstate(divide="ignore"):
            low = np.where(al < 0, 0.95 / al - al, -np.inf)
        z = np.maximum(z, low)
    return z


def _randomise_params(act: Activation, rng: np.random.Generator) -> None:
    units = next(iter(act.p.values())).shape[0]
    for name in act.params:
        if act.name == "soft_exponential":
            # every branch in one layer: negative, zero and positive alphas
            act.p[name][...] = np.resize([-0.5, 0.0, 0.7, -0.2, 0.0, 0.3, -0.9, 0.45], units)
        elif act.name == "prelu":
            act.p[name][...] = rng.uniform(-0.5, 1.5, units)  # also slopes outside [0, 1)
        else:
            act.p[name][...] *= rng.uniform(0.6, 1.6, units)


def _forward_fn(act: Activation, training: bool) -> Callable[[np.ndarray], np.ndarray]:
    # in training a fresh generator with a fixed seed draws the same RReLU slopes every call
    def f(z: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(1234) if training else None
        return act.forward(z, np.empty_like(z), training=training, rng=rng)
    return f


def _check_gradients(act: Activation, z: np.ndarray, rng: np.random.Generator,
                     training: bool = False) -> None:
    f = _forward_fn(act, training)
    g = rng.normal(size=z.shape)
    a = f(z)
    for name in act.params:
        act.g[name][...] = 123.0  # backward must write, not add
    z0, a0 = z.copy(), a.copy()
    dz = act.backward(z, a, g.copy())
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(a, a0)

    h = 1e-6
    num = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        num[idx] = np.sum(g * (f(zp) - f(zm))) / (zp[idx] - zm[idx])
    np.testing.assert_allclose(dz, num, rtol=1e-6, atol=1e-8, err_msg=f"{act!r}: dC/dz")

    for name in act.params:
        p = act.p[name]
        # Richardson step: soft exponential's second derivative in alpha jumps at
        # alpha = 0, which leaves an O(h) error in a plain central difference there
        num_p = np.array([2.0 * _param_central(f, z, g, p, j, 5e-6) - _param_central(f, z, g, p, j, 1e-5)
                          for j in range(p.shape[0])])
        np.testing.assert_allclose(act.g[name], num_p, rtol=1e-6, atol=1e-8,
                                   err_msg=f"{act!r}: dC/d{name}")


def _param_central(f: Callable[[np.ndarray], np.ndarray], z: np.ndarray, g: np.ndarray,
                   p: np.ndarray, j: int, step: float) -> float:
    """Central difference of <g, f(z)> in the parameter element p[j]."""
    old = p[j]
    p[j] = old + step
    fp = f(z)
    p[j] = old - step
    fm = f(z)
    p[j] = old
    return float(np.sum(g * (fp - fm))) / (2.0 * step)


# -- registry -----------------------------------------------------------------------------

def test_registered_names():
    assert set(NAMES) == EXPECTED_NAMES


# -- gradients ------------------------------------------------------------------------------

@pytest.mark.parametrize("config", _configs())
def test_backward_matches_central_differences(config):
    act = _make(config)
    rng = np.random.default_rng(0)
    _check_gradients(act, _inputs(act, rng), rng)


@pytest.mark.parametrize("config", [c for c in _configs() if ACTIVATIONS.get(c.values[0]["name"]).params])
def test_backward_matches_central_differences_with_per_unit_parameters(config):
    act = _make(config)
    rng = np.random.default_rng(0)
    _randomise_params(act, rng)
    _check_gradients(act, _inputs(act, rng), rng)


def test_rrelu_backward_in_training_matches_central_differences():
    act = _make({"name": "rrelu", "lower": 0.1, "upper": 0.6})
    rng = np.random.default_rng(1)
    _check_gradients(act, _inputs(act, rng), rng, training=True)


@pytest.mark.parametrize("config", [c for c in _configs()
                                    if ACTIVATIONS.get(c.values[0]["name"]).elementwise])
def test_derivative_matches_elementwise_differences(config):
    act = _make(config)
    rng = np.random.default_rng(2)
    if act.params:
        _randomise_params(act, rng)
    z = _inputs(act, rng)
    h = 1e-6
    num = (act(z + h) - act(z - h)) / ((z + h) - (z - h))
    d = act.derivative(z)
    assert d.shape == z.shape and d.dtype == z.dtype
    np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(act.derivative(z, act(z)), d, rtol=1e-12, atol=1e-15)


def test_soft_exponential_alpha_gradient_at_zero_is_the_limit():
    # f = z + alpha (z^2/2 + 1) + O(alpha^2) on both branches, so df/dalpha -> z^2/2 + 1
    z = np.array([[-2.0, -0.3, 0.0, 0.8, 2.5]])
    g = np.ones_like(z)
    expected = z[0] ** 2 / 2.0 + 1.0
    for alpha in (0.0, 1e-7, -1e-7):
        act = _make({"name": "soft_exponential", "alpha": alpha}, units=5)
        act.backward(z, act(z), g.copy())
        np.testing.assert_allclose(act.g["alpha"], expected, rtol=1e-6)


def test_soft_exponential_clips_the_log_argument():
    act = _make({"name": "soft_exponential", "alpha": -0.5}, units=3)
    z = np.array([[-10.0, -1.5, -1e6]])  # L = 1 + 0.5 (z - 0.5) <= 0 for z <= -1.5
    eps = np.finfo(np.float64).eps
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = act(z)
        grad = act.backward(z, a, np.ones_like(z))
    np.testing.assert_allclose(a, -math.log(eps) / -0.5)
    np.testing.assert_array_equal(grad, 0.0)
    np.testing.assert_allclose(act.g["alpha"], math.log(eps) / 0.25)


# -- hand-worked values ------------------------------------------------------------------

LN2, LN3 = math.log(2.0), math.log(3.0)
PHI1 = 0.8413447460685429  # standard normal CDF at 1
PHI2 = 0.9772498680518208  # ... at 2


def _gelu_tanh(z: float) -> float:
    return 0.5 * z * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))


# (config, parameter values or None, z, f(z))
HAND = [
    ({"name": "identity"}, None, [-2.5, 0.0, 3.0], [-2.5, 0.0, 3.0]),
    ({"name": "sigmoid"}, None, [0.0, LN3, -LN3, -800.0], [0.5, 0.75, 0.25, 0.0]),
    ({"name": "tanh"}, None, [0.0, LN2, -LN2], [0.0, 0.6, -0.6]),
    ({"name": "relu"}, None, [-2.0, 0.0, 3.0], [0.0, 0.0, 3.0]),
    ({"name": "leaky_relu"}, None, [-2.0, 0.0, 3.0], [-0.02, 0.0, 3.0]),
    ({"name": "leaky_relu", "alpha": 0.2}, None, [-5.0, 4.0], [-1.0, 4.0]),
    ({"name": "elu"}, None, [-1.0, 0.0, 2.0], [math.exp(-1.0) - 1.0, 0.0, 2.0]),
    ({"name": "elu", "alpha": 0.5}, None, [-LN2, 3.0], [-0.25, 3.0]),
    ({"name": "selu"}, None, [1.0, 0.0, -1.0],
     [1.0507009873554805, 0.0, SELU_SCALE * SELU_ALPHA * (math.exp(-1.0) - 1.0)]),
    ({"name": "selu"}, None, [-1.0], [-1.1113307378125628]),
    ({"name": "swish"}, None, [0.0, LN3, -LN3], [0.0, 0.75 * LN3, -0.25 * LN3]),
    ({"name": "swish", "beta": 2.0}, None, [LN3 / 2.0, -LN3 / 2.0], [0.375 * LN3, -0.125 * LN3]),
    ({"name": "swish1"}, None, [0.0, LN3, -LN3], [0.0, 0.75 * LN3, -0.25 * LN3]),
    ({"name": "prelu"}, None, [-4.0, 2.0], [-1.0, 2.0]),
    ({"name": "prelu"}, {"alpha": [0.25, -1.0]}, [-4.0, -4.0], [-1.0, 4.0]),
    ({"name": "rrelu"}, None, [-48.0, 5.0, 0.0], [-11.0, 5.0, 0.0]),  # mean slope 11/48
    ({"name": "pelu", "a": 2.0, "b": 4.0}, None, [8.0, -4.0 * LN2, 0.0], [4.0, -1.0, 0.0]),
    ({"name": "pelu"}, {"a": [1.0, 3.0], "b": [2.0, 1.0]}, [-2.0 * LN2, 1.0], [-0.5, 3.0]),
    ({"name": "softplus"}, None, [0.0, LN3, -1000.0, 1000.0], [LN2, 2.0 * LN2, 0.0, 1000.0]),
    ({"name": "arctan"}, None, [1.0, -math.sqrt(3.0), 0.0], [math.pi / 4.0, -math.pi / 3.0, 0.0]),
    ({"name": "gelu"}, None, [1.0, -1.0, 2.0, 0.0], [PHI1, -(1.0 - PHI1), 2.0 * PHI2, 0.0]),
    ({"name": "gelu"}, None, [0.5], [0.25 * (1.0 + math.erf(0.5 / math.sqrt(2.0)))]),
    ({"name": "gelu", "approximate": True}, None, [1.0, -1.5, 0.0],
     [_gelu_tanh(1.0), _gelu_tanh(-1.5), 0.0]),
    ({"name": "isrlu"}, None, [-math.sqrt(3.0), 2.0, 0.0], [-math.sqrt(3.0) / 2.0, 2.0, 0.0]),
    ({"name": "isrlu", "alpha": 0.25}, None, [-2.0], [-math.sqrt(2.0)]),
    ({"name": "soft_exponential"}, None, [3.0, -1.5], [3.0, -1.5]),
    ({"name": "soft_exponential", "alpha": 1.0}, None, [math.log(5.0), 0.0], [5.0, 1.0]),  # e^z
    ({"name": "soft_exponential", "alpha": -1.0}, None, [math.e, 1.0], [1.0, 0.0]),  # ln z
    ({"name": "soft_exponential"}, {"alpha": [1.0, 0.0, -1.0]}, [LN2, 7.0, 4.0],
     [2.0, 7.0, math.log(4.0)]),
    ({"name": "bipolar_sigmoid"}, None, [LN3, 0.0, -LN3, 1000.0], [0.5, 0.0, -0.5, 1.0]),
    ({"name": "binary_step"}, None, [-0.1, 0.0, 2.0], [0.0, 1.0, 1.0]),
    ({"name": "binary_step", "threshold": 0.5}, None, [0.4, 0.5, -3.0], [0.0, 1.0, 0.0]),
]


@pytest.mark.parametrize("config, params, z, expected", HAND,
                         ids=[f"{c['name']}-{i}" for i, (c, *_) in enumerate(HAND)])
def test_hand_worked_values(config, params, z, expected):
    z = np.array([z])
    act = _make(config, units=z.shape[1])
    for name, value in (params or {}).items():
        act.p[name][...] = value
    np.testing.assert_allclose(act(z)[0], expected, rtol=1e-14, atol=1e-15)


def test_every_activation_has_hand_worked_values():
    assert {c["name"] for c, *_ in HAND} | {"softmax"} == set(NAMES)


def test_softmax_hand_worked_values():
    act = ACTIVATIONS.resolve("softmax")
    z = np.array([[0.0, LN2, LN3], [1000.0, 1000.0, 1000.0], [-LN2, 0.0, -np.inf]])
    expected = [[1 / 6, 2 / 6, 3 / 6], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 2 / 3, 0.0]]
    np.testing.assert_allclose(act(z), expected, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("name, z, expected", [
    ("sigmoid", 0.0, 0.25),
    ("tanh", 0.0, 1.0),
    ("softplus", 0.0, 0.5),
    ("arctan", 1.0, 0.5),
    ("gelu", 0.0, 0.5),
    ("gelu", 1.0, PHI1 + math.exp(-0.5) / math.sqrt(2.0 * math.pi)),
    ("swish1", 0.0, 0.5),
    ("bipolar_sigmoid", 0.0, 0.5),
    ("isrlu", -math.sqrt(3.0), 0.125),
    ("elu", -1.0, math.exp(-1.0)),
    ("selu", -1.0, SELU_SCALE * SELU_ALPHA * math.exp(-1.0)),
    ("selu", 2.0, SELU_SCALE),
    ("binary_step", 0.3, 0.0),
])
def test_hand_worked_derivatives(name, z, expected):
    act = ACTIVATIONS.resolve(name)
    assert act.derivative(np.array([[z]]))[0, 0] == pytest.approx(expected, rel=1e-14, abs=1e-15)


# -- RReLU -----------------------------------------------------------------------------------

def test_rrelu_training_draws_slopes_in_range_reproducibly():
    z = -np.ones((200, 50))
    act = ACTIVATIONS.resolve({"name": "rrelu", "lower": 0.1, "upper": 0.3})
    a = act(z, training=True, rng=np.random.default_rng(3))
    slopes = -a
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3
    assert slopes.std() > 0.05  # one slope per element, not one per batch
    assert abs(slopes.mean() - 0.2) < 0.005
    np.testing.assert_array_equal(act.slope, slopes)

    again = ACTIVATIONS.resolve({"name": "rrelu", "lower": 0.1, "upper": 0.3})
    np.testing.assert_array_equal(again(z, training=True, rng=np.random.default_rng(3)), a)
    assert not np.array_equal(again(z, training=True, rng=np.random.default_rng(4)), a)


def test_rrelu_evaluation_uses_the_mean_slope():
    act = ACTIVATIONS.resolve({"name": "rrelu", "lower": 0.1, "upper": 0.3})
    act(-np.ones((4, 4)), training=True, rng=np.random.default_rng(0))
    z = np.array([[-10.0, 10.0, -1.0]])
    a = act(z)
    np.testing.assert_allclose(a, [[-2.0, 10.0, -0.2]], rtol=1e-15)
    np.testing.assert_allclose(act.backward(z, a, np.ones_like(z)), [[0.2, 1.0, 0.2]], rtol=1e-15)


def test_rrelu_backward_uses_the_forward_slopes():
    act = ACTIVATIONS.resolve("rrelu")
    rng = np.random.default_rng(5)
    z = rng.uniform(-2.0, 2.0, (30, 7))
    a = act(z, training=True, rng=rng)
    slopes = np.where(z > 0, 1.0, a / z)
    grad = act.backward(z, a, np.ones_like(z))
    np.testing.assert_allclose(grad, slopes, rtol=1e-12)
    assert ((slopes[z <= 0] >= 1 / 8) & (slopes[z <= 0] <= 1 / 3)).all()


def test_rrelu_training_needs_rng():
    with pytest.raises(ValueError, match="rng"):
        ACTIVATIONS.resolve("rrelu")(np.ones((2, 2)), training=True)


# -- configs and the registry ------------------------------------------------------------------

@pytest.mark.parametrize("config", _configs())
def test_config_round_trip(config):
    act = ACTIVATIONS.resolve(config)
    cfg = act.get_config()
    assert cfg["name"] == config["name"]
    assert set(cfg) == {"name", *type(act).config_keys}
    for key, value in config.items():
        assert cfg[key] == value
    restored = ACTIVATIONS.resolve(json.loads(json.dumps(cfg)))
    assert type(restored) is type(act)
    assert restored.get_config() == cfg
    assert type(act).from_config(cfg).get_config() == cfg


def test_resolve_accepts_name_dict_and_instance():
    assert type(ACTIVATIONS.resolve("elu")).__name__ == "ELU"
    act = ACTIVATIONS.resolve({"name": "elu", "alpha": 0.5})
    assert act.alpha == 0.5
    assert ACTIVATIONS.resolve(act) is act


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown activation 'swishy'") as info:
        ACTIVATIONS.resolve("swishy")
    for name in NAMES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="'alpha'"):
        ACTIVATIONS.resolve({"name": "relu", "alpha": 1.0})


@pytest.mark.parametrize("config, message", [
    ({"name": "leaky_relu", "alpha": -1}, "`alpha` must be >= 0, got -1"),
    ({"name": "leaky_relu", "alpha": 1.0}, "`alpha` must be < 1, got 1.0"),
    ({"name": "elu", "alpha": -0.5}, "`alpha` must be >= 0, got -0.5"),
    ({"name": "isrlu", "alpha": 0}, "`alpha` must be > 0, got 0"),
    ({"name": "pelu", "a": 0.0}, "`a` must be > 0, got 0.0"),
    ({"name": "pelu", "b": -2}, "`b` must be > 0, got -2"),
    ({"name": "rrelu", "upper": 1.5}, "`upper` must be < 1, got 1.5"),
    ({"name": "rrelu", "lower": -0.1}, "`lower` must be >= 0, got -0.1"),
    ({"name": "rrelu", "lower": 0.4, "upper": 0.2}, "`lower` must be <= `upper`, got lower=0.4, upper=0.2"),
    ({"name": "gelu", "approximate": 1}, "`approximate` must be a bool, got 1"),
    ({"name": "gelu", "approximate": "yes"}, "`approximate` must be a bool, got 'yes'"),
    ({"name": "swish", "beta": float("nan")}, "`beta` must be finite, got nan"),
    ({"name": "prelu", "alpha": "0.1"}, "`alpha` must be a number, got '0.1'"),
    ({"name": "soft_exponential", "alpha": float("inf")}, "`alpha` must be finite, got inf"),
    ({"name": "binary_step", "threshold": None}, "`threshold` must be a number, got None"),
])
def test_bad_hyperparameters_are_rejected(config, message):
    with pytest.raises(ValueError) as info:
        ACTIVATIONS.resolve(config)
    assert message in str(info.value)
    kwargs = {k: v for k, v in config.items() if k != "name"}
    with pytest.raises(ValueError):
        ACTIVATIONS.get(config["name"])(**kwargs)


# -- buffers, dtypes, overflow ---------------------------------------------------------------------

@pytest.mark.parametrize("config", _configs())
def test_forward_writes_into_a_strided_view(config):
    act = _make(config)
    rng = np.random.default_rng(6)
    zbuf = rng.uniform(-3.0, 3.0, (N, UNITS + 2))
    z = zbuf[:, 1:-1]  # non-contiguous input too
    expected = act(np.ascontiguousarray(z))
    buf = np.full((N, UNITS + 3), 7.0)
    out = buf[:, :UNITS]
    assert act.forward(z, out) is out
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(buf[:, UNITS:], 7.0)


@pytest.mark.parametrize("config", _configs())
def test_float32_stays_float32(config):
    act64 = _make(config)
    act32 = _make(config, dtype=np.float32)
    rng = np.random.default_rng(7)
    z64 = _inputs(act64, rng)
    z32 = z64.astype(np.float32)
    a32 = act32(z32)
    assert a32.dtype == np.float32
    np.testing.assert_allclose(a32, act64(z64), rtol=2e-5, atol=2e-6)
    g = rng.normal(size=z64.shape)
    d32 = act32.backward(z32, a32, g.astype(np.float32))
    assert d32.dtype == np.float32
    np.testing.assert_allclose(d32, act64.backward(z64, act64(z64), g.copy()), rtol=1e-4, atol=1e-5)
    for name in act32.params:
        assert act32.g[name].dtype == np.float32
    if act32.elementwise:
        assert act32.derivative(z32).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("config", _configs())
def test_no_overflow_warnings_on_large_inputs(config, dtype):
    act = _make(config, units=10, dtype=dtype)
    z = np.linspace(-1000.0, 1000.0, 200, dtype=dtype).reshape(20, 10)
    z[0, :3] = [-1000.0, 0.0, 1000.0]
    if act.name == "soft_exponential" and config.get("alpha", 0.0) > 0:
        # the exp branch is e^{alpha z}/alpha: it genuinely leaves float32 (and for
        # larger alpha float64) above alpha z ~ 88, so only the values it can represent
        z /= 1000.0 / (50.0 / config["alpha"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for training in (False, True):
            a = act(z, training=training, rng=np.random.default_rng(0))
            grad = act.backward(z, a, np.ones_like(z))
            assert np.isfinite(a).all() and np.isfinite(grad).all()
        if act.elementwise:
            assert np.isfinite(act.derivative(z)).all()


def test_soft_exponential_mixed_alphas_on_large_inputs_stay_finite():
    # negative alphas clip, zero is the identity; positive ones would overflow like exp
    act = _make({"name": "soft_exponential"}, units=4)
    act.p["alpha"][...] = [-1.0, 0.0, -0.01, 0.5]
    z = np.linspace(-1000.0, 1000.0, 400).reshape(100, 4)
    z[:, 3] /= 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = act(z)
        grad = act.backward(z, a, np.ones_like(z))
    assert np.isfinite(a).all() and np.isfinite(grad).all() and np.isfinite(act.g["alpha"]).all()


# -- nncore.special.erf ------------------------------------------------------------------------------

def test_erf_matches_math_erf():
    x = np.concatenate([
        np.linspace(-30.0, 30.0, 60001),
        np.linspace(-5.0, 5.0, 10007),
        [0.0, 0.46875, -0.46875, np.nextafter(0.46875, 1.0), 4.0, -4.0, np.nextafter(4.0, 5.0),
         26.5, 26.6, 1e-300, -1e-300, 5e-324, 1e-20, -3e-9, 1e300, -1e300],
        np.logspace(-310.0, 1.5, 2000),
    ])
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(x), expected, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(erf(-x), -expected, rtol=1e-15, atol=1e-300)


def test_erf_special_values_and_dtypes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = erf(np.array([np.inf, -np.inf, np.nan, -0.0, 0.0]))
    assert r[0] == 1.0 and r[1] == -1.0 and np.isnan(r[2])
    assert r[3] == 0.0 and math.copysign(1.0, r[3]) == -1.0 and math.copysign(1.0, r[4]) == 1.0
    x32 = np.linspace(-4.0, 4.0, 101, dtype=np.float32)
    r32 = erf(x32)
    assert r32.dtype == np.float32
    np.testing.assert_allclose(r32, [math.erf(v) for v in x32.astype(np.float64)], rtol=1e-7, atol=1e-8)
    assert erf(np.array([1, 2])).dtype == np.float64
    assert erf(np.array([[0.5]])).shape == (1, 1) and erf(0.5).shape == ()
    x = np.linspace(-3.0, 3.0, 7)
    expected = erf(x)
    out = np.empty((7, 2))[:, 0]
    assert erf(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    erf(x, out=x)  # in place
    np.testing.assert_array_equal(x, expected)
