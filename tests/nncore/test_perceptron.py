import numpy as np
import pytest

from nncore.perceptron import Perceptron, PerceptronResult

TRUTH_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
AND = np.array([0, 0, 0, 1])
OR = np.array([0, 1, 1, 1])
XOR = np.array([0, 1, 1, 0])


@pytest.mark.parametrize("y", [AND, OR], ids=["and", "or"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_learns_linearly_separable_truth_tables(y, shuffle):
    p = Perceptron(2, shuffle=shuffle, seed=3)
    result = p.fit(TRUTH_X, y)
    assert isinstance(result, PerceptronResult)
    assert result.converged
    assert result.errors[-1] == 0 and all(e > 0 for e in result.errors[:-1])
    assert result.epochs == len(result.errors)
    assert "converged" in result.message
    np.testing.assert_array_equal(p.predict(TRUTH_X), y)
    assert p.predict(TRUTH_X).dtype == np.int64


def test_and_matches_hand_trace():
    # Worked by hand with the rule w += (y - yhat) x, b += (y - yhat), step(0) = 1,
    # visiting 00, 01, 10, 11 in order from w = 0, b = 0.
    p = Perceptron(2, lr=1.0, shuffle=False)
    result = p.fit(TRUTH_X, AND)
    assert result.errors == [2, 3, 3, 2, 1, 0]
    np.testing.assert_array_equal(p.w, [2.0, 1.0])
    assert p.b == -3.0


def test_xor_does_not_converge():
    p = Perceptron(2, max_epochs=25)
    result = p.fit(TRUTH_X, XOR)
    assert not result.converged
    assert result.epochs == 25 and len(result.errors) == 25
    assert min(result.errors) >= 1
    assert "did not converge in 25 epochs" in result.message
    assert "linearly separable" in result.message


def test_step_at_zero_predicts_one():
    p = Perceptron(3)
    np.testing.assert_array_equal(p.predict(np.zeros((2, 3))), [1, 1])
    p.w[:] = [1.0, -1.0, 0.0]
    p.b = -0.5
    np.testing.assert_array_equal(p.predict([[1, 0, 0], [0, 0, 0], [0.5, 0, 9]]), [1, 0, 1])


def test_lr_only_scales_weights_from_zero_init():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X @ [1.0, -2.0, 0.5] + 0.3 > 0).astype(int)
    a, b = Perceptron(3, lr=1.0, seed=1), Perceptron(3, lr=0.01, seed=1)
    ra, rb = a.fit(X, y), b.fit(X, y)
    assert ra.errors == rb.errors
    np.testing.assert_allclose(b.w, 0.01 * a.w)


def test_separable_cloud_converges_and_is_deterministic_per_seed():
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, size=(200, 2))
    margin = X @ [2.0, -1.0] + 0.1
    X, margin = X[np.abs(margin) > 0.1], margin[np.abs(margin) > 0.1]
    y = (margin > 0).astype(int)

    runs = {}
    for seed in (0, 0, 1):
        p = Perceptron(2, max_epochs=1000, seed=seed)
        r = p.fit(X, y)
        assert r.converged
        np.testing.assert_array_equal(p.predict(X), y)
        runs.setdefault(seed, []).append((r.errors, p.w.copy(), p.b))
    (e0, w0, b0), (e1, w1, b1) = runs[0]
    assert e0 == e1 and b0 == b1
    np.testing.assert_array_equal(w0, w1)
    # another seed visits the samples in another order
    assert runs[1][0][0] != e0


def test_refit_starts_afresh():
    p = Perceptron(2, seed=4)
    first = p.fit(TRUTH_X, AND)
    w = p.w.copy()
    second = p.fit(TRUTH_X, AND)
    assert first == second
    np.testing.assert_array_equal(p.w, w)


def test_accepts_bool_labels_and_target_column():
    p = Perceptron(2)
    assert p.fit(TRUTH_X, OR.astype(bool)).converged
    assert p.fit(TRUTH_X, OR.reshape(-1, 1).astype(float)).converged


@pytest.mark.parametrize("kwargs, match", [
    ({"n_inputs": 0}, r"`n_inputs` must be >= 1, got 0"),
    ({"n_inputs": 2.5}, r"`n_inputs` must be an integer, got 2.5"),
    ({"n_inputs": 2, "lr": 0}, r"`lr` must be > 0, got 0"),
    ({"n_inputs": 2, "max_epochs": 0}, r"`max_epochs` must be >= 1, got 0"),
    ({"n_inputs": 2, "seed": -1}, r"`seed` must be >= 0, got -1"),
    ({"n_inputs": 2, "shuffle": "yes"}, r"`shuffle` must be True or False, got 'yes'"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Perceptron(**kwargs)


@pytest.mark.parametrize("X, y, match", [
    (np.zeros((4, 3)), AND, r"`X` must have shape \(n_samples, 2\) .*got \(4, 3\)"),
    (np.zeros(4), AND, r"`X` must have shape \(n_samples, 2\) .*got \(4,\)"),
    (np.array([["a", "b"]] * 4), AND, r"`X` must be numeric"),
    (np.array([[0, np.nan]] * 4), AND, r"`X` must be finite"),
    (np.zeros((0, 2)), AND[:0], r"n_samples >= 1, got \(0, 2\)"),
    (TRUTH_X, AND[:3], r"`y` must have shape \(4,\) to match X, got \(3,\)"),
    (TRUTH_X, np.array([0, 1, 2, 1]), r"`y` must hold only 0 and 1, got 2"),
    (TRUTH_X, np.array([0, 1, -1, 1]), r"`y` must hold only 0 and 1, got -1"),
    (TRUTH_X, np.array(["0", "1", "1", "0"]), r"`y` must hold 0/1 labels"),
])
def test_bad_fit_input(X, y, match):
    with pytest.raises(ValueError, match=match):
        Perceptron(2).fit(X, y)


def test_predict_checks_width():
    with pytest.raises(ValueError, match=r"shape \(n_samples, 2\) .*got \(1, 5\)"):
        Perceptron(2).predict(np.zeros((1, 5)))
