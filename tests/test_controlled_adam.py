"""ControlledAdam: the update against the docstring's equations in numpy, the untrained rule
against Keras's Adam, and model.fit against the pure rule."""

import keras
import numpy as np
import pytest
from keras import ops
from rule_checks import (
    assert_fit_matches_the_pure_update,
    numpy_controller,
    numpy_controller_features,
    random_meta_weights,
)

from l2o.optimizers.controlled_adam import ControlledAdamOptimizer, ControlledAdamRule
from l2o.validation import ConfigError

SETTINGS = {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "controller_layers": [4],
            "controller_rates": [1e-4, 0.5], "timescales": [3.0, 30.0]}


def numpy_steps(meta, grads_per_step, params, settings):
    """The docstring's equations, step by step, in float64 numpy: the parameters after each."""
    b1, b2, eps = settings["beta_1"], settings["beta_2"], 1e-8
    m = [np.zeros(p.shape) for p in params]
    v = [np.zeros(p.shape) for p in params]
    norms, current, trajectory = np.zeros(4), [p.astype(np.float64) for p in params], []
    for t, grads in enumerate(grads_per_step, start=1):
        m = [b1 * mi + (1 - b1) * g for mi, g in zip(m, grads)]
        v = [b2 * vi + (1 - b2) * g ** 2 for vi, g in zip(v, grads)]
        adams = [(mi / (1 - b1 ** t)) / (np.sqrt(vi / (1 - b2 ** t)) + eps)
                 for mi, vi in zip(m, v)]
        step_features = np.tanh(t / np.array(settings["timescales"]))
        features, norms = numpy_controller_features(
            np.concatenate([g.reshape(-1) for g in grads]),
            np.concatenate([a.reshape(-1) for a in adams]), norms, t, step_features)
        centre = numpy_controller(meta, features, settings)
        if settings.get("decay_time") is not None:
            centre -= np.log(1 + (t - 1) / settings["decay_time"])
        offsets = [(meta["schedule/vector_log_lr"] if p.ndim == 1 else
                    meta["schedule/fan_in_power"] * np.log(p.shape[0]))
                   if settings.get("layer_offsets", True) else 0.0 for p in current]
        current = [p - np.exp(centre + offset) * a
                   for p, offset, a in zip(current, offsets, adams)]
        trajectory.append(current)
    return trajectory


@pytest.mark.parametrize("variant", [{}, {"controller_linear": True},
                                     {"layer_offsets": False}, {"decay_time": 2.0}])
def test_update_matches_the_equations_by_hand(variant):
    settings = {**SETTINGS, **variant}
    rule = ControlledAdamRule(**settings)
    meta = random_meta_weights(rule, 1, np.float64)
    generator = np.random.default_rng(2)
    params = [generator.standard_normal((3, 4)), generator.standard_normal((4,))]
    grads = [[generator.standard_normal(p.shape) * scale for p in params]
             for scale in (1.0, 0.1, 3.0)]
    expected = numpy_steps(meta, grads, params, settings)
    current = [ops.convert_to_tensor(p) for p in params]
    state = rule.init_state(current, 0)
    tensors = {k: ops.convert_to_tensor(v) for k, v in meta.items()}
    for step, step_grads in enumerate(grads):
        updates, state = rule.update(tensors, [ops.convert_to_tensor(g) for g in step_grads],
                                     current, state)
        current = [p + u for p, u in zip(current, updates)]
        for got, want in zip(current, expected[step]):
            np.testing.assert_allclose(ops.convert_to_numpy(got), want, rtol=1e-9)


@pytest.mark.parametrize("decay_time", [None, 4.0])
def test_untrained_rule_is_adam(decay_time):
    """With its initial meta-weights the rule is Keras's Adam at ``learning_rate`` (on
    Keras's inverse-time decay with ``decay_time``), step for step, whatever the gradients'
    scale does."""
    settings = {**SETTINGS, "beta_1": 0.9, "beta_2": 0.999, "learning_rate": 0.003,
                "decay_time": decay_time}
    rule = ControlledAdamRule(**settings)
    meta = {k: ops.convert_to_tensor(v) for k, v in rule.init_meta_weights(0).items()}
    generator = np.random.default_rng(4)
    values = [generator.standard_normal(shape).astype(np.float32) for shape in [(5, 3), (3,)]]
    variables = [keras.Variable(value) for value in values]
    rate = 0.003 if decay_time is None else \
        keras.optimizers.schedules.InverseTimeDecay(0.003, decay_time, 1.0)
    adam = keras.optimizers.Adam(learning_rate=rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    current = [ops.convert_to_tensor(value) for value in values]
    state = rule.init_state(current, 0)
    for step in range(30):
        scale = 1.0 if step < 10 else 0.01
        grads = [(generator.standard_normal(v.shape) * scale).astype(np.float32)
                 for v in values]
        adam.apply_gradients([(ops.convert_to_tensor(g), v) for g, v in zip(grads, variables)])
        updates, state = rule.update(meta, [ops.convert_to_tensor(g) for g in grads], current,
                                     state)
        current = [p + u for p, u in zip(current, updates)]
        for got, variable in zip(current, variables):
            np.testing.assert_allclose(ops.convert_to_numpy(got), variable.numpy(), rtol=1e-5,
                                       atol=1e-6)


@pytest.mark.parametrize("network, key", [
    ({"beta_1": 1.0}, "network/beta_1"),
    ({"controller_rates": [1e-2, 1e-1]}, "network/controller_rates"),
    ({"controller_layers": [0]}, "network/controller_layers"),
    ({"decay_time": 0.0}, "network/decay_time")])
def test_bad_settings_are_refused_naming_the_key(network, key):
    with pytest.raises(ConfigError, match=key):
        ControlledAdamOptimizer(network={**SETTINGS, **network})


def test_model_fit_matches_the_pure_update():
    assert_fit_matches_the_pure_update(ControlledAdamOptimizer,
                                       {**SETTINGS, "controller_linear": True,
                                        "decay_time": 3.0})
