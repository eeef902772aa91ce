"""Optimisers on flat buffers, each checked against a hand loop of the published update rule.

Every reference below is written in plain Python floats from the formula it cites; the
implementation is only ever compared with those references, never with itself (except for
the checkpoint round trip, whose whole point is that two runs of the code agree bit for bit).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nncore.optimizers import OPTIMIZERS

NAMES = OPTIMIZERS.names()
EXPECTED_NAMES = {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}

W0 = [0.5, -1.25, 2.0, 0.1]
# three different gradients (signs and magnitudes change from step to step)
GRADS = [
    [0.3, -0.7, 1.5, -0.02],
    [-0.1, -0.4, 0.9, 0.5],
    [0.25, 0.6, -1.1, 0.05],
]
LRS = [0.1, 0.05, 0.2]  # a different learning rate at each step, as a schedule would pass


def _run(opt, w0=W0, grads=GRADS, lrs=LRS, dtype=np.float64) -> np.ndarray:
    w = np.array(w0, dtype=dtype)
    for g, lr in zip(grads, lrs, strict=True):
        opt.step(w, np.array(g, dtype=dtype), lr)
    return w


def _close(actual, expected, rtol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-15)


# -- the registry ---------------------------------------------------------------------
def test_registry_lists_exactly_the_known_optimizers():
    assert set(NAMES) == EXPECTED_NAMES


# -- SGD and momentum (lecture notes section 10.3) -----------------------------------
def test_plain_sgd_two_steps_by_hand():
    opt = OPTIMIZERS.resolve({"name": "sgd", "lr": 0.1})
    w = np.array([1.0, -2.0, 0.5])
    g1 = np.array([0.5, -1.0, 2.0])
    opt.step(w, g1, 0.1)
    # w1 = w0 - 0.1*g1 = [1 - 0.05, -2 + 0.1, 0.5 - 0.2]
    _close(w, [0.95, -1.9, 0.3])
    g2 = np.array([-0.2, 0.4, 1.0])
    opt.step(w, g2, 0.5)
    # w2 = w1 - 0.5*g2 = [0.95 + 0.1, -1.9 - 0.2, 0.3 - 0.5]
    _close(w, [1.05, -2.1, -0.2])
    assert opt.iterations == 2


def _momentum_reference(beta, w0=W0, grads=GRADS, lrs=LRS):
    """Section 10.3: v_t = beta*v_{t-1} - lr*grad, w_{t+1} = w_t + v_t, v_0 = 0."""
    w, v = list(w0), [0.0] * len(w0)
    for g, lr in zip(grads, lrs, strict=True):
        for i in range(len(w)):
            v[i] = beta * v[i] - lr * g[i]
            w[i] = w[i] + v[i]
    return w


def test_sgd_momentum_three_steps_match_the_notes():
    opt = OPTIMIZERS.resolve({"name": "sgd", "momentum": 0.8})
    _close(_run(opt), _momentum_reference(0.8))


def test_momentum_first_steps_by_literal_arithmetic():
    opt = OPTIMIZERS.resolve({"name": "momentum", "momentum": 0.5})
    w = np.array([1.0])
    opt.step(w, np.array([2.0]), 0.1)  # v1 = -0.1*2 = -0.2;            w1 = 1 - 0.2 = 0.8
    _close(w, [0.8])
    opt.step(w, np.array([2.0]), 0.1)  # v2 = 0.5*(-0.2) - 0.2 = -0.3;  w2 = 0.8 - 0.3 = 0.5
    _close(w, [0.5])
    opt.step(w, np.array([-1.0]), 0.1)  # v3 = 0.5*(-0.3) + 0.1 = -0.05; w3 = 0.5 - 0.05 = 0.45
    _close(w, [0.45])


def test_momentum_registry_name_defaults_to_09_and_matches_the_notes():
    opt = OPTIMIZERS.resolve("momentum")
    assert opt.momentum == 0.9 and opt.nesterov is False
    _close(_run(opt), _momentum_reference(0.9))


def _nesterov_reference(beta, w0=W0, grads=GRADS, lrs=LRS):
    r"""Nesterov in the reformulation the implementation stores.

    Sutskever et al. (2013): v_t = beta v_{t-1} - lr grad(w_t + beta v_{t-1}); w_{t+1} = w_t + v_t.
    Store the look-ahead point phi_t = w_t + beta v_{t-1} instead of w_t and write g for the
    gradient evaluated at phi_t. Then
        phi_{t+1} = w_{t+1} + beta v_t = (phi_t - beta v_{t-1} + v_t) + beta v_t
                  = phi_t + beta v_t + (v_t - beta v_{t-1}) = phi_t + beta v_t - lr g,
    i.e. v <- beta v - lr g; phi <- phi + beta v - lr g (with the new v).
    """
    w, v = list(w0), [0.0] * len(w0)
    for g, lr in zip(grads, lrs, strict=True):
        for i in range(len(w)):
            v[i] = beta * v[i] - lr * g[i]
            w[i] = w[i] + beta * v[i] - lr * g[i]
    return w


def test_nesterov_three_steps_match_the_reformulation():
    opt = OPTIMIZERS.resolve("nesterov")
    assert opt.momentum == 0.9 and opt.nesterov is True
    _close(_run(opt), _nesterov_reference(0.9))
    opt2 = OPTIMIZERS.resolve({"name": "sgd", "momentum": 0.7, "nesterov": True})
    _close(_run(opt2), _nesterov_reference(0.7))


def test_nesterov_stores_the_lookahead_point_of_the_original_formulation():
    # f(w) = 0.5 * sum(c_i w_i^2): the gradient depends on where it is evaluated, so this
    # separates true look-ahead from plain momentum. Original (Sutskever) form in floats:
    c, beta, lr = [1.0, 3.0, 0.5], 0.9, 0.1
    w, v = [1.0, -2.0, 0.5], [0.0, 0.0, 0.0]
    opt = OPTIMIZERS.resolve({"name": "nesterov", "momentum": beta})
    phi = np.array(w)  # phi_0 = w_0 + beta * v_{-1} = w_0
    for _ in range(6):
        opt.step(phi, np.array(c) * phi, lr)  # gradient at the stored (look-ahead) point
        for i in range(3):
            v[i] = beta * v[i] - lr * c[i] * (w[i] + beta * v[i])
            w[i] = w[i] + v[i]
        _close(phi, [w[i] + beta * v[i] for i in range(3)])


# -- adaptive methods ------------------------------------------------------------------
def test_adagrad_three_steps_by_hand_loop():
    # Duchi et al. 2011: G <- G + g^2 (G starts at initial_accumulator = 0.1),
    # w <- w - lr * g / (sqrt(G) + eps)
    eps = 1e-7
    w, G = list(W0), [0.1] * len(W0)
    for g, lr in zip(GRADS, LRS, strict=True):
        for i in range(len(w)):
            G[i] += g[i] * g[i]
            w[i] -= lr * g[i] / (math.sqrt(G[i]) + eps)
    opt = OPTIMIZERS.resolve("adagrad")
    assert opt.initial_accumulator == 0.1
    _close(_run(opt), w)


def test_adagrad_first_step_by_literal_arithmetic():
    opt = OPTIMIZERS.resolve({"name": "adagrad", "initial_accumulator": 0.0, "epsilon": 1e-12})
    w = np.array([1.0, 1.0])
    opt.step(w, np.array([3.0, -0.5]), 0.1)
    # G = g^2 -> w -= 0.1 * g/|g| = 0.1*sign(g) (up to eps/|g| ~ 1e-12)
    _close(w, [0.9, 1.1], rtol=1e-11)


def test_rmsprop_three_steps_by_hand_loop():
    # Hinton, lecture 6e: s <- rho s + (1 - rho) g^2 (s_0 = 0); w <- w - lr g / (sqrt(s) + eps)
    rho, eps = 0.8, 1e-6
    w, s = list(W0), [0.0] * len(W0)
    for g, lr in zip(GRADS, LRS, strict=True):
        for i in range(len(w)):
            s[i] = rho * s[i] + (1 - rho) * g[i] * g[i]
            w[i] -= lr * g[i] / (math.sqrt(s[i]) + eps)
    opt = OPTIMIZERS.resolve({"name": "rmsprop", "rho": rho, "epsilon": eps})
    _close(_run(opt), w)


def _adam_reference(b1, b2, eps, wd=0.0, w0=W0, grads=GRADS, lrs=LRS):
    """Kingma & Ba 2015, Algorithm 1 in the paper's form (epsilon added to sqrt(v_hat));
    with wd > 0, AdamW (Loshchilov & Hutter 2019): also w <- w - lr*wd*w (decoupled)."""
    w, m, v = list(w0), [0.0] * len(w0), [0.0] * len(w0)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        for i in range(len(w)):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            m_hat = m[i] / (1 - b1 ** t)
            v_hat = v[i] / (1 - b2 ** t)
            w[i] = w[i] - lr * wd * w[i] - lr * m_hat / (math.sqrt(v_hat) + eps)
    return w


@pytest.mark.parametrize("eps", [1e-8, 1e-2])  # a large eps makes the epsilon placement matter
def test_adam_matches_algorithm_1_of_the_paper(eps):
    opt = OPTIMIZERS.resolve({"name": "adam", "beta1": 0.8, "beta2": 0.95, "epsilon": eps})
    _close(_run(opt), _adam_reference(0.8, 0.95, eps))
    # the defaults of the paper
    _close(_run(OPTIMIZERS.resolve("adam")), _adam_reference(0.9, 0.999, 1e-8))


def test_adam_first_step_moves_every_weight_by_about_lr():
    # t = 1: m_hat = g, v_hat = g^2, so the step is lr * g/(|g| + eps) ~ lr * sign(g)
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=50)
    # magnitudes from 5e-4 to 2e3 (all >> eps = 1e-8), random signs: the move ignores the scale
    g = rng.choice([-1.0, 1.0], size=50) * rng.uniform(0.5, 2.0, size=50) * rng.choice([1e-3, 1.0, 1e3], size=50)
    w = w0.copy()
    OPTIMIZERS.resolve("adam").step(w, g.copy(), 0.01)
    # relative deviation is eps/(|g| + eps) <= 1e-8 / 5e-4 = 2e-5
    np.testing.assert_allclose(w0 - w, 0.01 * np.sign(g), rtol=1e-4)


def test_adamw_matches_decoupled_decay_hand_loop():
    opt = OPTIMIZERS.resolve({"name": "adamw", "weight_decay": 0.1})
    _close(_run(opt), _adam_reference(0.9, 0.999, 1e-8, wd=0.1))
    # the default decay is 0.01
    _close(_run(OPTIMIZERS.resolve("adamw")), _adam_reference(0.9, 0.999, 1e-8, wd=0.01))


def test_weight_decay_is_added_to_the_gradient_except_for_adamw():
    w = np.array([1.0, -2.0, 4.0])
    g = np.array([0.5, 0.5, -0.5])
    # adamw: decoupled, prepare() leaves the gradient alone
    grads = g.copy()
    OPTIMIZERS.resolve({"name": "adamw", "weight_decay": 0.1}).prepare(w.copy(), grads)
    assert np.array_equal(grads, g)
    # sgd / adam: classic L2, g <- g + wd * w = [0.5 + 0.1, 0.5 - 0.2, -0.5 + 0.4]
    for name in ("sgd", "adam"):
        grads = g.copy()
        OPTIMIZERS.resolve({"name": name, "weight_decay": 0.1}).prepare(w.copy(), grads)
        _close(grads, [0.6, 0.3, -0.1])


def test_sgd_with_weight_decay_prepare_then_step_by_hand():
    opt = OPTIMIZERS.resolve({"name": "sgd", "weight_decay": 0.5})
    w = np.array([2.0, -1.0])
    g = np.array([1.0, 1.0])
    opt.prepare(w, g)  # g + 0.5 w = [2.0, 0.5]
    opt.step(w, g, 0.1)  # w - 0.1 * [2.0, 0.5] = [1.8, -1.05]
    _close(w, [1.8, -1.05])


# -- clipping ---------------------------------------------------------------------------
def test_clip_by_global_norm():
    opt = OPTIMIZERS.resolve({"name": "sgd", "clip_norm": 1.0})
    w = np.zeros(2)
    g = np.array([3.0, -4.0])  # norm 5
    norm = opt.prepare(w, g)
    assert norm == pytest.approx(5.0, rel=1e-15)  # the norm before clipping
    _close(g, [0.6, -0.8])  # norm 1, same direction (g / 5)
    assert math.sqrt(float(g @ g)) == pytest.approx(1.0, rel=1e-14)


def test_clip_leaves_small_gradients_alone_and_is_global():
    opt = OPTIMIZERS.resolve({"name": "adam", "clip_norm": 1.0})
    g = np.array([0.3, 0.4])  # norm 0.5 < 1
    norm = opt.prepare(np.zeros(2), g)
    assert norm == pytest.approx(0.5, rel=1e-15)
    assert np.array_equal(g, [0.3, 0.4])
    # the norm is over the whole buffer, not per element: [2, 2, 2, 2] has norm 4
    g = np.full(4, 2.0)
    assert opt.prepare(np.zeros(4), g) == pytest.approx(4.0, rel=1e-15)
    _close(g, np.full(4, 0.5))


def test_prepare_without_clipping_returns_nan():
    assert math.isnan(OPTIMIZERS.resolve("sgd").prepare(np.zeros(2), np.ones(2)))


# -- minimisation sanity -----------------------------------------------------------------
# lr per optimiser for f(w) = 0.5 ||A w - b||^2 with the A below (eigenvalues of A^T A in
# about [0.8, 3.4]); a new optimiser without an entry fails test_every_optimizer_has_a_sane_lr.
SANE_LR = {"sgd": 0.3, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.5, "rmsprop": 0.01,
           "adam": 0.05, "adamw": 0.05}


def _quadratic():
    rng = np.random.default_rng(42)
    A = rng.normal(size=(30, 10)) / math.sqrt(30) + np.eye(30, 10)
    b = A @ rng.normal(size=10)  # consistent, so min f = 0
    return A, b


def test_every_optimizer_has_a_sane_lr():
    assert set(SANE_LR) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_minimises_a_convex_quadratic(name):
    A, b = _quadratic()
    f = lambda w: 0.5 * float((A @ w - b) @ (A @ w - b))  # noqa: E731
    opt = OPTIMIZERS.resolve(name)
    lr = SANE_LR[name]
    w = np.zeros(10)
    f0 = f(w)
    for _ in range(500):
        grads = A.T @ (A @ w - b)
        opt.prepare(w, grads)
        opt.step(w, grads, lr)
    assert np.all(np.isfinite(w))
    assert f(w) < 0.1 * f0, f"{name}: f went from {f0:.4g} to {f(w):.4g}"


# -- dtype and checkpoints ------------------------------------------------------------------
NON_DEFAULT = {
    "sgd": {"lr": 0.2, "momentum": 0.5, "nesterov": True, "weight_decay": 0.01, "clip_norm": 2.0},
    "momentum": {"lr": 0.03, "momentum": 0.7, "weight_decay": 0.001, "clip_norm": 5.0},
    "nesterov": {"lr": 0.04, "momentum": 0.8, "clip_norm": 3.0},
    "adagrad": {"lr": 0.3, "epsilon": 1e-6, "initial_accumulator": 0.5, "weight_decay": 0.02},
    "rmsprop": {"lr": 0.002, "rho": 0.95, "epsilon": 1e-5, "clip_norm": 0.5},
    "adam": {"lr": 0.002, "beta1": 0.85, "beta2": 0.99, "epsilon": 1e-6, "weight_decay": 0.03},
    "adamw": {"lr": 0.003, "beta1": 0.8, "beta2": 0.9, "epsilon": 1e-7, "weight_decay": 0.05,
              "clip_norm": 1.5},
}


@pytest.mark.parametrize("name", NAMES)
def test_float32_buffers_stay_float32(name):
    opt = OPTIMIZERS.resolve({"name": name, **NON_DEFAULT[name]})
    rng = np.random.default_rng(1)
    w = rng.normal(size=8).astype(np.float32)
    for _ in range(3):
        g = rng.normal(size=8).astype(np.float32)
        opt.prepare(w, g)
        opt.step(w, g, 0.01)
        assert w.dtype == np.float32 and g.dtype == np.float32
    for key, value in opt.state_dict().items():
        if key != "iterations":
            assert value.dtype == np.float32, key


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_resumes_bit_for_bit(name):
    cfg = {"name": name, **NON_DEFAULT[name]}
    rng = np.random.default_rng(7)
    w0 = rng.normal(size=12)
    grads = [rng.normal(size=12) * 3 for _ in range(5)]
    lrs = [0.1, 0.08, 0.06, 0.04, 0.02]

    def advance(opt, w, ks):
        for k in ks:
            g = grads[k].copy()
            opt.prepare(w, g)
            opt.step(w, g, lrs[k])

    straight = OPTIMIZERS.resolve(cfg)
    w_straight = w0.copy()
    advance(straight, w_straight, range(5))

    first = OPTIMIZERS.resolve(cfg)
    w = w0.copy()
    advance(first, w, range(3))
    state = first.state_dict()
    assert int(state["iterations"]) == 3
    advance(first, w0.copy(), range(2))  # moving on must not alter the saved state
    resumed = OPTIMIZERS.resolve(cfg)
    resumed.load_state_dict(state)
    advance(resumed, w, range(3, 5))
    assert np.array_equal(w, w_straight)
    assert resumed.iterations == 5


# -- config and validation ------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    opt = OPTIMIZERS.resolve({"name": name, **NON_DEFAULT[name]})
    cfg = opt.get_config()
    assert cfg["name"] == name
    for key, value in NON_DEFAULT[name].items():
        assert cfg[key] == value, key
    again = OPTIMIZERS.resolve(json.loads(json.dumps(cfg)))
    assert type(again) is type(opt) and again.get_config() == cfg
    assert type(opt).from_config(cfg).get_config() == cfg


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        OPTIMIZERS.resolve("adamax")
    msg = str(info.value)
    assert "'adamax'" in msg
    assert all(name in msg for name in EXPECTED_NAMES)


@pytest.mark.parametrize("cfg, quoted", [
    ({"name": "sgd", "lr": 0}, "got 0"),
    ({"name": "adam", "lr": -0.5}, "got -0.5"),
    ({"name": "sgd", "momentum": 1}, "got 1"),
    ({"name": "momentum", "momentum": 1.5}, "got 1.5"),
    ({"name": "adam", "beta1": 1}, "got 1"),
    ({"name": "adamw", "beta2": 1.0}, "got 1.0"),
    ({"name": "sgd", "clip_norm": -1}, "got -1"),
    ({"name": "rmsprop", "rho": -0.1}, "got -0.1"),
    ({"name": "adagrad", "epsilon": 0}, "got 0"),
    ({"name": "sgd", "weight_decay": -0.01}, "got -0.01"),
])
def test_invalid_hyperparameters_raise_quoting_the_value(cfg, quoted):
    key = next(k for k in cfg if k != "name")
    with pytest.raises(ValueError) as info:
        OPTIMIZERS.resolve(cfg)
    assert key in str(info.value) and quoted in str(info.value)


def test_nesterov_without_momentum_is_rejected():
    for cfg in ({"name": "sgd", "nesterov": True}, {"name": "nesterov", "momentum": 0}):
        with pytest.raises(ValueError) as info:
            OPTIMIZERS.resolve(cfg)
        assert "nesterov" in str(info.value) and "momentum" in str(info.value)
    with pytest.raises(ValueError, match="got 'yes'"):
        OPTIMIZERS.resolve({"name": "sgd", "momentum": 0.9, "nesterov": "yes"})
