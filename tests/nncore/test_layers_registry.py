"""The layer types of ``nncore.layers.LAYERS``: gradients, configs, the layout that counts
parameters, BatchNorm's running statistics and its checkpointed state.

Data-parallel BatchNorm over a real ``mpiexec`` is in test_distributed.py."""
from __future__ import annotations

import numpy as np
import pytest

from nncore.checkpoint import load_checkpoint
from nncore.gradcheck import check_gradients
from nncore.job import Job, Model
from nncore.layers import LAYERS, BatchNorm, Dropout, LayerNorm, build_layer, layout
from nncore.losses import LOSSES
from nncore.network import Dense, Network
from nncore.optimizers import OPTIMIZERS
from nncore.spec import SpecError, count_params, validate_spec
from nncore.trainer import TrainData, Trainer

#: one config per registered type, with non-default fields
EXAMPLES = {
    "dense": {"units": 5, "activation": {"name": "prelu", "alpha": 0.3}},
    "batchnorm": {"type": "batchnorm", "momentum": 0.2, "eps": 1e-3},
    "layernorm": {"type": "layernorm", "eps": 1e-3},
    "dropout": {"type": "dropout", "rate": 0.4},
}


def test_every_registered_layer_type_has_an_example():
    assert sorted(EXAMPLES) == LAYERS.names()


def _net(kind: str, seed: int = 0) -> Network:
    """tanh(5) -> the layer -> softmax(3), float64, with every parameter and running
    statistic moved off its initial value so no gradient is trivially zero."""
    net = Network(4, [Dense(5, "tanh"), EXAMPLES[kind], Dense(3, "softmax")], dtype="float64",
                  init="normal", seed=seed)
    rng = np.random.default_rng(seed + 100)
    net.params += 0.3 * rng.normal(size=net.params.shape)
    for name, region in net.state_slices:
        # running means anywhere, running variances positive
        net.state[region] = rng.uniform(0.5, 2.0, region.stop - region.start) if name.endswith("var") \
            else rng.normal(size=region.stop - region.start)
    return net


def _data(n: int = 9, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * 2.0 + 0.5
    return X, np.eye(3)[rng.integers(0, 3, n)]


def _rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-8)).max())


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_gradient_matches_finite_differences_in_evaluation_mode(kind):
    # BatchNorm here runs on its running statistics
    X, Y = _data()
    result = check_gradients(_net(kind), X, Y, LOSSES.resolve("categorical_cross_entropy"))
    assert result.passed(1e-6), (result.max_rel_error, result.worst_param)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_gradient_matches_finite_differences_in_training_mode(kind):
    # BatchNorm on the batch's statistics; dropout with one fixed mask (the same seed
    # for every forward, so the function differentiated is deterministic)
    net, loss = _net(kind), LOSSES.resolve("categorical_cross_entropy")
    X, Y = _data()
    net.gradient(X, Y, loss, training=True, rng=np.random.default_rng(7))
    backprop = net.grads.copy()
    eps, p = 1e-5, net.params
    numerical = np.empty_like(p)
    for i in range(p.size):
        old, values = p[i], []
        for x in (old + eps, old - eps):
            p[i] = x
            net.forward(X, training=True, rng=np.random.default_rng(7))
            values.append(net.loss_total(loss, Y) / len(X))
        p[i] = old
        numerical[i] = (values[0] - values[1]) / (2 * eps)
    assert _rel_error(backprop, numerical) < 1e-6


def test_batchnorm_training_gradient_check_through_gradcheck():
    X, Y = _data(12)
    result = check_gradients(_net("batchnorm"), X, Y, LOSSES.resolve("mse"), training=True)
    assert result.passed(1e-6), (result.max_rel_error, result.worst_param)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_config_round_trips(kind):
    layer = build_layer(EXAMPLES[kind])
    assert layer.kind == kind
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_batchnorm_normalises_over_the_batch_in_training_and_uses_running_stats_in_evaluation():
    net = Network(3, [BatchNorm(), Dense(2)], dtype="float64")
    X = np.random.default_rng(0).normal(size=(50, 3)) * [1.0, 10.0, 0.1] + [5.0, -3.0, 0.0]
    bn = net.layers[0]
    y = bn.forward(X, True, None)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), X.var(axis=0) / (X.var(axis=0) + 1e-5), rtol=1e-12)
    bn.running_mean[...] = [1.0, 2.0, 3.0]
    bn.running_var[...] = [4.0, 9.0, 16.0]
    np.testing.assert_allclose(bn.forward(X, False, None), (X - [1, 2, 3]) / np.sqrt(np.array([4, 9, 16]) + 1e-5))


def test_layernorm_normalises_each_sample():
    ln = build_layer({"type": "layernorm"})
    net = Network(6, [ln, Dense(1)], dtype="float64")
    X = np.random.default_rng(0).normal(size=(4, 6)) * 3 + 2
    y = net.layers[0].forward(X, False, None)
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=1), np.sqrt(X.var(axis=1) / (X.var(axis=1) + 1e-5)), rtol=1e-12)
    assert isinstance(ln, LayerNorm) and net.state.size == 0


def test_dropout_layer_draws_the_mask_the_dense_dropout_option_draws():
    X = np.random.default_rng(0).normal(size=(6, 3))
    a = Network(3, [Dense(8, "tanh", dropout=0.5), Dense(2)], dtype="float64", seed=4)
    b = Network(3, [Dense(8, "tanh"), Dropout(0.5), Dense(2)], dtype="float64", seed=4)
    np.testing.assert_array_equal(a.params, b.params)
    out_a = a.forward(X, True, np.random.default_rng(9)).copy()
    out_b = b.forward(X, True, np.random.default_rng(9))
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.array_equal(out_b, b.forward(X))  # and evaluation is the identity
    assert b.stochastic and not Network(3, [Dense(8), Dropout(0.0), Dense(2)]).stochastic


# -- specs and the layout --------------------------------------------------------------

MINIMAL = {"loss": "categorical_cross_entropy", "data": {"dataset": "iris"}}


def _problems(model: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        validate_spec({**MINIMAL, "model": model})
    return {p.path: p.message for p in info.value.problems}


def test_an_unknown_layer_type_lists_the_known_ones():
    found = _problems({"layers": [{"type": "conv2d", "units": 3}, {"units": 3, "activation": "softmax"}]})
    assert found == {"model.layers[0].type": "unknown layer type \"conv2d\"; known: batchnorm, dense, dropout, "
                                             "layernorm"}


def test_each_layer_type_validates_its_own_fields():
    found = _problems({"layers": [{"type": "batchnorm", "units": 4, "momentum": 2, "alpha": 1},
                                  {"type": "dropout", "rate": 1.0},
                                  {"type": "layernorm", "eps": 0},
                                  {"type": "dense", "activation": "relu"},
                                  {"type": "dropout"}]})
    assert found == {
        "model.layers[0].units": "a batchnorm layer takes no units: its width is its input's",
        "model.layers[0].alpha": "unknown field; known fields: type, momentum, eps",
        "model.layers[0].momentum": "must be <= 1, got 2",
        "model.layers[1].rate": "must be < 1, got 1.0",
        "model.layers[2].eps": "must be > 0, got 0",
        "model.layers[3].units": "is required",
        "model.layers[4].type": "the output (last) layer must be dense, got 'dropout'",
    }


def test_a_dense_only_spec_is_stored_exactly_as_before_layer_types():
    layers = [{"units": 8, "activation": "relu", "dropout": 0.25}, {"type": "dense", "units": 3,
                                                                     "activation": "softmax"}]
    stored = validate_spec({**MINIMAL, "model": {"layers": layers}})["model"]["layers"]
    assert stored == [{"units": 8, "activation": {"name": "relu"}, "dropout": 0.25},
                      {"units": 3, "activation": {"name": "softmax"}}]
    # and a network config of the kind every existing checkpoint holds builds and
    # gives back the same config
    config = {"input_dim": 4, "init": {"name": "glorot_uniform"}, "dtype": "float32", "layers": stored}
    assert Network.from_config(config).get_config() == config


def test_mixed_specs_are_normalised_with_their_defaults():
    stored = validate_spec({**MINIMAL, "model": {"layers": [
        {"units": 8}, {"type": "batchnorm"}, {"type": "layernorm"}, {"type": "dropout"},
        {"units": 3, "activation": "softmax"}]}})["model"]["layers"]
    assert stored[1:4] == [{"type": "batchnorm", "momentum": 0.1, "eps": 1e-5}, {"type": "layernorm", "eps": 1e-5},
                           {"type": "dropout", "rate": 0.5}]


MIXED = [
    [{"units": 7, "activation": "tanh"}, {"type": "batchnorm"}, {"units": 2}],
    [{"type": "batchnorm"}, {"units": 6, "activation": {"name": "pelu"}}, {"type": "layernorm"},
     {"type": "dropout", "rate": 0.1}, {"units": 5, "activation": {"name": "prelu"}}, {"type": "batchnorm"},
     {"units": 3, "activation": "softmax"}],
    [{"type": "dropout", "rate": 0.2}, {"type": "layernorm"}, {"units": 1}],
]


@pytest.mark.parametrize("layers", MIXED)
def test_the_layout_counts_what_the_network_allocates(layers):
    shape = layout(4, layers)
    net = Network(4, layers, dtype="float64")
    assert sum(la.n_params for la in shape) == net.n_params == count_params(4, layers)
    assert sum(la.n_state for la in shape) == net.state.size
    assert [la.kind for la in shape] == [la.kind for la in net.layers]
    assert net.output_dim == shape[-1].out_dim
    # every part the network carved out is a distinct region of the flat buffers
    covered = sorted((s.start, s.stop) for _, s in net.slices)
    assert covered[0][0] == 0 and covered[-1][1] == net.n_params
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))


def test_the_network_refuses_a_non_dense_output_layer():
    with pytest.raises(ValueError, match="output .last. layer must be dense, got 'batchnorm'"):
        Network(3, [Dense(4), BatchNorm()])


# -- BatchNorm's running statistics -------------------------------------------------------

def test_batchnorm_running_statistics_after_two_steps_match_a_hand_computation():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(10, 3)) * [2.0, 0.5, 1.0] + [1.0, -2.0, 4.0]
    data = TrainData(X, rng.normal(size=(10, 1)))
    net = Network(3, [BatchNorm(momentum=0.3), Dense(1)], dtype="float64")
    Trainer(net, LOSSES.resolve("mse"), OPTIMIZERS.resolve("sgd"), batch_size=6, epochs=1, shuffle=False).fit(data)
    mean, var = np.zeros(3), np.ones(3)
    for batch in (X[:6], X[6:]):  # batches of 6 and then the last 4
        mean = 0.7 * mean + 0.3 * batch.mean(axis=0)
        var = 0.7 * var + 0.3 * batch.var(axis=0, ddof=1)  # unbiased, as torch.nn.BatchNorm1d
    bn = net.layers[0]
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-14)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-14)


def test_finite_difference_training_is_refused_with_batchnorm():
    net = Network(3, [BatchNorm(), Dense(1)], dtype="float64")
    with pytest.raises(ValueError, match="running statistics"):
        Trainer(net, LOSSES.resolve("mse"), OPTIMIZERS.resolve("sgd"), gradient="finite_difference")


def _bn_spec(epochs: int) -> dict:
    return {"model": {"dtype": "float64", "layers": [
        {"units": 8, "activation": "relu"}, {"type": "batchnorm", "momentum": 0.2}, {"type": "dropout", "rate": 0.2},
        {"units": 6, "activation": "tanh"}, {"type": "layernorm"}, {"units": 3, "activation": "softmax"}]},
        "loss": "categorical_cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
        "data": {"dataset": "iris", "validation_split": 0.2}, "batch_size": 25, "epochs": epochs, "seed": 2,
        "checkpoint_every": 2, "retention": {"keep_last": 0}}


def test_resume_with_batchnorm_is_bit_for_bit(tmp_path):
    straight = Job(_bn_spec(4), out_dir=tmp_path / "straight")
    straight.run()
    ckpt = tmp_path / "straight" / "epoch-00002.npz"
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed = Job(_bn_spec(4), out_dir=tmp_path / "resumed")
    resumed.resume(ckpt)
    resumed.run()
    np.testing.assert_array_equal(resumed.net.params, straight.net.params)
    np.testing.assert_array_equal(resumed.net.state, straight.net.state)
    bn = straight.net.layers[1]
    assert not np.array_equal(bn.running_var, np.ones_like(bn.running_var))  # the statistics did move
    # and what the checkpoint holds is what a loaded model evaluates with
    model = Model.load(tmp_path / "straight" / "epoch-00004.npz")
    np.testing.assert_array_equal(model.net.state, straight.net.state)
    X = straight.data.val.X
    np.testing.assert_array_equal(model.net.predict(X), straight.net.predict(X))


def test_a_checkpoint_without_the_state_a_network_needs_is_refused():
    job = Job(_bn_spec(1))
    state = job.trainer.state_dict()
    del state["state"]
    with pytest.raises(ValueError, match="running statistics"):
        job.trainer.load_state_dict(state)


def test_early_stopping_restores_the_running_statistics_of_its_best_epoch(tmp_path):
    # accuracy must strictly improve to count, so its best epoch comes early
    spec = {**_bn_spec(12), "early_stopping": {"monitor": "val_accuracy", "patience": 100}}
    job = Job(spec, out_dir=tmp_path / "es")
    job.run()
    best = job.trainer.early_stopping.best_epoch
    assert 0 < best < 12  # else there is nothing to restore
    straight = Job({**spec, "epochs": best, "early_stopping": None})
    straight.run()
    np.testing.assert_array_equal(job.net.params, straight.net.params)
    np.testing.assert_array_equal(job.net.state, straight.net.state)
    last = tmp_path / "es" / "epoch-00012.npz"
    np.testing.assert_array_equal(Model.load(last, best=True).net.state, straight.net.state)
    assert not np.array_equal(Model.load(last).net.state, straight.net.state)
