"""PIO: the sampler's loss is exact at the optimum, it learns to sample, its gradient is right."""

import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from l2o.optimizers.pio import PIORule, fit_sampler, log_normaliser_estimates


def standard_normal_energy(x):
    return 0.5 * ops.sum(ops.square(x), axis=1)


@pytest.mark.slow
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
@pytest.mark.slow
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


def carrillo_numpy(y):
    """The Carrillo function (shift 0, offset 0) of each row of ``y``, by hand."""
    return np.mean(y ** 2 - 10 * np.cos(2 * np.pi * y) + 10, axis=-1)


@pytest.mark.slow
def test_model_fit_moves_the_weights_to_the_best_sampled_point():
    """PIOOptimizer(model=...) in model.fit: after each step the weights are the terminal
    sample of lowest loss V (E = V / sigma being what PIO scores them by)."""
    import keras

    from l2o.optimizers.pio import PIOOptimizer
    from l2o.problems import Carrillo
    from l2o.problems.landscapes import identity

    sigma = 0.5
    problem = Carrillo(dim=2)
    model = problem.build_model(problem.init(0))
    optimizer = PIOOptimizer(network={"sigma": sigma, "trajectories": 16, "dt": 0.25},
                             model=model)
    samples_seen = []
    select = optimizer.rule.select

    def recording_select(samples, potentials):
        samples_seen.append((ops.convert_to_numpy(samples), ops.convert_to_numpy(potentials)))
        return select(samples, potentials)

    optimizer.rule.select = recording_select
    model.compile(optimizer=optimizer, loss=identity, run_eagerly=True)
    weights_after = []
    history = model.fit(np.zeros((4, 1)), np.zeros((4,)), batch_size=2, epochs=2, verbose=0,
                        callbacks=[keras.callbacks.LambdaCallback(
                            on_train_batch_end=lambda batch, logs: weights_after.append(
                                model.get_weights()[0].copy()))])
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(optimizer.iterations) == 4 and len(samples_seen) == len(weights_after) == 4
    for (samples, energies), weights in zip(samples_seen, weights_after):
        values = carrillo_numpy(samples.astype(np.float64))
        np.testing.assert_allclose(energies, values / sigma, rtol=1e-5)
        assert np.ptp(values) > 0.1  # a real choice among the 16
        np.testing.assert_allclose(weights, samples[np.argmin(values)], rtol=1e-6)
    # The drift network trained: its zero-initialised output layer moved.
    assert np.max(np.abs(optimizer.meta_weights()["output/kernel"])) > 0
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, PIOOptimizer) and restored.network == optimizer.network
    np.testing.assert_array_equal(restored.given_meta_weights["output/kernel"],
                                  optimizer.meta_weights()["output/kernel"])


@pytest.mark.parametrize("weights_from", ["best", "mean"])
def test_weight_selection_leaves_out_non_finite_samples(weights_from):
    rule = PIORule(weights_from=weights_from)
    samples = np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, -1.0], [5.0, 5.0], [0.5, 0.5]],
                       np.float32)
    potentials = np.array([2.0, -9.0, 1.0, np.inf, 1.5], np.float32)  # row 1 lowest, but NaN
    chosen = ops.convert_to_numpy(rule.select(ops.convert_to_tensor(samples),
                                              ops.convert_to_tensor(potentials)))
    expected = samples[2] if weights_from == "best" else samples[[0, 2, 4]].mean(axis=0)
    np.testing.assert_allclose(chosen, expected, rtol=1e-6)
    nothing_finite = rule.select(ops.convert_to_tensor(samples[[1, 3]]),
                                 ops.convert_to_tensor(np.array([1.0, np.inf], np.float32)))
    assert not np.any(np.isfinite(ops.convert_to_numpy(nothing_finite)))


@pytest.mark.slow
def test_pio_run_from_a_config_resumes_exactly_and_evaluates(tmp_path):
    """Acceptance 5 in small: train.py-style PIO run on Carrillo, resume, evaluate, plot."""
    from conftest import ROOT

    from l2o import checkpoints, cli

    settings = ["network/trajectories=8", "network/dt=0.25", "training/depth=2",
                "strategy/epochs_per_period=2", "strategy/validation_repeat=1",
                "evaluation/steps=6", "evaluation/repeats=2", "evaluation/validation_every=3",
                "evaluation/baseline/learning_rates=[]"]
    config = f"{ROOT}/configs/pio_carrillo.yaml"
    cli.train([config, f"directory={tmp_path / 'straight'}", "strategy/num_periods=2", *settings])
    cli.train([config, f"directory={tmp_path / 'broken'}", "strategy/num_periods=1", *settings])
    cli.resume([str(tmp_path / "broken"), "strategy/num_periods=2"])
    straight, _ = checkpoints.load(str(tmp_path / "straight" / "checkpoints" / "last.npz"))
    resumed, _ = checkpoints.load(str(tmp_path / "broken" / "checkpoints" / "last.npz"))
    assert np.max(np.abs(straight["meta/output/kernel"])) > 0
    for name, value in straight.items():
        np.testing.assert_allclose(resumed[name], value, rtol=1e-5, atol=1e-7)
    cli.evaluate([str(tmp_path / "broken")])
    evaluation = tmp_path / "broken" / "evaluation"
    curves = np.load(evaluation / "learned_best.npz")
    assert curves["problem0/train_loss"].shape == (2, 6)
    assert np.all(np.isfinite(curves["problem0/train_loss"]))
    # Two runs, two streams of noise: not the same curve twice.
    assert not np.allclose(curves["problem0/train_loss"][0], curves["problem0/train_loss"][1])
    assert (evaluation / "problem0.png").exists()


def test_a_step_on_a_non_finite_loss_changes_nothing():
    import keras

    from l2o.optimizers.pio import PIOOptimizer

    weights = [keras.Variable(np.array([0.5, -0.5], np.float32))]
    optimizer = PIOOptimizer(network={"trajectories": 4, "dt": 0.25})
    optimizer.apply_loss(lambda w: ops.sum(w[0]) * np.nan, weights)
    np.testing.assert_array_equal(weights[0].numpy(), [0.5, -0.5])
    assert not np.any(optimizer.meta_weights()["output/kernel"])


def test_optimizer_variables_are_its_own_state_not_the_models():
    import keras

    from l2o.optimizers import DMOptimizer
    from l2o.optimizers.pio import PIOOptimizer

    weights = [keras.Variable(np.zeros((3,), np.float32), name="model_weight")]
    for optimizer in (PIOOptimizer(network={"trajectories": 2, "dt": 1.0}), DMOptimizer()):
        optimizer.build(weights)
        names = [v.name for v in optimizer.variables]
        assert "model_weight" not in names and "iteration" in names, names
        assert len(names) > 3


def test_sigma_follows_the_learning_rate_schedule_when_tied():
    import keras

    from l2o.optimizers.pio import PIOOptimizer, PIORule

    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.5)
    optimizer = PIOOptimizer(network={"sigma": 0.2, "tie_sigma_to_learning_rate": True},
                             learning_rate=0.01)
    assert float(optimizer.current_sigma(0.005)) == pytest.approx(0.1)
    untied = PIOOptimizer(network={"sigma": 0.2}, learning_rate=schedule)
    assert float(untied.current_sigma(0.005)) == pytest.approx(0.2)
    tied = PIOOptimizer(network={"sigma": 0.2, "tie_sigma_to_learning_rate": True},
                        learning_rate=schedule)
    assert float(tied.current_sigma(schedule(1))) == pytest.approx(0.1)
    drift, noise = PIORule(sigma_rescaling="static").scales(ops.convert_to_tensor(0.04))
    assert float(drift) == pytest.approx(0.04) and float(noise) == pytest.approx(0.2)
    assert PIORule().scales(0.04) == (1.0, 1.0)


def halving_every_ten_steps():
    import keras

    return keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5)


def test_sigma_follows_its_own_schedule_from_its_start():
    """sigma_t = sigma * s(t) / s(0) at the optimiser's iteration t, by hand: 0.2 * 0.5^(t/10)."""
    import keras

    from l2o.optimizers.pio import PIOOptimizer

    schedule = halving_every_ten_steps()
    for given in (schedule, keras.optimizers.schedules.serialize(schedule)):
        optimizer = PIOOptimizer(network={"sigma": 0.2, "sigma_schedule": given})
        sigmas = []
        for iteration in (0, 10, 20):
            optimizer.iterations.assign(iteration)
            sigmas.append(float(optimizer.current_sigma(optimizer.learning_rate)))
        np.testing.assert_allclose(sigmas, [0.2, 0.1, 0.05], rtol=1e-6)
    # Only the shape counts: a schedule starting at 4 gives the same sigmas.
    scaled = PIOOptimizer(network={"sigma": 0.2, "sigma_schedule": {
        "class_name": "InverseTimeDecay",
        "config": {"initial_learning_rate": 4.0, "decay_steps": 1, "decay_rate": 0.5}}})
    scaled.iterations.assign(6)  # 1 / (1 + 0.5 * 6) = 1/4
    assert float(scaled.current_sigma(scaled.learning_rate)) == pytest.approx(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sigma_rescaling", ["none", "dynamic"])
def test_a_step_under_a_sigma_schedule_is_a_step_at_the_scheduled_sigma(sigma_rescaling):
    """At iteration 20 the scheduled sampler (0.2 -> 0.05) steps exactly as one built with
    sigma 0.05 (same seed, so the same noise and drift), and not as one with sigma 0.2."""
    import keras

    from l2o.optimizers.pio import PIOOptimizer

    sampler = {"trajectories": 8, "dt": 0.25, "channels": 4, "layers": 1,
               "sigma_rescaling": sigma_rescaling}
    potential = lambda weights: ops.sum(ops.square(weights[0] - 1.0)) + ops.sum(
        ops.sin(3.0 * weights[0]))

    def step(network):
        weights = [keras.Variable(np.zeros((3,), np.float32))]
        optimizer = PIOOptimizer(network={**sampler, **network}, seed=4)
        optimizer.build(weights)
        optimizer.iterations.assign(20)
        energies = []
        select = optimizer.rule.select
        optimizer.rule.select = lambda samples, potentials: (
            energies.append(ops.convert_to_numpy(potentials)), select(samples, potentials))[1]
        objective = float(optimizer.apply_loss(potential, weights))
        return objective, weights[0].numpy(), energies[0]

    scheduled = step({"sigma": 0.2, "sigma_schedule": halving_every_ten_steps()})
    constant = step({"sigma": 0.05})
    for value, expected in zip(scheduled, constant):
        np.testing.assert_allclose(value, expected, rtol=1e-6)
    unscheduled = step({"sigma": 0.2})
    assert not np.allclose(scheduled[2], unscheduled[2], rtol=1e-3)


@pytest.mark.parametrize("schedule, message", [
    ({"class_name": "NoSuchDecay", "config": {}}, "expected a Keras LearningRateSchedule"),
    ({"class_name": "ExponentialDecay", "config": {"decay_steps": 10}}, "not a usable"),
    ("cosine", "expected a Keras LearningRateSchedule"),
    ({"class_name": "PiecewiseConstantDecay",
      "config": {"boundaries": [5], "values": [0.0, 1.0]}}, "s\\(0\\) must be positive"),
])
def test_a_bad_sigma_schedule_fails_validation_naming_the_key(schedule, message):
    from l2o.config import resolve
    from l2o.optimizers.pio import PIOOptimizer
    from l2o.validation import ConfigError

    with pytest.raises(ConfigError, match=f"^network/sigma_schedule: {message}"):
        PIOOptimizer(network={"sigma_schedule": schedule})
    with pytest.raises(ConfigError, match=f"^network/sigma_schedule: {message}"):
        resolve({"constructor": "PIO", "problems": [{"target": "carrillo"}],
                 "network": {"sigma_schedule": schedule}})


def test_a_sigma_schedule_and_a_tied_sigma_are_refused_together():
    from l2o.optimizers.pio import PIOOptimizer
    from l2o.validation import ConfigError

    with pytest.raises(ConfigError, match="^network/sigma_schedule: .*tie_sigma_to_learning_rate"):
        PIOOptimizer(network={"sigma_schedule": halving_every_ten_steps(),
                              "tie_sigma_to_learning_rate": True})


def test_a_sigma_schedule_survives_get_config_and_saving():
    import json

    import keras

    from l2o.optimizers.pio import PIOOptimizer

    optimizer = PIOOptimizer(network={"sigma": 0.2, "sigma_schedule": halving_every_ten_steps()})
    config = json.loads(json.dumps(optimizer.get_config()))  # the network dict is plain JSON
    assert config["network"]["sigma_schedule"]["class_name"] == "ExponentialDecay"
    for restored in (PIOOptimizer.from_config(config),
                     keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))):
        assert restored.network == optimizer.network
        restored.iterations.assign(20)
        assert float(restored.current_sigma(restored.learning_rate)) == pytest.approx(0.05)
