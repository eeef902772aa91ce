"""The general (mixed-layer) path of Network: per-batch-size workspaces, no allocation per step."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nncore.losses import LOSSES
from nncore.network import _MAX_CACHED_BATCH_SIZES, Network

MIXED = [{"units": 32, "activation": "relu", "dropout": 0.2}, {"type": "batchnorm"},
         {"units": 16, "activation": "tanh"}, {"type": "layernorm"}, {"type": "dropout", "rate": 0.1},
         {"units": 4, "activation": "softmax"}]


def _data(n: int = 64, f: int = 12, k: int = 4, dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, f)).astype(dtype), np.eye(k, dtype=dtype)[rng.integers(0, k, n)]


def _step(net, X, Y, loss, rng):
    # the network's share of a training step (the loss's value, nncore.losses, is not
    # the network's and allocates its few temporaries)
    net.forward(X, True, rng)
    net.backward(net.output_delta(loss, Y, 1.0 / len(X)))


def _warm(dtype):
    # a linear output and MSE: softmax's forward (nncore.activations, shared with the
    # dense fast path) makes two (n, 1) row temporaries, not the layers' concern here
    X, Y = _data(dtype=dtype)
    net = Network(X.shape[1], MIXED[:-1] + [{"units": 4, "activation": "identity"}], dtype=dtype, seed=0)
    loss, rng = LOSSES.resolve("mse"), np.random.default_rng(1)
    _step(net, X[:40], Y[:40], loss, rng)  # another cached size, as an epoch's last batch
    _step(net, X, Y, loss, rng)  # warm-up: the workspaces of this size are made here
    # one batch size from here: an elementwise activation's f' scratch
    # (nncore.activations) follows the last shape it saw, so a change of batch size
    # remakes it once
    return net, loss, rng, [(X, Y)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_steps_of_a_mixed_network_keep_no_numpy_memory_they_allocate(dtype):
    # tracemalloc from after the warm-up: NumPy traces every array's data in its own
    # domain, so any array a step makes and a layer keeps (an output, xhat, a mask)
    # is still traced after the 20 steps
    net, loss, rng, batches = _warm(dtype)
    tracemalloc.start()
    try:
        for _ in range(20):
            _step(net, *batches[0], loss, rng)
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)])
    finally:
        tracemalloc.stop()
    kept = sum(t.size for t in snap.traces)
    assert kept < 1024, f"20 steps left {kept} bytes of numpy arrays: {snap.statistics('lineno')[:3]}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_steps_of_a_mixed_network_allocate_no_numpy_memory_at_all(dtype):
    # the peak of the steps, temporaries included. NumPy's ufuncs buffer 8,192 elements
    # (64 KiB of float64) for a broadcasting or casting operation, the dense path's bias
    # add among them; with a 256-element buffer that is 2 KiB, while at 8,192 rows the
    # smallest array a layer could make, one value a row, is 32 KiB
    net, loss, rng, _ = _warm(dtype)
    X, Y = _data(n=8192, dtype=dtype)
    _step(net, X, Y, loss, rng)  # this size's workspaces
    _step(net, X, Y, loss, rng)
    old = np.setbufsize(256)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            _step(net, X, Y, loss, rng)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        np.setbufsize(old)
    assert peak < 16 * 1024, f"a step's peak grew by {peak} bytes: an array was made"


def test_the_general_path_caches_workspaces_per_batch_size_like_the_dense_plans():
    X, Y = _data(n=40)
    net = Network(X.shape[1], MIXED, seed=0)
    loss, rng = LOSSES.resolve("categorical_cross_entropy"), np.random.default_rng(1)
    _step(net, X, Y, loss, rng)
    train = net._buffers[40].train
    _step(net, X, Y, loss, rng)
    assert net._buffers[40].train is train  # reused, not rebuilt
    for n in range(10, 10 + _MAX_CACHED_BATCH_SIZES + 2):
        _step(net, X[:n], Y[:n], loss, rng)
    assert len(net._buffers) == _MAX_CACHED_BATCH_SIZES
    assert 40 not in net._buffers  # the oldest size went first


def test_a_layer_computes_the_same_bits_with_a_network_workspace_and_without():
    X, Y = _data(n=24)
    loss = LOSSES.resolve("categorical_cross_entropy")
    a, b = Network(X.shape[1], MIXED, seed=2), Network(X.shape[1], MIXED, seed=2)
    a.gradient(X, Y, loss, training=True, rng=np.random.default_rng(5))
    # b by hand, each layer allocating its own arrays (out=None)
    rng, h = np.random.default_rng(5), X
    for layer in b.layers:
        h = layer.forward(h, True, rng, None)
    np.testing.assert_array_equal(h, a.layers[-1]._pre)
    last = b.layers[-1]
    g = last.backward_z(loss.fused_grad(last._pre, Y, 1.0 / len(X), out=np.empty_like(last._pre)))
    for layer in b.layers[-2::-1]:
        g = layer.backward(g, None)
    np.testing.assert_array_equal(a.grads, b.grads)
    np.testing.assert_array_equal(a.state, b.state)


def test_an_evaluation_forward_leaves_a_training_output_and_its_backward_intact():
    X, Y = _data(n=16)
    a, b = Network(X.shape[1], MIXED, seed=3), Network(X.shape[1], MIXED, seed=3)
    out = a.forward(X, True, np.random.default_rng(4))
    held = out.copy()
    b.forward(X, True, np.random.default_rng(4))
    a_eval = a.forward(X)  # evaluation between a training forward and its output's use
    assert a_eval is not out
    np.testing.assert_array_equal(out, held)
