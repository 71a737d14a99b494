"""DM equations, the Keras façade against the functional update, and serialisation."""

import keras
import numpy as np
import pytest
from keras import ops

import l2o
from l2o.optimizers import DMOptimizer, DMRule
from l2o.optimizers.cells import lstm
from l2o.optimizers.dm import log_sign_preprocess
from l2o.problems import MLPClassifier


def test_preprocessing_matches_appendix_a():
    p = 10.0
    grads = np.array([1.0, -0.5, 1e-6, 0.0, np.exp(-p) * 1.01], np.float32)
    got = ops.convert_to_numpy(log_sign_preprocess(ops.convert_to_tensor(grads), p))
    expected = [[0.0, 1.0], [np.log(0.5) / p, -1.0], [-1.0, np.exp(p) * 1e-6], [-1.0, 0.0],
                [np.log(np.exp(-p) * 1.01) / p, 1.0]]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_lstm_cell_matches_keras():
    rule = DMRule(layers=[6])
    weights = rule.init_meta_weights(seed=3)
    cell = keras.layers.LSTMCell(6)
    cell.build((None, 2))
    cell.set_weights([weights["lstm_0/kernel"], weights["lstm_0/recurrent_kernel"],
                      weights["lstm_0/bias"]])
    generator = np.random.default_rng(0)
    x, h, c = (generator.standard_normal(s).astype(np.float32) for s in ((5, 2), (5, 6), (5, 6)))
    expected_h, (_, expected_c) = cell(x, [h, c])
    got_h, got_c = lstm({k: ops.convert_to_tensor(v) for k, v in weights.items()}, "lstm_0",
                        x, h, c)
    np.testing.assert_allclose(ops.convert_to_numpy(got_h), expected_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(got_c), expected_c, rtol=1e-5, atol=1e-6)


def test_unit_forget_bias_and_layers():
    weights = DMRule(layers=[4, 3]).init_meta_weights(seed=0)
    assert weights["lstm_0/kernel"].shape == (2, 16)
    assert weights["lstm_1/kernel"].shape == (4, 12)
    assert weights["output/kernel"].shape == (3, 1)
    np.testing.assert_array_equal(weights["lstm_0/bias"][4:8], 1.0)
    np.testing.assert_array_equal(weights["lstm_0/bias"][:4], 0.0)


def test_model_fit_matches_functional_update():
    """Acceptance: DMOptimizer in model.fit == the pure update for 5 steps (1e-5)."""
    problem = MLPClassifier(layers=[16], dataset="digits", batch_size=32, shuffle_buffer=1)
    params = problem.init(seed=4)
    # Meta-weights scaled up so that the steps are large enough for a mismatch to show.
    meta_weights = {k: 3.0 * v for k, v in DMRule().init_meta_weights(seed=7).items()}
    images, labels = problem.batches(seed=0, start=0, count=5)

    model = problem.build_model(params)
    model.compile(optimizer=DMOptimizer(meta_weights=meta_weights),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images.reshape((-1,) + problem.input_shape), labels.reshape(-1), batch_size=32,
              epochs=1, shuffle=False, verbose=0)

    rule = DMRule()
    meta = {k: ops.convert_to_tensor(v) for k, v in meta_weights.items()}
    current = [ops.convert_to_tensor(p) for p in params]
    state = rule.init_state(current)
    for step in range(5):
        grads = _gradients(problem, current, (images[step], labels[step]))
        updates, state = rule.update(meta, grads, current, state)
        current = [p + u for p, u in zip(current, updates)]
    moved = max(float(np.max(np.abs(ops.convert_to_numpy(c) - p)))
                for c, p in zip(current, params))
    assert moved > 1e-2, "the optimiser should move the weights visibly"
    for got, expected in zip(model.get_weights(), current):
        np.testing.assert_allclose(got, ops.convert_to_numpy(expected), atol=1e-5)


def _gradients(problem, params, batch):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = problem.loss(params, batch)
    return tape.gradient(loss, params)


def test_get_config_round_trip_and_keras_serialisation(tmp_path):
    optimizer = DMOptimizer(network={"layers": [5, 4]}, seed=2, learning_rate=0.5)
    restored = DMOptimizer.from_config(optimizer.get_config())
    assert restored.network == {"layers": [5, 4]}
    assert float(restored.learning_rate) == 0.5
    for key, value in optimizer.meta_weights.items():
        np.testing.assert_array_equal(restored.meta_weights[key], value)
    generic = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(generic, DMOptimizer)

    problem = MLPClassifier(layers=[4], dataset="digits", batch_size=16)
    model = problem.build_model(problem.init(0))
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = problem.batches(0, 0, 1)
    model.fit(images[0], labels[0], verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, DMOptimizer)
    np.testing.assert_array_equal(loaded.optimizer.meta_weights["output/kernel"],
                                  optimizer.meta_weights["output/kernel"])


def test_load_optimizer_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="not a run directory"):
        l2o.load_optimizer(str(tmp_path))
