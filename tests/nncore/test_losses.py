"""Tests for nncore.losses: gradients, scale semantics, fused pairs, edge inputs, config."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from nncore.activations import ACTIVATIONS
from nncore.losses import LOSSES, Loss

NAMES = LOSSES.names()
EXPECTED_NAMES = {
    "mse", "binary_cross_entropy", "categorical_cross_entropy",
    "exponential", "hellinger", "kl_divergence", "generalized_kl",
    "itakura_saito", "mae", "rmse",
}
# Non-default hyperparameters, so the config round trip and gradients see them.
NON_DEFAULT = {"exponential": {"tau": 0.5}}
# Which inputs lie inside each loss's domain (see _domain_inputs); a loss added
# later without an entry gets probabilities, which are inside every domain.
DOMAIN = {
    "mse": "real", "mae": "real", "rmse": "real", "exponential": "small",
    "binary_cross_entropy": "prob", "categorical_cross_entropy": "dist",
    "kl_divergence": "dist", "hellinger": "pos", "generalized_kl": "pos",
    "itakura_saito": "pos",
}


def _instances() -> list:
    params = [pytest.param(LOSSES.resolve(n), id=n) for n in NAMES]
    params += [pytest.param(LOSSES.resolve({"name": n, **kw}), id=f"{n}-{kw}")
               for n, kw in NON_DEFAULT.items()]
    return params


def _gapped(rng: np.random.Generator, low: float, high: float, shape: tuple[int, int],
            gap: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """a, y uniform in (low, high) with |a - y| >= gap everywhere, so no gradient
    element is ~0 (an elementwise relative error needs a nonzero reference) and
    |a - y| never crosses a kink (MAE) under the finite-difference step."""
    a = rng.uniform(low, high, shape)
    y = rng.uniform(low, high, shape)
    while True:
        close = np.abs(a - y) < gap
        if not close.any():
            return a, y
        y[close] = rng.uniform(low, high, int(close.sum()))


def _domain_inputs(name: str, rng: np.random.Generator, n: int = 5, m: int = 4
                   ) -> tuple[np.ndarray, np.ndarray]:
    kind = DOMAIN.get(name, "prob")
    if kind == "real":
        return _gapped(rng, -2.0, 2.0, (n, m))
    if kind == "small":  # keeps exp(sum (a-y)^2 / tau) moderate
        return _gapped(rng, -0.5, 0.5, (n, m))
    if kind == "pos":
        return _gapped(rng, 0.2, 3.0, (n, m))
    a, y = _gapped(rng, 0.05, 0.95, (n, m))
    if kind == "dist":  # target rows are distributions, every entry >= 0.1 / m
        y = rng.uniform(0.1, 1.0, (n, m))
        y /= y.sum(axis=1, keepdims=True)
    return a, y


def _central_difference(loss: Loss, a: np.ndarray, y: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.empty_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + h
        plus = loss(a, y)
        a[idx] = old - h
        minus = loss(a, y)
        a[idx] = old
        g[idx] = (plus - minus) / (2.0 * h)
    return g


# -- registry -------------------------------------------------------------------

def test_registered_names():
    assert set(NAMES) == EXPECTED_NAMES


def test_only_rmse_is_not_decomposable():
    assert {n for n in NAMES if not LOSSES.get(n).decomposable} == {"rmse"}


# -- gradients ----------------------------------------------------------------------

@pytest.mark.parametrize("loss", _instances())
def test_gradient_matches_central_difference(loss):
    rng = np.random.default_rng(1234)
    a, y = _domain_inputs(loss.name, rng)
    g = loss.grad(a, y)
    fd = _central_difference(loss, a.copy(), y)
    rel = np.abs(g - fd) / np.maximum(np.abs(g), np.abs(fd))
    assert rel.max() < 1e-6, (loss.name, rel.max())


@pytest.mark.parametrize("loss", _instances())
def test_grad_writes_into_out(loss):
    rng = np.random.default_rng(7)
    a, y = _domain_inputs(loss.name, rng)
    out = np.full_like(a, np.nan)
    res = loss.grad(a, y, out=out)
    assert res is out
    np.testing.assert_allclose(out, loss.grad(a, y), rtol=1e-14, atol=0)


@pytest.mark.parametrize("loss", _instances())
def test_grad_scale_semantics(loss):
    # grad(scale=s) = s * dC_x/da; the default 1/n is the gradient of the mean C.
    # RMSE follows the same rule with n * dC/da standing in for dC_x/da.
    rng = np.random.default_rng(11)
    a, y = _domain_inputs(loss.name, rng, n=6)
    s = 0.37
    np.testing.assert_allclose(loss.grad(a, y, scale=s), s * 6 * loss.grad(a, y),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(loss.grad(a, y, scale=1.0 / 6), loss.grad(a, y),
                               rtol=1e-14, atol=0)


@pytest.mark.parametrize("loss", _instances())
def test_call_is_total_over_n(loss):
    rng = np.random.default_rng(12)
    a, y = _domain_inputs(loss.name, rng, n=6)
    assert loss(a, y) == pytest.approx(loss.total(a, y) / 6, rel=1e-14)


DECOMPOSABLE = [p for p in _instances() if p.values[0].decomposable]


@pytest.mark.parametrize("loss", DECOMPOSABLE)
def test_total_is_sum_of_per_sample(loss):
    rng = np.random.default_rng(13)
    a, y = _domain_inputs(loss.name, rng, n=6)
    c = loss.per_sample(a, y)
    assert c.shape == (6,)
    assert loss.total(a, y) == pytest.approx(float(c.sum()), rel=1e-13)


@pytest.mark.parametrize("loss", DECOMPOSABLE)
def test_data_parallel_split(loss):
    # Two ranks with uneven shards: adding totals and concatenating the rows of
    # grad(scale=1/n_total) must reproduce the full batch.
    rng = np.random.default_rng(14)
    a, y = _domain_inputs(loss.name, rng, n=7)
    k = 3
    total = loss.total(a[:k], y[:k]) + loss.total(a[k:], y[k:])
    assert total == pytest.approx(loss.total(a, y), rel=1e-13)
    rows = np.vstack([loss.grad(a[:k], y[:k], scale=1.0 / 7),
                      loss.grad(a[k:], y[k:], scale=1.0 / 7)])
    np.testing.assert_allclose(rows, loss.grad(a, y), rtol=1e-13, atol=0)


# -- fused output activations -------------------------------------------------------------

FUSED = [pytest.param(n, act, id=f"{act}+{n}") for n in NAMES
         for act in sorted(LOSSES.get(n).fused_with)]


def test_required_fused_pairs_present():
    pairs = {p.values for p in FUSED}
    assert {("binary_cross_entropy", "sigmoid"), ("categorical_cross_entropy", "softmax"),
            ("mse", "identity")} <= pairs


def _targets_for(act: str, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    if act == "softmax":  # the fused form needs rows of y summing to 1
        y = rng.uniform(0.0, 1.0, shape)
        return y / y.sum(axis=1, keepdims=True)
    if act == "sigmoid":
        return rng.uniform(0.0, 1.0, shape)
    return rng.normal(size=shape)


@pytest.mark.parametrize(("name", "act_name"), FUSED)
def test_fused_grad_is_chain_rule(name, act_name):
    rng = np.random.default_rng(21)
    loss, act = LOSSES.resolve(name), ACTIVATIONS.resolve(act_name)
    z = rng.uniform(-3.0, 3.0, (6, 4))
    a = act(z)
    y = _targets_for(act_name, rng, z.shape)
    chain = act.backward(z, a, loss.grad(a, y))
    np.testing.assert_allclose(loss.fused_grad(a, y, 1.0 / 6), chain, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize(("name", "act_name"), FUSED)
def test_total_from_logits_matches_total(name, act_name):
    rng = np.random.default_rng(22)
    loss, act = LOSSES.resolve(name), ACTIVATIONS.resolve(act_name)
    z = rng.uniform(-3.0, 3.0, (6, 4))
    a = act(z)
    y = _targets_for(act_name, rng, z.shape)
    assert loss.total_from_logits(z, a, y) == pytest.approx(loss.total(a, y), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "act_name", "z", "y", "expected"), [
    # confidently wrong: exactly 800 per sample; confidently right: exactly 0
    ("binary_cross_entropy", "sigmoid", [[800.0]], [[0.0]], 800.0),
    ("binary_cross_entropy", "sigmoid", [[-800.0]], [[1.0]], 800.0),
    ("binary_cross_entropy", "sigmoid", [[800.0, -800.0]], [[1.0, 0.0]], 0.0),
    # -ln softmax_2 = logsumexp(z) - z_2 = 800 - (-800)
    ("categorical_cross_entropy", "softmax", [[800.0, -800.0, 0.0]], [[0.0, 1.0, 0.0]], 1600.0),
    ("categorical_cross_entropy", "softmax", [[800.0, -800.0, 0.0]], [[1.0, 0.0, 0.0]], 0.0),
    ("mse", "identity", [[800.0]], [[0.0]], 0.5 * 800.0**2),
], ids=["bce-wrong+", "bce-wrong-", "bce-right", "ce-wrong", "ce-right", "mse"])
def test_total_from_logits_exact_when_saturated(name, act_name, z, y, expected, dtype):
    loss, act = LOSSES.resolve(name), ACTIVATIONS.resolve(act_name)
    z, y = np.array(z, dtype=dtype), np.array(y, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = loss.total_from_logits(z, act(z), y)
    assert value == expected


# -- hand-worked values ----------------------------------------------------------------

SQ2 = math.sqrt(2.0)
# (name, kwargs, a, y, mean cost C, gradient of C w.r.t. a)
HAND = [
    ("mse", {}, [[1.0, 2.0]], [[0.0, 0.0]], 0.5 * (1 + 4), [[1.0, 2.0]]),
    ("binary_cross_entropy", {}, [[0.5]], [[1.0]], math.log(2), [[-2.0]]),
    # -ln 0.25 - ln(1 - 0.5) = ln 8; grads (a-y)/(a(1-a)): -0.75/0.1875, 0.5/0.25
    ("binary_cross_entropy", {}, [[0.25, 0.5]], [[1.0, 0.0]], math.log(8), [[-4.0, 2.0]]),
    # two samples: -ln 0.5 and -ln 0.25, mean 1.5 ln 2; grads -y/(a n)
    ("categorical_cross_entropy", {}, [[0.2, 0.3, 0.5], [0.25, 0.25, 0.5]],
     [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], 1.5 * math.log(2),
     [[0.0, 0.0, -1.0], [-2.0, 0.0, 0.0]]),
    ("exponential", {}, [[1.0, 0.0]], [[0.0, 0.0]], math.e, [[2 * math.e, 0.0]]),
    # tau = 2: C = 2 exp(5/2); grad = (2/2)(a - y) C
    ("exponential", {"tau": 2.0}, [[1.0, 2.0]], [[0.0, 0.0]], 2 * math.exp(2.5),
     [[2 * math.exp(2.5), 4 * math.exp(2.5)]]),
    # ((1-0)^2 + (2-1)^2)/sqrt2; grads (sqrt a - sqrt y)/(sqrt2 sqrt a)
    ("hellinger", {}, [[1.0, 4.0]], [[0.0, 1.0]], 2 / SQ2, [[1 / SQ2, 1 / (2 * SQ2)]]),
    # 0.5 ln 2 + 0.5 ln 2 + 0 ln 0; grads -y/a
    ("kl_divergence", {}, [[0.25, 0.25, 0.5]], [[0.5, 0.5, 0.0]], math.log(2),
     [[-2.0, -2.0, 0.0]]),
    # [ln(1/2) - 1 + 2] + [2 ln 2 - 2 + 1] = ln 2; grads 1 - y/a
    ("generalized_kl", {}, [[2.0, 1.0]], [[1.0, 2.0]], math.log(2), [[0.5, -1.0]]),
    # [1/2 - ln(1/2) - 1] + [2 - ln 2 - 1] = 0.5; grads (a - y)/a^2
    ("itakura_saito", {}, [[2.0, 1.0]], [[1.0, 2.0]], 0.5, [[0.25, -1.0]]),
    # (1 + 2 + 3 + 0)/4; grads sign/m, 0 where a == y
    ("mae", {}, [[1.0, -2.0, 3.0, 5.0]], [[0.0, 0.0, 0.0, 5.0]], 1.5,
     [[0.25, -0.25, 0.25, 0.0]]),
    # sqrt((1 + 4 + 9 + 16)/4); grads (a - y)/(n m C)
    ("rmse", {}, [[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]], math.sqrt(7.5),
     [[k / (4 * math.sqrt(7.5)) for k in (1.0, 2.0)],
      [k / (4 * math.sqrt(7.5)) for k in (3.0, 4.0)]]),
]


def test_hand_values_cover_every_loss():
    assert {h[0] for h in HAND} == set(NAMES)


@pytest.mark.parametrize(("name", "kw", "a", "y", "cost", "grad"), HAND,
                         ids=[f"{h[0]}-{i}" for i, h in enumerate(HAND)])
def test_hand_worked_values(name, kw, a, y, cost, grad):
    loss = LOSSES.resolve({"name": name, **kw})
    a, y = np.array(a), np.array(y)
    assert loss(a, y) == pytest.approx(cost, rel=1e-14)
    assert loss.total(a, y) == pytest.approx(a.shape[0] * cost, rel=1e-14)
    np.testing.assert_allclose(loss.grad(a, y), np.array(grad), rtol=1e-14, atol=1e-300)


def test_kl_equals_categorical_ce_for_one_hot():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.05, 1.0, (5, 4))
    a /= a.sum(axis=1, keepdims=True)
    y = np.eye(4)[rng.integers(0, 4, 5)]
    kl, ce = LOSSES.resolve("kl_divergence"), LOSSES.resolve("categorical_cross_entropy")
    assert kl(a, y) == pytest.approx(ce(a, y), rel=1e-14)
    np.testing.assert_allclose(kl.grad(a, y), ce.grad(a, y), rtol=1e-14)


def test_rmse_is_not_per_sample():
    loss = LOSSES.resolve("rmse")
    a, y = np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2))
    with pytest.raises(NotImplementedError, match="decomposable"):
        loss.per_sample(a, y)
    # totals of halves do not add up: sqrt(5/2) + sqrt(25/2) = 5.12 != 2 sqrt(7.5) = 5.48
    halves = loss.total(a[:1], y[:1]) + loss.total(a[1:], y[1:])
    assert halves == pytest.approx(math.sqrt(2.5) + math.sqrt(12.5), rel=1e-14)
    assert loss.total(a, y) == pytest.approx(2 * math.sqrt(7.5), rel=1e-14)
    assert halves != pytest.approx(loss.total(a, y))


def test_rmse_zero_error_has_zero_gradient():
    loss = LOSSES.resolve("rmse")
    a = np.array([[0.5, -1.0], [2.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loss(a, a.copy()) == 0.0
        assert loss.total(a, a.copy()) == 0.0
        np.testing.assert_array_equal(loss.grad(a, a.copy()), np.zeros_like(a))


def test_rmse_finite_for_huge_errors():
    # squares of 1e200 overflow float64; RMSE divides by max |a - y| first
    loss = LOSSES.resolve("rmse")
    a, y = np.array([[1e200, -1e200]]), np.zeros((1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loss(a, y) == pytest.approx(1e200, rel=1e-14)
        np.testing.assert_allclose(loss.grad(a, y), [[0.5, -0.5]], rtol=1e-14)


def test_exponential_caps_exponent():
    loss = LOSSES.resolve("exponential")
    for dtype in (np.float32, np.float64):
        a, y = np.array([[100.0, -100.0]], dtype=dtype), np.zeros((1, 2), dtype=dtype)
        cap = 0.5 * math.log(float(np.finfo(dtype).max))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            c = loss.per_sample(a, y)
            g = loss.grad(a, y)
        assert float(c[0]) == pytest.approx(math.exp(cap), rel=1e-5)
        assert np.isfinite(g).all() and g[0, 0] > 0 > g[0, 1]


# -- domain safety --------------------------------------------------------------

EDGE_A = [[0.0, 1.0, -1.0, 0.5, 100.0],
          [1.0, 0.0, -3.0, 1e-30, 0.25],
          [0.0, 0.0, 0.0, 0.0, 0.0],
          [1.0, 1.0, 1.0, 1.0, 1.0]]
EDGE_Y = [[0.0, 1.0, 0.0, 1.0, 0.0],
          [0.0, 1.0, 1.0, 0.0, 0.25],
          [0.0, 0.0, 1.0, 0.0, 0.0],
          [1.0, 1.0, 1.0, 1.0, 1.0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("loss", _instances())
def test_edge_inputs_finite_without_warnings(loss, dtype):
    a, y = np.array(EDGE_A, dtype=dtype), np.array(EDGE_Y, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, total = loss(a, y), loss.total(a, y)
        g = loss.grad(a, y)
        g_scaled = loss.grad(a, y, scale=0.1, out=np.empty_like(a))
        if loss.decomposable:
            c = loss.per_sample(a, y)
            assert c.shape == (a.shape[0],) and np.isfinite(c).all()
    assert math.isfinite(value) and math.isfinite(total)
    assert g.dtype == dtype and np.isfinite(g).all() and np.isfinite(g_scaled).all()


# -- configuration -----------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    loss = LOSSES.resolve({"name": name, **NON_DEFAULT.get(name, {})})
    cfg = json.loads(json.dumps(loss.get_config()))
    # the parameters given, not only whatever get_config says twice over
    assert cfg == {"name": name, **NON_DEFAULT.get(name, {})}
    again = LOSSES.resolve(cfg)
    assert type(again) is type(loss) and again.get_config() == cfg
    assert type(loss).from_config(cfg).get_config() == cfg


def test_exponential_config_keeps_tau():
    loss = LOSSES.resolve({"name": "exponential", "tau": 0.5})
    assert loss.get_config() == {"name": "exponential", "tau": 0.5}
    assert repr(loss) == "Exponential(tau=0.5)"


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="unknown loss 'nope'") as info:
        LOSSES.resolve("nope")
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("tau", [0, -1, "x", 0.0, float("nan")])
def test_bad_tau_rejected_quoting_value(tau):
    with pytest.raises(ValueError, match="tau") as info:
        LOSSES.get("exponential")(tau=tau)
    assert repr(tau) in str(info.value)
    with pytest.raises(ValueError, match="tau"):
        LOSSES.resolve({"name": "exponential", "tau": tau})


def test_unexpected_parameter_rejected():
    with pytest.raises(ValueError, match="loss 'exponential' has no parameter 'beta'; it accepts: tau"):
        LOSSES.resolve({"name": "exponential", "beta": 1.0})
    with pytest.raises(ValueError, match="loss 'mae' has no parameter 'tau'; it takes no parameters"):
        LOSSES.resolve({"name": "mae", "tau": 1.0})
