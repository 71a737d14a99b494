"""What the tests of learned update rules share: the step-size controller's equations
(``l2o.optimizers.step_size_controller``) in float64 numpy, random meta-weights, and
model.fit against the pure rule."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from l2o.problems import MLPClassifier


def random_meta_weights(rule, seed, dtype=np.float32):
    """Every meta-weight random (the zero-initialised output layers too), so that each term
    matters."""
    generator = np.random.default_rng(seed)
    return {name: (value + 0.3 * generator.standard_normal(value.shape)).astype(dtype)
            for name, value in rule.init_meta_weights(seed).items()}


def assert_fit_matches_the_pure_update(optimizer_class, settings, steps=4):
    """model.fit for ``steps`` steps == the pure rule, with every meta-weight random; the
    rule's state (the controller's gradient-norm record too) lives in the optimiser's."""
    rule = optimizer_class.rule_class(**settings)
    meta = random_meta_weights(rule, 7)
    problem = MLPClassifier(layers=[8], activation="relu", dataset="digits", batch_size=16,
                            shuffle_buffer=1)
    params = problem.init(seed=2)
    images, labels = problem.batches(seed=0, start=0, count=steps)
    model = problem.build_model(params)
    model.compile(optimizer=optimizer_class(meta_weights=meta, network=settings),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images.reshape((-1,) + problem.input_shape), labels.reshape(-1), batch_size=16,
              epochs=1, shuffle=False, verbose=0)
    current = [ops.convert_to_tensor(p) for p in params]
    state = rule.init_state(current, 0)
    tensors = {k: ops.convert_to_tensor(v) for k, v in meta.items()}
    for step in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(current)
            loss = problem.loss(current, (images[step], labels[step]))
        updates, state = rule.update(tensors, tape.gradient(loss, current), current, state)
        current = [p + u for p, u in zip(current, updates)]
    for got, want in zip(model.get_weights(), current):
        np.testing.assert_allclose(got, ops.convert_to_numpy(want), rtol=2e-5, atol=2e-6)


def numpy_controller_features(g, adam, norms, t, step_features):
    """The controller's features of one step (module docstring), for a single tensor."""
    first, fast, slow, lowest = norms
    log_norm = np.log(np.sqrt(np.sum(g ** 2)))
    first = log_norm if t == 1 else first
    fast, slow = 0.9 * fast + 0.1 * log_norm, 0.99 * slow + 0.01 * log_norm
    fast_hat, slow_hat = fast / (1 - 0.9 ** t), slow / (1 - 0.99 ** t)
    lowest = slow_hat if t == 1 else min(lowest, slow_hat)
    decades = np.array([log_norm - first, slow_hat - lowest, fast_hat - slow_hat,
                        np.log(np.sqrt(np.mean(adam ** 2)))]) / np.log(10.0)
    features = np.clip(np.concatenate([decades, step_features]), -5.0, 5.0)
    return features, np.array([first, fast, slow, lowest])


def numpy_controller(meta, features, settings):
    """log lr_0(t) from the controller's features: its one hidden layer, then the sigmoid."""
    hidden = np.maximum(features @ meta["controller/0/kernel"] + meta["controller/0/bias"], 0.0)
    out = (hidden @ meta["controller/output/kernel"] + meta["controller/output/bias"])[0]
    if settings.get("controller_linear"):
        out = out + features @ meta["controller/linear"][:, 0]
    low, high = np.log(settings["controller_rates"])
    start = (np.log(settings["learning_rate"]) - low) / (high - low)
    return low + (high - low) / (1.0 + np.exp(-(out + np.log(start / (1.0 - start)))))
