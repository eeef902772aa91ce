"""Dense layers, the flat buffer, forward values by hand and backprop vs finite differences."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nncore.activations import ACTIVATIONS
from nncore.gradcheck import check_gradients, numerical_gradient
from nncore.losses import LOSSES
from nncore.network import Dense, Network


def _close(bp: np.ndarray, num: np.ndarray, rtol: float = 1e-6, atol: float = 1e-9) -> None:
    # relative where the gradient is not tiny; tiny entries compared absolutely
    np.testing.assert_allclose(bp, num, rtol=rtol, atol=atol)


def test_forward_matches_hand_computation():
    # 2-2-1 network of the notes' section 4, with hand-picked weights
    net = Network(2, [Dense(2, "sigmoid"), Dense(1, "sigmoid")], dtype="float64")
    l0, l1 = net.layers
    l0.W[...] = [[0.1, 0.3], [0.2, 0.4]]
    l0.b[...] = [0.5, -0.5]
    l1.W[...] = [[1.0], [-1.0]]
    l1.b[...] = [0.25]
    x = np.array([[1.0, 2.0]])
    s = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    a0 = s(1 * 0.1 + 2 * 0.2 + 0.5)  # z = 1.0
    a1 = s(1 * 0.3 + 2 * 0.4 - 0.5)  # z = 0.6
    y = s(a0 * 1.0 - a1 * 1.0 + 0.25)
    assert net.forward(x)[0, 0] == pytest.approx(y, rel=1e-14)


def test_parameters_are_views_of_one_flat_buffer():
    net = Network(3, [Dense(4, {"name": "prelu", "alpha": 0.2}), Dense(2, "softmax")])
    assert net.n_params == (3 + 1) * 4 + 4 + (4 + 1) * 2
    assert net.params.dtype == np.float32 and net.grads.shape == net.params.shape
    net.params[:] = np.arange(net.n_params)
    l0 = net.layers[0]
    assert np.shares_memory(l0.W, net.params) and np.shares_memory(l0.b, net.params)
    assert l0.W[0, 0] == 0 and l0.b[0] == 12 and l0.activation.p["alpha"][0] == 16
    assert np.shares_memory(l0.gW, net.grads)


def test_biases_start_at_zero_and_seed_decides_weights():
    a = Network(5, [Dense(7, "relu"), Dense(3, "softmax")], init="he_normal", seed=3)
    b = Network(5, [Dense(7, "relu"), Dense(3, "softmax")], init="he_normal", seed=3)
    c = Network(5, [Dense(7, "relu"), Dense(3, "softmax")], init="he_normal", seed=4)
    assert np.array_equal(a.params, b.params) and not np.array_equal(a.params, c.params)
    assert all(not layer.b.any() for layer in a.layers)


def test_float64_is_selectable_and_inputs_are_cast():
    net = Network(2, [Dense(3, "tanh")], dtype="float64")
    assert net.params.dtype == np.float64
    assert net.forward(np.ones((4, 2), dtype=np.float32)).dtype == np.float64
    with pytest.raises(ValueError, match="dtype"):
        Network(2, [Dense(3)], dtype="float16")


def test_bad_shapes_and_configs_are_refused():
    net = Network(2, [Dense(3, "tanh")])
    with pytest.raises(ValueError, match=r"\(n_samples, 2\)"):
        net.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match="units"):
        Dense(0)
    with pytest.raises(ValueError, match="output layer"):
        Network(2, [Dense(3, "relu"), Dense(1, "sigmoid", dropout=0.5)])


def _data(rng, n, d_in, d_out, positive=False, onehot=False):
    X = rng.normal(size=(n, d_in))
    if onehot:
        Y = np.eye(d_out)[rng.integers(0, d_out, n)]
    elif positive:
        Y = rng.uniform(0.1, 0.9, size=(n, d_out))
    else:
        Y = rng.normal(size=(n, d_out))
    return X, Y


HIDDEN = [name for name in ACTIVATIONS.names() if name not in ("softmax", "binary_step")]


@pytest.mark.parametrize("hidden", HIDDEN)
def test_backprop_through_every_hidden_activation(hidden):
    rng = np.random.default_rng(abs(hash(hidden)) % 2**32)
    net = Network(3, [Dense(5, hidden), Dense(4, "tanh"), Dense(2, "identity")], dtype="float64", seed=1)
    # learnable parameters away from their special initial values so every branch is exercised
    for layer in net.layers:
        for p in layer.activation.p.values():
            p[...] += rng.uniform(0.05, 0.3, size=p.shape)
    X, Y = _data(rng, 6, 3, 2)
    res = check_gradients(net, X, Y, LOSSES.resolve("mse"))
    _close(res.backprop, res.numerical)


# (output activation, loss) pairs with targets each loss is defined on
OUTPUTS = [
    ("identity", "mse", {}), ("identity", "mae", {}), ("identity", "rmse", {}),
    ("identity", "exponential", {}), ("sigmoid", "binary_cross_entropy", {"positive": True}),
    ("softmax", "categorical_cross_entropy", {"onehot": True}), ("softmax", "kl_divergence", {"positive": True}),
    ("softmax", "hellinger", {"positive": True}), ("softplus", "generalized_kl", {"positive": True}),
    ("softplus", "itakura_saito", {"positive": True}), ("sigmoid", "mse", {"positive": True}),
    ("tanh", "mse", {}),
]


@pytest.mark.parametrize("act,loss,kind", OUTPUTS, ids=[f"{a}-{b}" for a, b, _ in OUTPUTS])
def test_backprop_through_every_loss(act, loss, kind):
    rng = np.random.default_rng(7)
    net = Network(4, [Dense(6, "tanh"), Dense(3, act)], dtype="float64", seed=2)
    X, Y = _data(rng, 8, 4, 3, **kind)
    res = check_gradients(net, X, Y, LOSSES.resolve(loss))
    _close(res.backprop, res.numerical)


def test_every_loss_is_covered_by_the_backprop_test():
    assert {loss for _, loss, _ in OUTPUTS} == set(LOSSES.names())


def test_forward_difference_is_first_order_and_central_second_order():
    rng = np.random.default_rng(0)
    net = Network(2, [Dense(3, "tanh"), Dense(1, "identity")], dtype="float64")
    X, Y = _data(rng, 5, 2, 1)
    loss = LOSSES.resolve("mse")
    net.gradient(X, Y, loss)
    exact = net.grads.copy()
    errs = {}
    for method in ("forward", "central"):
        errs[method] = [np.abs(numerical_gradient(net, X, Y, loss, method, eps) - exact).max() for eps in (1e-2, 1e-3)]
    # shrinking the step 10x shrinks the error ~10x (forward) and ~100x (central)
    assert 5 < errs["forward"][0] / errs["forward"][1] < 20
    assert 50 < errs["central"][0] / errs["central"][1] < 200
    with pytest.raises(ValueError, match="method"):
        numerical_gradient(net, X, Y, loss, "backward")


def test_check_gradients_reports_a_wrong_gradient():
    class Broken(ACTIVATIONS.get("tanh")):
        name = "broken_tanh"

        def backward(self, z, a, grad):
            return grad  # forgets the derivative

    rng = np.random.default_rng(1)
    net = Network(2, [Dense(3, Broken()), Dense(1, "identity")], dtype="float64")
    X, Y = _data(rng, 4, 2, 1)
    res = check_gradients(net, X, Y, LOSSES.resolve("mse"))
    assert not res.passed() and res.worst_param.startswith("layer0")


def test_dropout_is_seeded_scaled_and_off_in_evaluation():
    net = Network(10, [Dense(1000, "identity", dropout=0.3), Dense(1)], dtype="float64", init="normal")
    X = np.ones((4, 10))
    a = net.forward(X, training=True, rng=np.random.default_rng(5)).copy()
    b = net.forward(X, training=True, rng=np.random.default_rng(5)).copy()
    np.testing.assert_array_equal(a, b)
    buf = net.buffers(4)
    hidden = buf.act[0]
    dropped = (hidden == 0).mean()
    assert 0.25 < dropped < 0.35
    kept = hidden != 0
    np.testing.assert_allclose(hidden[kept], (buf.pre[0] / 0.7)[kept])
    e1, e2 = net.forward(X).copy(), net.forward(X).copy()
    np.testing.assert_array_equal(e1, e2)


def test_dropout_gradient_matches_finite_differences_for_a_fixed_mask():
    rng = np.random.default_rng(3)
    net = Network(3, [Dense(6, "tanh", dropout=0.5), Dense(2, "identity")], dtype="float64", seed=4)
    X, Y = _data(rng, 5, 3, 2)
    loss = LOSSES.resolve("mse")

    def cost():
        net.forward(X, training=True, rng=np.random.default_rng(9))
        return net.loss_total(loss, Y) / 5

    net.gradient(X, Y, loss, training=True, rng=np.random.default_rng(9))
    bp = net.grads.copy()
    num = np.empty_like(bp)
    h = 1e-6
    for i in range(net.n_params):
        old = net.params[i]
        net.params[i] = old + h
        plus = cost()
        net.params[i] = old - h
        minus = cost()
        net.params[i] = old
        num[i] = (plus - minus) / (2 * h)
    _close(bp, num)


def test_buffers_per_batch_size_do_not_mix():
    net = Network(2, [Dense(3, "tanh"), Dense(2, "softmax")], dtype="float64", seed=5)
    X = np.random.default_rng(0).normal(size=(7, 2))
    full = net.forward(X).copy()
    part = net.forward(X[:3]).copy()
    np.testing.assert_allclose(full[:3], part, rtol=1e-14)
    np.testing.assert_allclose(net.predict(X, batch_size=2), full, rtol=1e-14)


def test_config_round_trip_rebuilds_the_same_network():
    net = Network(4, [Dense(8, {"name": "elu", "alpha": 0.5}, dropout=0.1), Dense(3, "softmax", init="zeros")],
                  init="he_uniform", dtype="float64", seed=9)
    again = Network.from_config(net.get_config(), seed=9)
    assert again.get_config() == net.get_config()
    np.testing.assert_array_equal(again.params, net.params)


def test_two_layer_network_learns_xor():
    from nncore.optimizers import OPTIMIZERS
    from nncore.trainer import TrainData, Trainer

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0])
    net = Network(2, [Dense(4, "tanh"), Dense(1, "sigmoid")], seed=3)
    trainer = Trainer(net, LOSSES.resolve("binary_cross_entropy"), OPTIMIZERS.resolve({"name": "sgd", "lr": 0.5,
                      "momentum": 0.9}), batch_size=None, epochs=300, seed=3, task="binary")
    result = trainer.fit(TrainData(X, y[:, None].astype(float), y))
    assert result.final["accuracy"] == 1.0
    assert np.array_equal((net.predict(X)[:, 0] > 0.5).astype(int), y)
