"""Black-box ES: centred ranks, layer schedules, the estimate's direction and sign, objective
weighting, identical estimates from every evaluation route, and the two examples."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT
from keras import ops

from l2o.blackbox import ESOptimizer, batched_forward, centred_ranks, layer_schedule, vectorized

INPUTS = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
TARGETS = np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)


def three_layer_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                             keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])


def vector_model(dimension, start):
    """A model whose only weight is a [dimension, 1] kernel set to ``start``."""
    model = keras.Sequential([keras.Input((dimension,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([np.asarray(start, np.float32).reshape(dimension, 1)])
    return model


def kernel(model):
    return np.asarray(model.trainable_variables[0].numpy()).ravel()


def negative_squared_error(model, samples):
    """Per-candidate objective; module level, so the worker pool can pickle it."""
    inputs, targets = samples
    return -float(np.mean((ops.convert_to_numpy(model(inputs)) - targets) ** 2))


class BatchedNegativeSquaredError:
    vectorized = True

    def __init__(self, model):
        self.model = model

    def __call__(self, stacked_weights, samples):
        inputs, targets = samples
        outputs = ops.convert_to_numpy(batched_forward(self.model, stacked_weights, inputs))
        return -np.mean((outputs - targets) ** 2, axis=(1, 2))


@vectorized
def weight_sum(stacked_weights, _samples):
    return sum(np.sum(w, axis=tuple(range(1, w.ndim))) for w in stacked_weights)


def test_centred_ranks_including_ties():
    np.testing.assert_allclose(centred_ranks([-10, 6, 10, -5]), [-0.5, 1 / 6, 0.5, -1 / 6])
    np.testing.assert_allclose(centred_ranks([3, 1, 3, 2]), [1 / 3, -0.5, 1 / 3, -1 / 6])
    np.testing.assert_allclose(centred_ranks([[1, 5], [2, 5], [0, 5]]),
                               [[0, 0], [0.5, 0], [-0.5, 0]])


def test_layer_schedules():
    generator = np.random.default_rng(0)
    visits = {strategy: [layer_schedule(strategy, 3, i, generator) for i in range(4)]
              for strategy in ("bottom_up", "top_down", "all")}
    # Layers 1, 2, 3, 1 and 3, 2, 1, 3 in the 1-based numbering.
    assert visits["bottom_up"] == [(0,), (1,), (2,), (0,)]
    assert visits["top_down"] == [(2,), (1,), (0,), (2,)]
    assert visits["all"] == [(0, 1, 2)] * 4


@pytest.mark.parametrize("strategy, expected", [
    ("bottom_up", [[0], [1], [2], [0]]), ("top_down", [[2], [1], [0], [2]]),
    ("all", [[0, 1, 2]] * 4)])
def test_only_the_scheduled_layers_change(strategy, expected):
    model = three_layer_model()
    optimizer = ESOptimizer(model, weight_sum, keras.optimizers.SGD(0.1), sigma=0.1,
                            n_samples=4, strategy=strategy)
    changed = []
    for _ in range(4):
        before = [layer.get_weights() for layer in model.layers]
        stats = optimizer.step()
        changed.append([k for k, layer in enumerate(model.layers) if any(
            not np.array_equal(old, new) for old, new in zip(before[k], layer.get_weights()))])
        assert stats["layers"] == [model.layers[k].name for k in changed[-1]]
    assert changed == expected


def test_random_strategy_perturbs_one_layer_at_a_time_and_reaches_all():
    optimizer = ESOptimizer(three_layer_model(), weight_sum, "sgd", n_samples=4,
                            strategy="random")
    chosen = [optimizer.step()["layers"] for _ in range(30)]
    assert all(len(layers) == 1 for layers in chosen)
    assert {layers[0] for layers in chosen} == set(optimizer.layer_names)


def test_train_draws_samples_per_iteration_and_stops_when_the_callback_says_so():
    requested = []

    def samples(iteration):
        requested.append(iteration)
        return iteration

    optimizer = ESOptimizer(three_layer_model(), weight_sum, "sgd", n_samples=4)
    history = optimizer.train(10, samples, callback=lambda stats: stats["iteration"] == 3,
                              progress=False)
    assert requested == [0, 1, 2] and [s["iteration"] for s in history] == [1, 2, 3]
    assert optimizer.iterations == 3


def test_mean_estimate_points_along_the_gradient_of_a_quadratic():
    dimension = 20
    generator = np.random.default_rng(2)
    curvature = generator.uniform(0.5, 3.0, dimension)
    minimum, start = generator.normal(size=dimension), generator.normal(size=dimension)

    @vectorized
    def negative_quadratic(stacked_weights, _samples):
        offsets = stacked_weights[0][..., 0] - minimum
        return -np.sum(curvature * offsets ** 2, axis=1)

    optimizer = ESOptimizer(vector_model(dimension, start), negative_quadratic, sigma=0.05,
                            n_samples=100)
    mean_estimate = np.mean([optimizer.estimate()[0][0].ravel() for _ in range(20)], axis=0)
    gradient = -2 * curvature * (start - minimum)
    cosine = mean_estimate @ gradient / (np.linalg.norm(mean_estimate) * np.linalg.norm(gradient))
    assert cosine > 0.9, cosine


def test_a_step_climbs_when_maximising_and_descends_with_mode_min():
    """Keras optimisers minimise, so they must receive the negated ascent direction."""
    target = np.array([1.0, -2.0, 0.5])
    start = np.zeros(3)

    def squared_distance(model, _samples):
        return float(np.sum((kernel(model) - target) ** 2))

    def negative_squared_distance(model, samples):
        return -squared_distance(model, samples)

    learning_rate = 0.1
    for objective, mode, improved in [
            (negative_squared_distance, "max", lambda new, old: new > old),
            (squared_distance, "min", lambda new, old: new < old)]:
        twin = ESOptimizer(vector_model(3, start), objective, n_samples=8, mode=mode, seed=3)
        ascent = twin.estimate()[0][0].ravel()
        model = vector_model(3, start)
        optimizer = ESOptimizer(model, objective, keras.optimizers.SGD(learning_rate),
                                n_samples=8, mode=mode, seed=3)
        before = objective(model, None)
        optimizer.step()
        np.testing.assert_allclose(kernel(model) - start, learning_rate * ascent, rtol=1e-5)
        assert improved(objective(model, None), before), mode
    # Minimising f and maximising -f are the same estimate.
    min_ascent = ESOptimizer(vector_model(3, start), squared_distance, n_samples=8, mode="min",
                             seed=3).estimate()[0][0]
    max_ascent = ESOptimizer(vector_model(3, start), negative_squared_distance, n_samples=8,
                             seed=3).estimate()[0][0]
    np.testing.assert_array_equal(min_ascent, max_ascent)


def test_objectives_combine_by_their_weights():
    start = np.array([0.3, -0.1, 0.2, 0.0])

    @vectorized
    def two_objectives(stacked_weights, _samples):
        w = stacked_weights[0][..., 0]
        return np.stack([w[:, 0] - w[:, 1], -np.sum(w ** 2, axis=1)], axis=1)

    @vectorized
    def first_only(stacked_weights, samples):
        return two_objectives(stacked_weights, samples)[:, 0]

    def ascent(objective, obj_weights=None):
        optimizer = ESOptimizer(vector_model(4, start), objective, sigma=0.1, n_samples=10,
                                obj_weights=obj_weights, seed=5)
        return optimizer.estimate()[0][0]

    first, second = ascent(two_objectives, [1, 0]), ascent(two_objectives, [0, 1])
    assert not np.allclose(first, second)
    np.testing.assert_allclose(ascent(two_objectives, [0.3, -0.7]), 0.3 * first - 0.7 * second,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ascent(two_objectives), 0.5 * first + 0.5 * second, rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_array_equal(ascent(first_only), first)
    with pytest.raises(ValueError, match="obj_weights has 3 entries but the objective "
                                         "returned 2 value"):
        ascent(two_objectives, [1, 1, 1])


def test_vectorised_and_serial_evaluation_give_the_same_estimates():
    """Same seed, same estimates (Ray workers: tests/test_distributed.py)."""
    samples = (INPUTS, TARGETS)
    weights = {}
    for route in ("vectorised", "serial"):
        model = three_layer_model(seed=4)
        objective = (BatchedNegativeSquaredError(model) if route == "vectorised"
                     else negative_squared_error)
        with ESOptimizer(model, objective, keras.optimizers.Adam(0.01), sigma=0.05,
                         n_samples=6, strategy="random", seed=7) as optimizer:
            for _ in range(3):
                optimizer.step(samples)
            assert optimizer.get_config()["vectorized"] == (route == "vectorised")
            json.dumps(optimizer.get_config())
        weights[route] = [np.asarray(v.numpy()) for v in model.trainable_variables]
    for expected, actual in zip(weights["vectorised"], weights["serial"]):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)

    # The steps climbed, by no more than Adam(0.01) allows: it moves each perturbed weight by
    # about 0.01 per step, so to first order three steps gain at most 3 * 0.01 * ||grad f||_1
    # (0.17 here; the gain is 0.023). A sign error loses 0.025. (Six samples on three steps
    # cannot tell an informative estimate from a random one: the quadratic test above does.)
    start = three_layer_model(seed=4)
    with tf.GradientTape() as tape:
        objective = -tf.reduce_mean((start(INPUTS) - TARGETS) ** 2)
    bound = 3 * 0.01 * sum(float(np.sum(np.abs(g)))
                           for g in tape.gradient(objective, start.trainable_variables))
    start.set_weights(weights["vectorised"])
    gain = negative_squared_error(start, samples) - float(objective)
    assert 0 < gain < bound, (gain, bound)


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "sideways"}, "strategy: unknown value .sideways."),
    ({"n_samples": 7}, "n_samples must be an even integer"),
    ({"mode": "maximise"}, "mode: unknown value .maximise."),
    ({"sigma": 0.0}, "sigma must be a positive number"),
    ({"sigma": "big"}, "sigma must be a positive number"),
    ({"n_workers": 0}, "n_workers must be a positive integer"),
    ({"objective": weight_sum, "n_workers": 2}, "vectorised objective"),
])
def test_bad_arguments_are_refused_clearly(kwargs, message):
    kwargs = {"objective": negative_squared_error, **kwargs}
    with pytest.raises(ValueError, match=message):
        ESOptimizer(three_layer_model(), **kwargs)


def run_example(name):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), "--quick"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_mnist_accuracy_example_learns_on_digits():
    output = run_example("es_mnist_accuracy.py")
    initial = float(re.search(r"initial validation accuracy ([\d.]+)", output).group(1))
    final = float(re.search(r"final validation accuracy ([\d.]+)", output).group(1))
    assert final > max(0.4, initial + 0.2), output


@pytest.mark.slow
def test_cartpole_example_learns_to_balance_longer():
    output = run_example("es_cartpole.py")
    initial = float(re.search(r"initial mean test length ([\d.]+)", output).group(1))
    final = float(re.search(r"mean length on 100 fresh episodes ([\d.]+)", output).group(1))
    assert final > 3 * initial, output
