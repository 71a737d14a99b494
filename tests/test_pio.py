"""PIO: the sampler's loss is exact at the optimum, it learns to sample, its gradient is right."""

import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from l2o.optimizers.pio import PIORule, fit_sampler, log_normaliser_estimates


def standard_normal_energy(x):
    return 0.5 * ops.sum(ops.square(x), axis=1)


@pytest.mark.parametrize("dimension", [1, 3])
def test_zero_drift_on_a_standard_normal_is_exact(dimension):
    """Acceptance: with u = 0 and target exp(-x^2/2) every loss per dimension is -log(2 pi)/2."""
    rule = PIORule()
    weights = {k: tf.constant(v) for k, v in rule.init_meta_weights(0, dimension).items()}
    result = rule.sample(weights, standard_normal_energy, dimension, 256, seed=3)
    per_dimension = result["loss"].numpy() / dimension
    np.testing.assert_allclose(per_dimension, -0.5 * math.log(2 * math.pi), atol=2e-6)
    assert np.std(per_dimension) < 1e-6
    # The samples are the prior N(0, t_end g^2 = 1): not a degenerate path.
    assert 0.7 < np.var(result["samples"].numpy()) < 1.3


def gaussian_mixture(weights, means, scale, constant):
    """E with exp(-E) = constant * sum_k w_k N(x; mu_k, scale^2 I): log Z = log(constant)."""
    weights, means = np.asarray(weights, np.float32), np.asarray(means, np.float32)
    dimension = means.shape[1]

    def energy(x):
        squared = ops.sum(ops.square(x[:, None, :] - means[None]), axis=2) / scale ** 2
        log_components = (np.log(weights)[None] - 0.5 * squared
                          - dimension * np.log(scale * np.sqrt(2 * np.pi)))
        return -(ops.logsumexp(log_components, axis=1) + np.log(constant))

    mean = weights @ means
    variance = scale ** 2 + weights @ np.square(means - mean)
    return energy, mean, variance


@pytest.mark.parametrize("weights, means, scale, constant, iterations, learning_rate", [
    ([1.0], [[1.0]], 0.5, 1.0, 500, 3e-3),
    ([0.3, 0.7], [[1.5, 1.0], [0.5, 2.0]], 0.5, 3.0, 800, 5e-3),
], ids=["gaussian-1d", "mixture-2d"])
def test_trained_sampler_matches_moments_and_normaliser(weights, means, scale, constant,
                                                        iterations, learning_rate):
    """Acceptance: log Z within 0.1, sample means and variances within 10%."""
    energy, mean, variance = gaussian_mixture(weights, means, scale, constant)
    dimension = len(means[0])
    rule = PIORule(trajectories=128)
    trained = fit_sampler(rule, energy, dimension, iterations, learning_rate)
    result = rule.sample({k: tf.constant(v) for k, v in trained.items()}, energy, dimension,
                         4000, seed=11)
    _, estimate = log_normaliser_estimates(result)
    assert abs(float(estimate) - math.log(constant)) < 0.1, float(estimate)
    samples = result["samples"].numpy()
    np.testing.assert_allclose(samples.mean(axis=0), mean, rtol=0.1)
    np.testing.assert_allclose(samples.var(axis=0), variance, rtol=0.1)


@pytest.mark.parametrize("drift_format", ["f", "grad"])
def test_loss_gradient_through_the_solver_matches_finite_differences(drift_format):
    """Acceptance: d(mean loss)/d(drift weights) by backprop through Euler–Maruyama == FD."""
    rule = PIORule(drift_format=drift_format, channels=4, layers=1, t_end=1.0, dt=0.25)
    dimension = 2
    generator = np.random.default_rng(0)
    # Random (not zero) output layers, so that every weight matters.
    base = {k: v.astype(np.float64) + 0.3 * generator.standard_normal(v.shape)
            for k, v in rule.init_meta_weights(0, dimension).items()}
    energy = lambda x: 0.5 * ops.sum(ops.square(x - 0.5), axis=1) + ops.sum(ops.sin(x), axis=1)

    def objective(weights):
        result = rule.sample({k: tf.convert_to_tensor(v) for k, v in weights.items()}, energy,
                             dimension, 3, seed=5, dtype="float64")
        return tf.reduce_mean(result["loss"])

    variables = {k: tf.Variable(v) for k, v in base.items()}
    with tf.GradientTape() as tape:
        value = objective({k: v for k, v in variables.items()})
    grads = tape.gradient(value, variables)
    h = 1e-6
    for name in ("output/kernel", "time/phase", "state/in/kernel"):
        direction = generator.standard_normal(base[name].shape)
        plus = dict(base, **{name: base[name] + h * direction})
        minus = dict(base, **{name: base[name] - h * direction})
        finite = (float(objective(plus)) - float(objective(minus))) / (2 * h)
        exact = float(np.sum(grads[name].numpy() * direction))
        assert abs(exact) > 1e-6
        assert abs(exact - finite) <= 1e-5 * max(1.0, abs(finite)), (name, exact, finite)
