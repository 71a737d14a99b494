"""NormalizedMLP: the update against a numpy re-derivation of the docstring's equations,
its meta-gradient against finite differences, and model.fit against the pure rule."""

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

from l2o.config import DEFAULTS
from l2o.estimators import TBPTT
from l2o.optimizers.normalized_mlp import NormalizedMLPOptimizer, NormalizedMLPRule
from l2o.problems import Quadratic
from l2o.validation import ConfigError

SETTINGS = {"hidden_layers": [5], "momentum_decays": [0.5, 0.9], "second_moment_decay": 0.99,
            "timescales": [3.0, 30.0], "learning_rate": 0.01, "magnitude_scale": 0.5}


def numpy_steps(meta, grads_per_step, params, settings):
    """The docstring's equations for one tensor, step by step, in float64 numpy."""
    decays = np.array(settings["momentum_decays"])
    b2, eps = settings["second_moment_decay"], 1e-8
    taus = np.array(settings["timescales"])
    rows, cols = (1, params.size) if params.ndim == 1 else params.shape
    m = np.zeros(params.shape + (len(decays),))
    v = np.zeros(params.shape)
    r, c = np.zeros(rows), np.zeros(cols)
    p = params.astype(np.float64)
    updates, norms = [], np.zeros(4)
    for t, g in enumerate(grads_per_step, start=1):
        m = decays * m + (1 - decays) * g[..., None]
        v = b2 * v + (1 - b2) * g ** 2
        square = (g ** 2).reshape(rows, cols)
        r = b2 * r + (1 - b2) * square.mean(axis=1)
        c = b2 * c + (1 - b2) * square.mean(axis=0)
        m_hat, v_hat = m / (1 - decays ** t), v / (1 - b2 ** t)
        v_fac = (np.outer(r, c) / (r.mean() * (1 - b2 ** t))).reshape(p.shape)
        columns = [g[..., None], p[..., None], m_hat, m_hat / np.sqrt(v_hat + eps)[..., None],
                   (g / np.sqrt(v_hat + eps))[..., None], (g / np.sqrt(v_fac + eps))[..., None],
                   (m_hat[..., 0] / np.sqrt(v_fac + eps))[..., None]]
        features = np.concatenate(
            [col / np.sqrt(np.mean(col.reshape(-1, col.shape[-1]) ** 2, axis=0) + 1e-12)
             for col in columns], axis=-1).reshape(p.size, -1)
        step = np.tanh(t / taus)
        hidden = np.concatenate([features, np.broadcast_to(step, (p.size, len(taus)))], axis=1)
        hidden = np.maximum(hidden @ meta["mlp/0/kernel"] + meta["mlp/0/bias"], 0.0)
        out = hidden @ meta["mlp/output/kernel"] + meta["mlp/output/bias"]
        adam = (m_hat[..., 1] / (np.sqrt(v_hat) + eps)).reshape(-1)
        magnitude = np.exp(settings["magnitude_scale"] * out[:, 1])
        lr = np.exp(meta["schedule/log_lr"] + np.sum(meta["schedule/weights"] * step)
                    + (meta["schedule/vector_log_lr"] if rows == 1 else
                       meta["schedule/fan_in_power"] * np.log(rows)))
        ratio, base = settings.get("max_step_ratio"), np.log(settings["learning_rate"])
        if settings.get("controller_layers") is not None:
            features, norms = numpy_controller_features(g, adam, norms, t, step)
            centre = numpy_controller(meta, features, settings)
            lr, base = lr * np.exp(centre - base), centre
        if ratio is not None:
            bound = np.log(ratio)
            size = np.exp(base + bound * np.tanh((np.log(lr * magnitude) - base) / bound))
            u = adam + np.sqrt(np.mean(adam ** 2) + 1e-12) * np.tanh(out[:, 0])
            update = (-size * u).reshape(p.shape)
        elif settings.get("step_scale") == "adam":
            u = (adam + np.sqrt(np.mean(adam ** 2) + 1e-12) * out[:, 0]) * magnitude
            update = (-lr * u).reshape(p.shape)
        else:
            u = (adam + out[:, 0]) * magnitude
            update = (-lr * u / np.sqrt(np.mean(u ** 2) + 1e-12)).reshape(p.shape)
        updates.append(update)
        p = p + update
    return updates


CONTROLLER = {"controller_layers": [4], "controller_rates": [1e-4, 0.5]}


@pytest.mark.parametrize("variant", [{"step_scale": "tensor_rms"}, {"step_scale": "adam"},
                                     {"step_scale": "adam", "max_step_ratio": 1.5},
                                     {"step_scale": "adam", "max_step_ratio": 1.5, **CONTROLLER},
                                     {"step_scale": "adam", "max_step_ratio": 1.5, **CONTROLLER,
                                      "controller_linear": True},
                                     {"step_scale": "tensor_rms", **CONTROLLER}])
@pytest.mark.parametrize("shape", [(3, 4), (6,)])
def test_update_matches_the_equations_by_hand(shape, variant):
    settings = {**SETTINGS, **variant}
    rule = NormalizedMLPRule(**settings)
    meta = random_meta_weights(rule, 1, np.float64)
    generator = np.random.default_rng(2)
    params = generator.standard_normal(shape)
    grads = [generator.standard_normal(shape) * scale for scale in (1.0, 0.1, 3.0)]
    expected = numpy_steps(meta, grads, params, settings)
    current = [ops.convert_to_tensor(params)]
    state = rule.init_state(current, 0)
    tensors = {k: ops.convert_to_tensor(v) for k, v in meta.items()}
    for step, grad in enumerate(grads):
        updates, state = rule.update(tensors, [ops.convert_to_tensor(grad)], current, state)
        np.testing.assert_allclose(ops.convert_to_numpy(updates[0]), expected[step], rtol=1e-9)
        current = [current[0] + updates[0]]


def test_step_size_is_the_learned_rate_whatever_the_gradient_scale():
    """The RMS-normalised step: each tensor moves by lr per coordinate for any gradient scale."""
    rule = NormalizedMLPRule(**SETTINGS)
    meta = {k: ops.convert_to_tensor(v) for k, v in random_meta_weights(rule, 3).items()}
    params = [ops.convert_to_tensor(np.ones((4, 5), np.float32))]
    lr = float(np.exp(meta["schedule/log_lr"]
                      + ops.sum(meta["schedule/weights"] * np.tanh(1.0 / np.array([3.0, 30.0])))
                      + meta["schedule/fan_in_power"] * np.log(4.0)))
    for scale in (1e-6, 1.0, 1e6):
        grads = [ops.convert_to_tensor(
            np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32) * scale)]
        updates, _ = rule.update(meta, grads, params, rule.init_state(params, 0))
        rms = float(np.sqrt(np.mean(ops.convert_to_numpy(updates[0]) ** 2)))
        assert rms == pytest.approx(lr, rel=1e-4), scale


@pytest.mark.parametrize("variant", [{}, {"max_step_ratio": 1.5, **CONTROLLER},
                                     {"max_step_ratio": 1.5, **CONTROLLER,
                                      "controller_linear": True}])
def test_untrained_adam_scaled_rule_is_adam(variant):
    """step_scale adam with the initial meta-weights is Keras's Adam at ``learning_rate``, step
    for step, including the shrinking step once the gradients turn to noise; an untrained
    controller keeps the centre of the step sizes at ``learning_rate``."""
    settings = {**SETTINGS, "momentum_decays": [0.5, 0.9, 0.99], "second_moment_decay": 0.999,
                "step_scale": "adam", "learning_rate": 0.003, **variant}
    rule = NormalizedMLPRule(**settings)
    meta = {k: ops.convert_to_tensor(v) for k, v in rule.init_meta_weights(0).items()}
    generator = np.random.default_rng(4)
    value = generator.standard_normal((5, 3)).astype(np.float32)
    variable = keras.Variable(value)
    adam = keras.optimizers.Adam(learning_rate=0.003, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    current = [ops.convert_to_tensor(value)]
    state = rule.init_state(current, 0)
    for step in range(30):
        scale = 1.0 if step < 10 else 0.01
        grad = (generator.standard_normal((5, 3)) * scale).astype(np.float32)
        adam.apply_gradients([(ops.convert_to_tensor(grad), variable)])
        updates, state = rule.update(meta, [ops.convert_to_tensor(grad)], current, state)
        current = [current[0] + updates[0]]
        np.testing.assert_allclose(ops.convert_to_numpy(current[0]), variable.numpy(),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rates", [[1e-2, 1e-1], [1e-4], [0.0, 1.0], [1e-4, float("inf")]])
def test_controller_rates_must_bracket_the_learning_rate(rates):
    with pytest.raises(ConfigError, match="network/controller_rates"):
        NormalizedMLPOptimizer(network={**SETTINGS, "controller_layers": [4],
                                        "controller_rates": rates})


def test_a_linear_controller_path_needs_the_controller():
    with pytest.raises(ConfigError, match="network/controller_linear: .*controller_layers"):
        NormalizedMLPOptimizer(network={**SETTINGS, "controller_linear": True})


@pytest.mark.slow
@pytest.mark.parametrize("step_scale", ["tensor_rms", "adam"])
def test_meta_gradient_matches_finite_differences(step_scale):
    """TBPTT through 4 steps of the rule on a quadratic, float64: backprop == central FD."""
    keras.backend.set_floatx("float64")
    try:
        rule = NormalizedMLPRule(**SETTINGS, step_scale=step_scale)
        meta = random_meta_weights(rule, 5, np.float64)
        problem = Quadratic(dim=4)
        params = [ops.convert_to_tensor(p.astype(np.float64)) for p in problem.init(1)]
        batches = tuple(b.astype(np.float64) for b in problem.batches(1, 0, 4))
        initial = problem.loss(params, tuple(b[0] for b in batches))
        variables = {k: keras.Variable(v, dtype="float64") for k, v in meta.items()}
        estimator = TBPTT(rule, problem, variables, DEFAULTS["loss_args"], "mean")
        state = rule.init_state(params, 0)
        _, grads, *_ = estimator.estimate(params, state, batches, initial)
        gradient = dict(zip(variables, grads))

        def meta_loss_at(weights):
            for name, value in weights.items():
                variables[name].assign(value)
            value, *_ = estimator.evaluate(params, state, batches, initial)
            return float(value)

        generator, h = np.random.default_rng(6), 1e-6
        for name in ("mlp/0/kernel", "mlp/output/kernel", "schedule/log_lr"):
            direction = generator.standard_normal(meta[name].shape)
            plus = meta_loss_at({**meta, name: meta[name] + h * direction})
            minus = meta_loss_at({**meta, name: meta[name] - h * direction})
            finite = (plus - minus) / (2 * h)
            exact = float(np.sum(ops.convert_to_numpy(gradient[name]) * direction))
            assert abs(exact) > 1e-6, name
            assert exact == pytest.approx(finite, rel=1e-5, abs=1e-8), name
    finally:
        keras.backend.set_floatx("float32")


@pytest.mark.parametrize("variant", [{}, {"step_scale": "adam", "max_step_ratio": 1.5,
                                          **CONTROLLER}])
@pytest.mark.slow
def test_model_fit_matches_the_pure_update_with_a_trained_looking_network(variant):
    """model.fit for 4 steps == the pure rule, with every meta-weight (the output too) random;
    with the controller, its gradient-norm record lives in the optimiser's state."""
    assert_fit_matches_the_pure_update(NormalizedMLPOptimizer, {**SETTINGS, **variant})
