"""The training loop: the three forms of gradient descent, shuffling, stopping, resuming."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nncore.callbacks import Checkpointer, EarlyStopping
from nncore.checkpoint import load_checkpoint
from nncore.data import batch_bounds, epoch_permutation, train_validation_split
from nncore.hooks import Callback
from nncore.losses import LOSSES
from nncore.network import Dense, Network
from nncore.optimizers import OPTIMIZERS
from nncore.schedules import SCHEDULES
from nncore.trainer import TrainData, Trainer


def _regression(n=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    Y = (X @ np.array([[1.0], [-2.0], [0.5]])) + 0.1 * rng.normal(size=(n, 1))
    return TrainData(X, Y)


def _net(seed=0, dtype="float64"):
    return Network(3, [Dense(4, "tanh"), Dense(1, "identity")], dtype=dtype, seed=seed)


class StepRecorder(Callback):
    def __init__(self):
        self.logs = []

    def on_step(self, trainer, log):
        self.logs.append(log)


@pytest.mark.parametrize("batch_size,drop_last,steps", [(None, False, 1), (20, False, 1), (6, False, 4),
                                                        (6, True, 3), (1, False, 20)])
def test_batch_minibatch_and_stochastic_step_counts(batch_size, drop_last, steps):
    rec = StepRecorder()
    tr = Trainer(_net(), LOSSES.resolve("mse"), OPTIMIZERS.resolve("sgd"), batch_size=batch_size, epochs=2,
                 drop_last=drop_last, callbacks=[rec])
    result = tr.fit(_regression())
    assert result.steps == 2 * steps and len(rec.logs) == 2 * steps
    sizes = [log.samples for log in rec.logs[:steps]]
    assert sum(sizes) == (18 if drop_last else 20)


def test_batch_gradient_descent_equals_a_hand_loop_of_full_gradients():
    data = _regression()
    loss = LOSSES.resolve("mse")
    net = _net(1)
    ref = _net(1)
    Trainer(net, loss, OPTIMIZERS.resolve({"name": "sgd", "lr": 0.05}), batch_size=None, epochs=5).fit(data)
    for _ in range(5):
        ref.gradient(data.X, data.Y, loss)
        ref.params -= 0.05 * ref.grads
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-12)


def test_stochastic_descent_without_shuffle_visits_samples_in_order():
    data = _regression(8)
    loss = LOSSES.resolve("mse")
    net, ref = _net(2), _net(2)
    Trainer(net, loss, OPTIMIZERS.resolve({"name": "sgd", "lr": 0.01}), batch_size=1, epochs=1,
            shuffle=False).fit(data)
    for i in range(8):
        ref.gradient(data.X[i:i + 1], data.Y[i:i + 1], loss)
        ref.params -= 0.01 * ref.grads
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-12)


def test_shuffled_minibatches_follow_the_epoch_permutation():
    data = _regression(9)
    loss = LOSSES.resolve("mse")
    net, ref = _net(3), _net(3)
    Trainer(net, loss, OPTIMIZERS.resolve({"name": "sgd", "lr": 0.02}), batch_size=4, epochs=2, seed=5).fit(data)
    for epoch in range(2):
        perm = epoch_permutation(9, 5, epoch)
        for start in range(0, 9, 4):
            idx = perm[start:start + 4]
            ref.gradient(data.X[idx], data.Y[idx], loss)
            ref.params -= 0.02 * ref.grads
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-12)


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
    a = epoch_permutation(100, 7, 3)
    assert np.array_equal(a, epoch_permutation(100, 7, 3))
    assert not np.array_equal(a, epoch_permutation(100, 7, 4))
    assert not np.array_equal(a, epoch_permutation(100, 8, 3))
    assert np.array_equal(np.sort(a), np.arange(100))


def test_batch_bounds():
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(10, 4, drop_last=True) == [(0, 4), (4, 8)]
    assert batch_bounds(3, 1) == [(0, 1), (1, 2), (2, 3)]


def test_stratified_split_keeps_class_proportions_and_never_overlaps():
    labels = np.array([0] * 80 + [1] * 20)
    tr, va = train_validation_split(100, 0.25, 0, labels)
    assert len(va) == 25 and not set(tr) & set(va) and len(tr) + len(va) == 100
    assert (labels[va] == 1).sum() == 5


def test_standardisation_is_fitted_on_the_training_part_only():
    from nncore.job import prepare_data
    from nncore.spec import validate_spec

    spec = validate_spec({"model": {"layers": [{"units": 3, "activation": "softmax"}]},
                          "loss": "categorical_cross_entropy", "data": {"dataset": "iris", "validation_split": 0.3}})
    d = prepare_data(spec)
    np.testing.assert_allclose(d.train.X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(d.train.X.std(axis=0), 1, atol=1e-5)
    assert np.abs(d.val.X.mean(axis=0)).max() > 1e-3  # the held-out part was not used to fit


def test_divergence_stops_with_a_clear_reason():
    tr = Trainer(_net(), LOSSES.resolve("mse"), OPTIMIZERS.resolve({"name": "sgd", "lr": 1e6}), batch_size=5,
                 epochs=50)
    result = tr.fit(_regression())
    assert result.status == "diverged"
    assert "diverged" in result.reason and "learning rate" in result.reason


def test_should_stop_ends_training_within_one_step():
    class StopAfter(Callback):
        def __init__(self):
            self.steps = 0

        def on_step(self, trainer, log):
            self.steps += 1

        def should_stop(self, trainer):
            return "cancelled by user" if self.steps >= 3 else None

    cb = StopAfter()
    result = Trainer(_net(), LOSSES.resolve("mse"), OPTIMIZERS.resolve("sgd"), batch_size=2, epochs=10,
                     callbacks=[cb]).fit(_regression())
    assert result.status == "stopped" and result.reason == "cancelled by user" and result.steps == 3


def test_early_stopping_restores_the_best_parameters():
    data = _regression(30)
    val = _regression(30, seed=1)
    es = EarlyStopping("val_loss", patience=2)
    seen = []

    class Snap(Callback):
        def on_epoch(self, trainer, logs):
            seen.append((logs["val_loss"], trainer.net.params.copy()))

    # a large, constant learning rate makes the validation loss bounce
    result = Trainer(_net(), LOSSES.resolve("mse"), OPTIMIZERS.resolve({"name": "sgd", "lr": 0.3}), batch_size=1,
                     epochs=200, early_stopping=es, callbacks=[Snap()]).fit(data, val)
    assert result.status == "early_stopped"
    best_loss, best_params = min(seen, key=lambda t: t[0])
    assert es.best == pytest.approx(best_loss)
    assert len(seen) == es.best_epoch + 3
    # restore_best: the parameters that produced the best validation loss are back
    np.testing.assert_array_equal(best_params, es.best_params)


def test_finite_difference_training_matches_backprop_and_is_refused_when_large():
    data = _regression(12)
    loss = LOSSES.resolve("mse")
    a, b = _net(4), _net(4)
    Trainer(a, loss, OPTIMIZERS.resolve({"name": "sgd", "lr": 0.05}), batch_size=4, epochs=3).fit(data)
    Trainer(b, loss, OPTIMIZERS.resolve({"name": "sgd", "lr": 0.05}), batch_size=4, epochs=3,
            gradient="finite_difference").fit(data)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6, atol=1e-9)
    big = Network(100, [Dense(100, "relu"), Dense(1)])
    with pytest.raises(ValueError, match="finite-difference"):
        Trainer(big, loss, OPTIMIZERS.resolve("sgd"), gradient="finite_difference")


def test_world_size_larger_than_a_batch_is_refused():
    class TwoRanks:
        rank, world_size = 0, 2

        def shard(self, start, stop):
            return start, stop

        def allreduce_sum(self, buf):
            pass

        def broadcast(self, buf):
            pass

    tr = Trainer(_net(), LOSSES.resolve("mse"), OPTIMIZERS.resolve("sgd"), batch_size=1, reducer=TwoRanks())
    with pytest.raises(ValueError, match="world size 2 is larger than a batch"):
        tr.fit(_regression())


def test_learnable_activation_parameters_are_trained():
    net = Network(3, [Dense(4, {"name": "prelu", "alpha": 0.25}), Dense(1, "identity")], dtype="float64")
    before = net.layers[0].activation.p["alpha"].copy()
    Trainer(net, LOSSES.resolve("mse"), OPTIMIZERS.resolve({"name": "sgd", "lr": 0.05}), batch_size=5,
            epochs=5).fit(_regression())
    assert not np.array_equal(before, net.layers[0].activation.p["alpha"])


RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from tests.nncore.test_trainer import resume_case
    resume_case({mode!r}, {path!r}, {out!r})
""")


def resume_case(mode: str, ckpt: str, out: str) -> None:
    """5+5 epochs through a checkpoint, or 10 in one go (run in a fresh process)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    labels = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    data = TrainData(X, np.eye(2)[labels], labels)
    val = TrainData(X[:10], np.eye(2)[labels[:10]], labels[:10])

    def build(epochs):
        net = Network(3, [Dense(8, {"name": "rrelu"}, dropout=0.2), Dense(6, {"name": "pelu"}),
                          Dense(2, "softmax")], dtype="float32", seed=3)
        return Trainer(net, LOSSES.resolve("categorical_cross_entropy"),
                       OPTIMIZERS.resolve({"name": "adam", "lr": 0.01, "clip_norm": 1.0}),
                       schedule=SCHEDULES.resolve({"name": "reduce_on_plateau", "patience": 1}),
                       batch_size=7, epochs=epochs, seed=11, task="multiclass",
                       early_stopping=EarlyStopping("val_loss", patience=100))

    if mode == "first":
        tr = build(5)
        ck = Checkpointer(ckpt.rsplit("/", 1)[0], every=5)
        tr.callbacks.append(ck)
        tr.fit(data, val)
    else:
        tr = build(10)
        if mode == "resume":
            tr.load_state_dict(load_checkpoint(ckpt))
        tr.fit(data, val)
        np.save(out, tr.net.params)
        with open(out + ".json", "w") as fh:
            json.dump(tr.history, fh)


def _run(mode, ckpt, out, root):
    code = RESUME_SCRIPT.format(root=root, mode=mode, path=ckpt, out=out)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


@pytest.mark.integration
def test_resume_from_checkpoint_in_a_new_process_is_bit_for_bit(tmp_path, request):
    root = str(request.config.rootpath)
    ckpt = str(tmp_path / "epoch-00005.npz")
    _run("first", ckpt, "", root)
    _run("resume", ckpt, str(tmp_path / "resumed.npy"), root)
    _run("straight", "", str(tmp_path / "straight.npy"), root)
    resumed = np.load(tmp_path / "resumed.npy")
    straight = np.load(tmp_path / "straight.npy")
    assert resumed.dtype == np.float32
    np.testing.assert_array_equal(resumed, straight)
    h1 = json.loads((tmp_path / "resumed.npy.json").read_text())
    h2 = json.loads((tmp_path / "straight.npy.json").read_text())
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("time", "samples_per_s")} for e in h]  # noqa: E731
    assert strip(h1) == strip(h2) and len(h1) == 10


def test_per_step_accuracy_and_grad_norm_on_request():
    class Wants(StepRecorder):
        wants_accuracy = True
        wants_grad_norm = True

    rng = np.random.default_rng(4)
    X = rng.normal(size=(12, 3))
    labels = (X[:, 0] > 0).astype(np.int64)
    rec = Wants()
    net = Network(3, [Dense(4, "tanh"), Dense(2, "softmax")], dtype="float64", seed=2)
    Trainer(net, LOSSES.resolve("categorical_cross_entropy"), OPTIMIZERS.resolve("sgd"), batch_size=4, epochs=1,
            shuffle=False, callbacks=[rec]).fit(TrainData(X, np.eye(2)[labels], labels))
    # the first step's accuracy and gradient norm, recomputed from a copy of the initial network
    ref = Network(3, [Dense(4, "tanh"), Dense(2, "softmax")], dtype="float64", seed=2)
    out = ref.forward(X[:4]).copy()
    ref.gradient(X[:4], np.eye(2)[labels[:4]], LOSSES.resolve("categorical_cross_entropy"))
    assert rec.logs[0].accuracy == np.mean(out.argmax(axis=1) == labels[:4])
    assert rec.logs[0].grad_norm == pytest.approx(np.linalg.norm(ref.grads), rel=1e-12)
    plain = StepRecorder()
    Trainer(_net(), LOSSES.resolve("mse"), OPTIMIZERS.resolve("sgd"), epochs=1, callbacks=[plain]).fit(_regression())
    assert np.isnan(plain.logs[0].accuracy) and np.isnan(plain.logs[0].grad_norm)
