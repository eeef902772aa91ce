"""Weight initialisers: bounds and moments from the published formulas, seeding, aliases,
and how a Network uses them (biases always zero)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nncore.initializers import INITIALIZERS, get_initializer
from nncore.network import Dense, Network

NAMES = INITIALIZERS.names()
EXPECTED_NAMES = {"zeros", "uniform", "normal", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal"}
# A non-square (fan_in, fan_out) matrix, so using the wrong fan shows up, with 240 000 entries:
# the relative standard error of a sample variance is below 0.3 %, so a 3 % tolerance is safe.
FAN_IN, FAN_OUT = 600, 400


def _fill(name_or_cfg, shape=(FAN_IN, FAN_OUT), seed=0) -> np.ndarray:
    w = np.full(shape, np.nan)
    get_initializer(name_or_cfg).fill(w, np.random.default_rng(seed))
    return w


def test_registry_lists_exactly_the_known_initializers():
    assert set(NAMES) == EXPECTED_NAMES


def test_zeros():
    assert np.array_equal(_fill("zeros", (7, 3)), np.zeros((7, 3)))


def _check_uniform(w, limit):
    # U(-l, l): inside the bounds, reaching close to both, mean 0, variance l^2/3
    assert np.all(np.abs(w) <= limit)
    assert w.max() > 0.99 * limit and w.min() < -0.99 * limit
    assert abs(w.mean()) < 0.01 * limit
    assert w.var() == pytest.approx(limit ** 2 / 3, rel=0.03)


def _check_normal(w, std):
    assert abs(w.mean()) < 0.01 * std
    assert w.std() == pytest.approx(std, rel=0.03)
    assert np.abs(w).max() > 3 * std  # tails, not a bounded distribution


def test_uniform_within_limit():
    _check_uniform(_fill({"name": "uniform", "limit": 0.3}), 0.3)
    _check_uniform(_fill("uniform"), 0.05)  # default limit


def test_normal_std():
    _check_normal(_fill({"name": "normal", "std": 0.2}), 0.2)


def test_glorot_uniform():
    limit = math.sqrt(6 / (FAN_IN + FAN_OUT))  # sqrt(6/1000) = 0.0775
    _check_uniform(_fill("glorot_uniform"), limit)


def test_glorot_normal():
    _check_normal(_fill("glorot_normal"), math.sqrt(2 / (FAN_IN + FAN_OUT)))  # sqrt(2/1000)


def test_he_uniform_uses_fan_in():
    limit = math.sqrt(6 / FAN_IN)  # sqrt(6/600) = 0.1; fan_out would give 0.1225
    _check_uniform(_fill("he_uniform"), limit)
    # transposed shape: fan_in 400 -> sqrt(6/400)
    _check_uniform(_fill("he_uniform", (FAN_OUT, FAN_IN)), math.sqrt(6 / FAN_OUT))


def test_he_normal_uses_fan_in():
    _check_normal(_fill("he_normal"), math.sqrt(2 / FAN_IN))
    _check_normal(_fill("he_normal", (FAN_OUT, FAN_IN)), math.sqrt(2 / FAN_OUT))


@pytest.mark.parametrize("name", sorted(set(EXPECTED_NAMES) - {"zeros"}))
def test_same_seed_same_values_different_seed_different(name):
    a, b, c = _fill(name, (20, 30), seed=5), _fill(name, (20, 30), seed=5), _fill(name, (20, 30), seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("alias, canonical", [
    ("xavier_uniform", "glorot_uniform"), ("xavier_normal", "glorot_normal"), ("xavier", "glorot_uniform"),
    ("glorot", "glorot_uniform"), ("he", "he_normal"),
])
def test_aliases_resolve(alias, canonical):
    assert get_initializer(alias).name == canonical
    assert get_initializer({"name": alias}).name == canonical
    assert np.array_equal(_fill(alias, (10, 4), seed=3), _fill(canonical, (10, 4), seed=3))


def test_unknown_initializer_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        get_initializer("lecun_normal")
    assert "'lecun_normal'" in str(info.value) and all(n in str(info.value) for n in EXPECTED_NAMES)


@pytest.mark.parametrize("cfg", [{"name": "uniform", "limit": 0}, {"name": "normal", "std": -0.1}])
def test_bad_scale_is_rejected_quoting_the_value(cfg):
    key = next(k for k in cfg if k != "name")
    with pytest.raises(ValueError, match=f"{key}.*got {cfg[key]}"):
        get_initializer(cfg)


@pytest.mark.parametrize("cfg", [{"name": "uniform", "limit": 0.25}, {"name": "normal", "std": 0.125},
                                 {"name": "he_normal"}])
def test_config_round_trip(cfg):
    init = get_initializer(cfg)
    assert init.get_config() == cfg
    assert get_initializer(json.loads(json.dumps(init.get_config()))).get_config() == cfg


# -- in a Network ---------------------------------------------------------------------------
def _net(init, dtype="float64", seed=0):
    return Network(6, [Dense(8, "tanh"), Dense(5, "relu"), Dense(3, "identity")], init=init, dtype=dtype, seed=seed)


def test_network_zeros_init_has_all_zero_params():
    for dtype in ("float32", "float64"):
        net = _net("zeros", dtype)
        assert net.params.size == (6 + 1) * 8 + (8 + 1) * 5 + (5 + 1) * 3
        assert not net.params.any()


@pytest.mark.parametrize("name", NAMES)
def test_network_biases_are_zero_for_every_initializer(name):
    net = _net(name)
    for layer in net.layers:
        assert not layer.b.any()
        assert layer.W.any() == (name != "zeros")


def test_network_layers_use_the_fan_of_their_own_shape():
    # he_uniform in a 6-8-5-3 network: each layer's W bound is sqrt(6/fan_in) of that layer
    net = _net("he_uniform", seed=11)
    for layer, fan_in in zip(net.layers, (6, 8, 5), strict=True):
        assert np.abs(layer.W).max() <= math.sqrt(6 / fan_in)
    # per-layer init overrides the network's
    net = Network(4, [Dense(3, "tanh", init="zeros"), Dense(2)], init="glorot_uniform", dtype="float64")
    assert not net.layers[0].W.any() and net.layers[1].W.any()
